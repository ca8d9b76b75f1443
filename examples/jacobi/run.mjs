#!/usr/bin/env node
// The Jacobi example: `node examples/jacobi/run.mjs --nodes 2 [--size 1024 --sweeps 40 --sync barrier|flags --prefetch on|off --warmup 0 --bind on|off]`.
// Runs the stencil on N DSM nodes on this host (child processes on loopback), checks the
// result equals the same sweeps over a local Float64Array bit for bit, prints both times.
import { parseArgs } from 'node:util';
import { dsmJacobi, localJacobi } from './jacobi.mjs';

const USAGE = 'usage: run.mjs --nodes N (1..64) --size N (>= 3) --sweeps N (>= 1) --warmup N (untimed sweeps first, >= 0) --sync barrier|flags --prefetch on|off --bind on|off (each node on a CPU of its own, as MPI launchers bind ranks; default on)';
let o;
try {
  ({ values: o } = parseArgs({
    options: { nodes: { type: 'string', default: '2' }, size: { type: 'string', default: '1024' }, sweeps: { type: 'string', default: '40' }, sync: { type: 'string', default: 'barrier' }, prefetch: { type: 'string', default: 'on' }, bind: { type: 'string', default: 'on' }, warmup: { type: 'string', default: '0' }, help: { type: 'boolean', short: 'h', default: false } },
  }));
} catch (e) {
  console.error(`${e.message}\n${USAGE}`);
  process.exit(2);
}
if (o.help) {
  console.log(USAGE);
  process.exit(0);
}
const nodes = Number(o.nodes);
const n = Number(o.size);
const sweeps = Number(o.sweeps);
const warmup = Number(o.warmup);
const whole = (v, min, max = Infinity) => Number.isInteger(v) && v >= min && v <= max;
if (!(whole(nodes, 1, 64) && whole(n, 3) && whole(sweeps, 1) && whole(warmup, 0))) {
  console.error(USAGE);
  process.exit(2);
}
// --sync: 'barrier' (dsm.barrier after every sweep) or 'flags' (wait for the neighbours only);
// --prefetch: 'on' (each node asks for its halo rows while it sweeps its interior) or 'off'.
// --bind: node k runs bound to CPU k mod the CPU count (cpu_binding.mjs says why it pays).
if ((o.sync !== 'barrier' && o.sync !== 'flags') || (o.prefetch !== 'on' && o.prefetch !== 'off') || (o.bind !== 'on' && o.bind !== 'off')) {
  console.error(USAGE);
  process.exit(2);
}
localJacobi(256, 5); // compile the kernel first, as every DSM node does before its clock starts
const local = localJacobi(n, sweeps);
console.log(`local Float64Array: ${n}x${n}, ${sweeps} sweeps in ${local.ms.toFixed(1)} ms`);
const r = await dsmJacobi({ nodes, n, sweeps, reference: local.grid, sync: o.sync, prefetch: o.prefetch === 'on', warmup, bind: o.bind === 'on' });
console.log(`DSM, ${nodes} node(s), 'sequential' grids, sync ${o.sync}, prefetch ${o.prefetch}, ${o.bind === 'on' ? 'each node bound to a CPU' : 'unbound'}${warmup ? `, after ${warmup} untimed sweeps` : ''}: ${r.ms.toFixed(1)} ms, speedup ${(local.ms / r.ms).toFixed(2)}x`);
console.log(`per sweep (all nodes): ${r.perSweep.serviceFaults.toFixed(1)} faults through the service, ${r.perSweep.localFaults.toFixed(1)} resolved in the handler, ` +
  `${r.perSweep.readCopies.toFixed(1)} read copies sent, ${r.perSweep.pushed.toFixed(1)} pushed at the barrier, ${r.perSweep.invalidations.toFixed(1)} invalidations`);
if (o.bind === 'on') console.log(`CPUs each node could run on: ${r.cpus.map((c) => c ?? '?').join(', ')}`);
console.log(`time sweeping (incl. faults), per node: ${r.computeMs.map((x) => x.toFixed(1)).join(', ')} ms; the rest waits at the barriers`);
console.log(r.same ? 'result: identical to the local sweep, bit for bit' : 'result: DIFFERS from the local sweep');
process.exit(r.same ? 0 : 1);
