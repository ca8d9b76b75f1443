// Binding SPMD nodes to CPUs (examples/jacobi/cpu_binding.mjs), checked from the kernel's
// side: what /proc says each real process, and every thread of it, may run on. Linux with
// taskset only (the binding module then runs unbound, and says so).
import { fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScript } from './run_example';
import { bindProcess, canBind, cpuFor, cpusOf, forkBound } from '../../examples/jacobi/cpu_binding.mjs';

const allowedOf = (status: string) => /Cpus_allowed_list:\s*(\S+)/.exec(status)?.[1];
const threadsOf = (pid: number) => fs.readdirSync(`/proc/${pid}/task`).map((t) => allowedOf(fs.readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8')));
const bindable = process.platform === 'linux' && canBind();
/** A child that starts a worker thread (a thread of its own besides node's), then says it is ready and waits. */
const CHILD = `const { Worker } = require('node:worker_threads');
new Worker('setInterval(() => {}, 1000)', { eval: true }).on('online', () => process.send('ready'));
process.on('message', () => process.exit(0));`;

function startChild(options: object): Promise<import('node:child_process').ChildProcess> {
  // node [options] -e CHILD: the module argument of fork goes where a script path would.
  const c = fork('-e', [CHILD], options);
  return new Promise((resolve, reject) => {
    c.once('message', () => resolve(c));
    c.once('exit', (code) => reject(new Error(`the child exited with ${code} before it was ready`)));
  });
}

describe.skipIf(!bindable)('cpu binding (examples/jacobi)', () => {
  it('gives nodes the CPUs this process may use, round robin', () => {
    const mine = cpusOf(process.pid) as string;
    const allowed: number[] = [];
    for (const part of mine.split(',')) {
      const [a, b = a] = part.split('-').map(Number);
      for (let c = a; c <= b; c++) allowed.push(c);
    }
    for (let k = 0; k < 2 * allowed.length + 1; k++) expect(cpuFor(k)).toBe(allowed[k % allowed.length]);
  });

  it('starts a forked node bound, every thread of it', async () => {
    const cpu = cpuFor(1);
    const c = await startChild(forkBound(cpu));
    try {
      const threads = threadsOf(c.pid!);
      expect(threads.length).toBeGreaterThan(2);
      expect(new Set(threads)).toEqual(new Set([String(cpu)]));
    } finally {
      c.send('exit');
      await new Promise((r) => c.once('exit', r));
    }
  });

  it('binds a running process, every thread of it, and unbinds it again', async () => {
    const c = await startChild({});
    try {
      const was = cpusOf(c.pid!);
      const threadsWere = new Set(threadsOf(c.pid!));
      expect(bindProcess(c.pid!, cpuFor(0))).toBe(true);
      expect(new Set(threadsOf(c.pid!))).toEqual(new Set([String(cpuFor(0))]));
      expect(bindProcess(c.pid!, was)).toBe(true);
      expect(new Set(threadsOf(c.pid!))).toEqual(threadsWere);
    } finally {
      c.send('exit');
      await new Promise((r) => c.once('exit', r));
    }
  });

  it('runs a bound Jacobi: each node on its CPU, the launcher unbound again after, the result unchanged', async () => {
    const r = await runScript(path.join(__dirname, 'fixtures/bound_jacobi.mjs'), []);
    expect(r.code, r.out).toBe(0);
    const got = JSON.parse(r.out.trim().split('\n').pop()!);
    expect(got.same).toBe(true);
    expect(got.nodes).toEqual([String(cpuFor(0)), String(cpuFor(1))]);
    expect(got.after).toBe(got.before);
  });
});
