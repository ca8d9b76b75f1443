// The SPMD kernels example as a user runs it: real node processes, every node started at
// once and calling its first barrier without waiting for the others to join, each kernel's
// result checked on every node against a local computation (the example exits 1 otherwise).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const RUN = path.join(__dirname, '../../examples/kernels/run.mjs');

function run(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [RUN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    // A hang is a failure, reported with what the nodes printed (the children exit with
    // their parent's channel).
    const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe('examples/kernels', () => {
  for (const nodes of ['1', '2', '3', '4']) {
    it(`run.mjs --nodes ${nodes}: every kernel right on every node`, async () => {
      const r = await run(['--nodes', nodes]);
      // The seed is printed first, so a failure replays with --seed.
      expect(r.out).toMatch(/seed \d+/);
      expect(r.out, r.out).toContain('every kernel right on every node');
      expect(r.code, r.out).toBe(0);
    });
  }

  for (const args of [['--nodes', '0'], ['--nodes', '2.5'], ['--seed', 'x'], ['--bogus']]) {
    it(`refuses ${args.join(' ')}`, async () => {
      const r = await run(args);
      expect(r.code).toBe(2);
      expect(r.out).toMatch(/^usage: run\.mjs --nodes N/m);
      expect(r.out).not.toMatch(/^\s+at /m);
    });
  }
});
