// A Jacobi stencil as an SPMD program over the DSM: two n x n grids of doubles allocated
// with the 'sequential' model, rows split between the nodes, one sweep reads one grid and
// writes the other, then every node waits at a barrier (dsm.barrier; or, with sync 'flags',
// only for its neighbours, through flags on 'sequential' pages) and the grids swap. The rows next
// to another node's share travel through the DSM (a read fault fetches a copy; the owner's
// next write invalidates it). The same kernel runs over a local Float64Array for the
// reference result and the baseline time.
//
// Used by run.mjs (the command-line example) and benchmarks/suites/models.mjs.
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { bindProcess, cpuFor, cpusAllowed, cpusOf, forkBound } from './cpu_binding.mjs';

const require = createRequire(import.meta.url);
const { createNode } = require('../..'); // in your own project: require('node-dsm')
const SECRET = 'jacobi-example';
const now = () => Number(process.hrtime.bigint()) / 1e6;

/** Initial value of cell (i, j): a hot top edge, a deterministic pattern inside. */
function initial(n, i, j) {
  if (i === 0) return 1;
  if (i === n - 1 || j === 0 || j === n - 1) return 0;
  return ((i * 31 + j * 17) % 101) / 101;
}

/** Fills rows [r0, r1) of the grid at element offset `off` of `a`. */
export function initRows(a, off, n, r0, r1) {
  for (let i = r0; i < r1; i++) for (let j = 0; j < n; j++) a[off + i * n + j] = initial(n, i, j);
}

/** One sweep over rows [r0, r1) (edges excluded): dst = mean of src's four neighbours. */
export function sweepRows(a, src, dst, n, r0, r1) {
  const lo = Math.max(r0, 1);
  const hi = Math.min(r1, n - 1);
  for (let i = lo; i < hi; i++) {
    const row = src + i * n;
    const out = dst + i * n;
    for (let j = 1; j < n - 1; j++) a[out + j] = 0.25 * (a[row - n + j] + a[row + n + j] + a[row + j - 1] + a[row + j + 1]);
  }
}

/** Rows of node `k` of `nodes`: an even split. */
export function rowsOf(n, nodes, k) {
  return [Math.floor((n * k) / nodes), Math.floor((n * (k + 1)) / nodes)];
}

/** The reference: `sweeps` sweeps over a local Float64Array; the final grid and the milliseconds the sweeps took. */
export function localJacobi(n, sweeps) {
  const a = new Float64Array(2 * n * n);
  initRows(a, 0, n, 0, n);
  initRows(a, n * n, n, 0, n);
  let src = 0;
  let dst = n * n;
  const t0 = now();
  for (let s = 0; s < sweeps; s++) {
    sweepRows(a, src, dst, n, 0, n);
    [src, dst] = [dst, src];
  }
  const ms = now() - t0;
  return { grid: a.subarray(src, src + n * n), ms };
}

/**
 * Waits until the neighbours of node `k` have finished sweep `s` - 1 (their flags, one
 * 'sequential' page per node, say so). Jacobi needs no more than that: the rows a node reads
 * next are its neighbours', and the rows it overwrites next only they read. A flag copy held
 * here is read without any message; the neighbour's write of its flag invalidates it, and
 * the next read fetches the new value. Spins a little, then lets the event loop run.
 */
async function waitNeighbours(u32, flags, pageWords, k, nodes, s) {
  for (const j of [k - 1, k + 1]) {
    if (j < 0 || j >= nodes) continue;
    const at = flags / 4 + j * pageWords;
    for (let spins = 0; u32[at] < s; spins++) if (spins > 200) await new Promise((r) => setImmediate(r));
  }
}

