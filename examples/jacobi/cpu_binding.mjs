// Binding each node of an SPMD run to a CPU of its own, as MPI launchers bind ranks to
// cores (Open MPI does it by default for small runs). Linux's `taskset` (util-linux) sets
// the affinity of every thread of a process; threads it starts later inherit it.
//
// Why it pays on a host shared by several nodes (README "Consistency models"): a DSM node
// is an app thread and a service thread that hand work to each other at every barrier and
// page move. Bound to one CPU, that hand-over is a context switch on a CPU that is awake;
// unbound, the other thread often sleeps on another vCPU, and on a VM without halt polling
// waking a halted vCPU costs several times more (two threads bouncing a byte through pipes:
// ~47 us a round trip on two idle vCPUs of this project's 2-vCPU VMs, ~5 us with the other
// vCPU kept busy).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

let usable;

/** Whether this host can bind (Linux with `taskset` on the PATH); says why not once. */
export function canBind() {
  if (usable === undefined) {
    usable = os.platform() === 'linux' && spawnSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' }).status === 0;
    if (!usable) console.warn('cpu binding: not available on this host (needs Linux and taskset from util-linux); running unbound');
  }
  return usable;
}

/** The CPUs this process may use as it started (read once: binding it changes them). */
let allowed;

/** The CPU for node `k`: round robin over the CPUs this process was allowed when it started. */
export function cpuFor(k) {
  allowed ??= parseCpuList(cpusOf(process.pid));
  return allowed[k % allowed.length];
}

/** "0-2,5" -> [0, 1, 2, 5]. */
function parseCpuList(list) {
  const cpus = [];
  for (const part of list.split(',')) {
    const [a, b = a] = part.split('-').map(Number);
    for (let c = a; c <= b; c++) cpus.push(c);
  }
  return cpus.length && cpus.every(Number.isInteger) ? cpus : [0];
}

/** Binds every thread of process `pid` to `cpus` (a taskset list: "0", "0-3"); false if it could not. */
export function bindProcess(pid, cpus) {
  return canBind() && spawnSync('taskset', ['-a', '-p', '-c', String(cpus), String(pid)], { stdio: 'ignore' }).status === 0;
}

/** The CPUs process `pid` may run on now (a taskset list), to restore them later. */
export function cpusOf(pid) {
  if (!canBind()) return `0-${os.availableParallelism() - 1}`;
  const r = spawnSync('taskset', ['-c', '-p', String(pid)], { encoding: 'utf8' });
  const m = /:\s*(\S+)\s*$/.exec(r.stdout ?? '');
  return r.status === 0 && m ? m[1] : `0-${os.availableParallelism() - 1}`;
}

/** The CPUs this process may run on now, read by itself (Linux; else undefined). */
export function cpusAllowed() {
  try {
    return /Cpus_allowed_list:\s*(\S+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

/** `child_process.fork` options that start the child bound to `cpu` (no change when the host cannot bind). */
export function forkBound(cpu) {
  return canBind() ? { execPath: 'taskset', execArgv: ['-c', String(cpu), process.execPath, ...process.execArgv] } : {};
}
