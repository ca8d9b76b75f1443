// Consistency models: the Jacobi stencil of examples/jacobi (1024 x 1024 doubles, 40
// sweeps, two 'sequential' grids, rows split between nodes started as child processes on
// this host) on 1, 2 and 4 nodes, against the same sweeps over a local Float64Array in
// this process, in the same run (speedup: the ratio of sweeps per second). Each DSM result
// is checked equal to the local one bit for bit (the suite fails otherwise). Synchronised
// per sweep with dsm.barrier, and on 2 nodes also with neighbour flags on 'sequential'
// pages (no barrier); plus where the time goes: faults and invalidations per sweep.
// Prints one JSON line (see run.mjs).
import { dsmJacobi, localJacobi } from '../../examples/jacobi/jacobi.mjs';

const N = 1024;
const SWEEPS = 40;
const rows = [];
const row = (name, value, unit, baseline, baselineValue, target = null) =>
  rows.push({ name, value, unit, baseline, baselineValue, ratio: baselineValue ? value / baselineValue : null, target });

// Warm the kernel up (JIT) on both kinds of array before timing either.
localJacobi(256, 5);
const runs = [
  { nodes: 1, sync: 'barrier' },
  { nodes: 2, sync: 'barrier', target: '>= 1.6' },
  { nodes: 4, sync: 'barrier' },
  { nodes: 2, sync: 'flags' },
];
for (const { nodes, sync, target } of runs) {
  // The local baseline right before each DSM run: the machine's load drifts.
  const local = localJacobi(N, SWEEPS);
  const r = await dsmJacobi({ nodes, n: N, sweeps: SWEEPS, reference: local.grid, sync });
  if (!r.same) {
    console.error(`Jacobi on ${nodes} nodes (${sync}) differs from the local sweep`);
    process.exit(1);
  }
  const label = `Jacobi ${N}x${N}, ${SWEEPS} sweeps, ${nodes} node${nodes > 1 ? 's' : ''}, ${sync === 'flags' ? 'neighbour flags' : 'dsm.barrier'}`;
  row(`${label}: sweeps per second`, SWEEPS / (r.ms / 1e3), '1/s', 'local Float64Array sweep, same run', SWEEPS / (local.ms / 1e3), target ?? null);
  if (nodes > 1) {
    row(`${label}: faults through the service per sweep`, r.perSweep.serviceFaults, 'count', null, null);
    row(`${label}: invalidations per sweep`, r.perSweep.invalidations, 'count', null, null);
    row(`${label}: time sweeping, slowest node (the rest is synchronisation)`, Math.max(...r.computeMs), 'ms', 'whole run', r.ms);
  }
}
console.log(JSON.stringify({ suite: 'models', rows }));