/** One node's part: waits for the grids, initialises its rows (taking their pages), sweeps. */
async function party(dsm, k, nodes, n, sweeps, sync, prefetch, warmup) {
  await dsm.barrier('jacobi-alloc', nodes);
  const [ga, gb, flags] = await dsm.transaction(() => [dsm.root('jacobi-a'), dsm.root('jacobi-b'), dsm.root('jacobi-flags')]);
  const pageWords = dsm.pageSize / 4;
  const [r0, r1] = rowsOf(n, nodes, k);
  const a = dsm.f64;
  const rowBytes = n * 8;
  let src;
  let dst;
  const init = () => {
    src = ga / 8;
    dst = gb / 8;
    initRows(a, src, n, r0, r1);
    initRows(a, dst, n, r0, r1);
  };
  // Sweeps so far, warm-up included: the flags count on.
  let step = 0;
  let computeMs = 0;
  const run = async (count) => {
    for (let s = 0; s < count; s++) {
      const c0 = now();
      if (prefetch && r1 - r0 >= 2) {
        // The halo moves while the interior is swept: the neighbours' edge rows (they wrote
        // them last sweep) come here, and this node's own edge rows (they read them last
        // sweep) come back owned. By the time the edges are swept, their pages are here; a
        // touch before that waits for the same transfer. Not awaited: nothing waits for it.
        // (The neighbours push their edge rows at the barrier, so mostly they are here
        // already and the prefetch answers at once.)
        if (r0 > 0) {
          void dsm.prefetch((src + (r0 - 1) * n) * 8, rowBytes);
          void dsm.prefetch((dst + r0 * n) * 8, rowBytes, { write: true });
        }
        if (r1 < n) {
          void dsm.prefetch((src + r1 * n) * 8, rowBytes);
          void dsm.prefetch((dst + (r1 - 1) * n) * 8, rowBytes, { write: true });
        }
        sweepRows(a, src, dst, n, r0 + 1, r1 - 1);
        sweepRows(a, src, dst, n, r0, r0 + 1);
        sweepRows(a, src, dst, n, r1 - 1, r1);
      } else {
        sweepRows(a, src, dst, n, r0, r1);
      }
      computeMs += now() - c0;
      step++;
      if (sync === 'flags') {
        dsm.u32[flags / 4 + k * pageWords] = step;
        await waitNeighbours(dsm.u32, flags, pageWords, k, nodes, step);
      } else {
        await dsm.barrier('jacobi-sweep', nodes);
      }
      [src, dst] = [dst, src];
    }
  };
  init();
  // The kernel is compiled before the clock starts, as for the local reference (the
  // benchmark warms it there too): a few sweeps of a small local grid.
  localJacobi(256, 5);
  if (warmup > 0) {
    // Untimed sweeps over the real grids first (both threads' code compiled, the pages'
    // first moves made), then the grids start over.
    await dsm.barrier('jacobi-warm', nodes);
    await run(warmup);
    init();
  }
  // The counters are read before the barrier that starts the clocks, not after: the
  // service's answer takes a few ms under load, and each node's clock would start that much
  // later than the others' (the first sweep then waits for the latest starter).
  const before = { stats: dsm.stats(), cluster: await dsm.clusterStats() };
  await dsm.barrier('jacobi-init', nodes);
  const t0 = now();
  computeMs = 0;
  await run(sweeps);
  const ms = now() - t0;
  const after = { stats: dsm.stats(), cluster: await dsm.clusterStats() };
  const d = (f) => f(after) - f(before);
  return {
    ms,
    computeMs,
    cpus: cpusAllowed(),
    final: src * 8,
    serviceFaults: d((x) => x.stats.faults.service),
    localFaults: d((x) => x.stats.faults.read + x.stats.faults.write),
    readCopiesServed: d((x) => x.cluster.sequential.readFetches),
    invalidationsSent: d((x) => x.cluster.sequential.invalidationsSent),
    pushed: d((x) => x.cluster.sequential.pushed),
  };
}

/**
 * Runs the stencil on `nodes` DSM nodes on this host (this process and nodes - 1 child
 * processes on loopback) and checks the result against localJacobi bit for bit. With
 * `prefetch` (the default) each node asks for its halo with dsm.prefetch and sweeps its
 * interior while the halo moves. `warmup` sweeps run untimed first (then the grids start over).
 * `bind`: node k runs bound to CPU k mod the CPU count (cpu_binding.mjs), this process
 * (node 0) only until the run ends.
 */
export async function dsmJacobi({ nodes, n, sweeps, reference, sync = 'barrier', prefetch = true, warmup = 0, bind = false }) {
  const regionSize = Math.max(64 << 20, 2 ** Math.ceil(Math.log2(4 * n * n * 8)));
  const unbound = bind ? cpusOf(process.pid) : undefined;
  const cpus = bind ? Array.from({ length: nodes }, (_, k) => cpuFor(k)) : [];
  // Before the node starts: the threads it starts inherit the binding.
  if (bind) bindProcess(process.pid, cpus[0]);
  const children = [];
  let dsm;
  try {
    dsm = await createNode({ listen: '127.0.0.1:0', secret: SECRET, regionSize, durability: 'none' });
    for (let k = 1; k < nodes; k++) {
      const c = fork(fileURLToPath(import.meta.url), ['worker', dsm.address, String(k), String(nodes), String(n), String(sweeps), String(regionSize), sync, String(prefetch), String(warmup)], bind ? forkBound(cpus[k]) : {});
      children.push(c);
      await new Promise((resolve, reject) => {
        c.once('message', resolve);
        c.once('exit', (code) => reject(new Error(`worker ${k} exited with ${code} before joining`)));
      });
    }
    await dsm.transaction((tx) => {
      tx.setRoot('jacobi-a', tx.alloc(n * n * 8, { model: 'sequential' }));
      tx.setRoot('jacobi-b', tx.alloc(n * n * 8, { model: 'sequential' }));
      tx.setRoot('jacobi-flags', tx.alloc(nodes * dsm.pageSize, { model: 'sequential' }));
    });
    // Every node has joined: all can wait for all at a barrier now.
    const results = children.map((c) => new Promise((resolve) => c.once('message', resolve)));
    for (const c of children) c.send('go');
    const mine = await party(dsm, 0, nodes, n, sweeps, sync, prefetch, warmup);
    const theirs = await Promise.all(results);
    const all = [mine, ...theirs];
    // Bit for bit: compare the doubles' bytes.
    const got = new Uint8Array(dsm.u8.buffer, mine.final, n * n * 8);
    const want = new Uint8Array(reference.buffer, reference.byteOffset, n * n * 8);
    let same = got.length === want.length;
    for (let i = 0; same && i < got.length; i++) same = got[i] === want[i];
    const sum = (f) => all.reduce((s, r) => s + f(r), 0);
    return {
      ms: Math.max(...all.map((r) => r.ms)),
      computeMs: all.map((r) => r.computeMs),
      /** The CPUs each node's process could run on (Linux; else undefined). */
      cpus: all.map((r) => r.cpus),
      same,
      perSweep: {
        serviceFaults: sum((r) => r.serviceFaults) / sweeps,
        localFaults: sum((r) => r.localFaults) / sweeps,
        readCopies: sum((r) => r.readCopiesServed) / sweeps,
        invalidations: sum((r) => r.invalidationsSent) / sweeps,
        pushed: sum((r) => r.pushed) / sweeps,
      },
    };
  } finally {
    for (const c of children) c.send('close');
    await Promise.all(children.map((c) => (c.exitCode !== null ? null : new Promise((r) => c.once('exit', r)))));
    await dsm?.close();
    if (unbound) bindProcess(process.pid, unbound);
  }
}

if (process.argv[2] === 'worker') {
  const [address, k, nodes, n, sweeps, regionSize, sync, prefetch, warmup] = process.argv.slice(3);
  const dsm = await createNode({ peers: [address], secret: SECRET, regionSize: Number(regionSize), durability: 'none' });
  process.on('message', async (m) => {
    if (m === 'go') {
      process.send(await party(dsm, Number(k), Number(nodes), Number(n), Number(sweeps), sync, prefetch === 'true', Number(warmup)));
    } else if (m === 'close') {
      await dsm.close();
      process.exit(0);
    }
  });
  process.send('joined');
}
