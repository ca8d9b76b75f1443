// Consistency models: the Jacobi stencil of examples/jacobi (1024 x 1024 doubles, 40
// sweeps, two 'sequential' grids, rows split between nodes started as child processes on
// this host) on 1, 2 and 4 nodes, against the same sweeps over a local Float64Array in
// this process, in the same run (speedup: the ratio of sweeps per second). Each DSM result
// is checked equal to the local one bit for bit (the suite fails otherwise). Synchronised
// per sweep with dsm.barrier, and on 2 nodes also with neighbour flags on 'sequential'
// pages (no barrier); plus where the time goes: faults and invalidations per sweep. And a
// migratory workload: two nodes taking turns on one page, against the same on a
// 'sequential' page. And the bare barrier round (2 nodes, nothing but dsm.barrier) against a
// bare TCP round trip between two processes, in the same run.
// Prints one JSON line (see run.mjs).
//
// The machine's own ceiling, in the same run: N processes each sweeping its share of rows
// over its own local Float64Array at once, with no communication and no synchronisation at
// all. No DSM can beat that; on a 2-vCPU machine shared with other work it is the figure
// that says what a speedup target can mean. And the peer an SPMD programmer would reach
// for instead of a DSM: the same processes exchanging their edge rows over TCP after every
// sweep, as an MPI program does (message passing, no DSM; result checked the same way).
import { nextMessage } from '../child_messages.mjs';
import { fork } from 'node:child_process';
import net from 'node:net';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dsmJacobi, initRows, localJacobi, rowsOf, sweepRows } from '../../examples/jacobi/jacobi.mjs';
import { cpuFor, forkBound } from '../../examples/jacobi/cpu_binding.mjs';

const now = () => Number(process.hrtime.bigint()) / 1e6;

/** A node in this process (durability 'none') and a child process of this file in mode `mode`, joined to it. */
async function nodeAndChild(mode) {
  const { createNode } = createRequire(import.meta.url)('../..');
  const dsm = await createNode({ listen: '127.0.0.1:0', secret: 'bench', regionSize: 64 << 20, durability: 'none' });
  const child = fork(fileURLToPath(import.meta.url), [mode, dsm.address]);
  await nextMessage(child);
  return { dsm, child };
}

/** The child's node, joined to the parent's (nodeAndChild). */
function joinParent() {
  const { createNode } = createRequire(import.meta.url)('../..');
  return createNode({ peers: [process.argv[3]], secret: 'bench', regionSize: 64 << 20, durability: 'none' });
}

/** Sweeps rows of share `k` of `nodes` over a local grid; the milliseconds the sweeps took. */
function share(n, sweeps, k, nodes) {
  const a = new Float64Array(2 * n * n);
  initRows(a, 0, n, 0, n);
  initRows(a, n * n, n, 0, n);
  const [r0, r1] = rowsOf(n, nodes, k);
  sweepRows(a, 0, n * n, n, r0, r1); // JIT warm-up
  let src = 0;
  let dst = n * n;
  const t0 = now();
  for (let s = 0; s < sweeps; s++) {
    sweepRows(a, src, dst, n, r0, r1);
    [src, dst] = [dst, src];
  }
  return now() - t0;
}

/** Increments of word `at` for `ms` milliseconds, yielding to the event loop every 10. */
async function incrementFor(dsm, at, ms) {
  let k = 0;
  const end = now() + ms;
  while (now() < end) {
    for (let i = 0; i < 10; i++) dsm.u32[at] += 1;
    k += 10;
    await new Promise((r) => setImmediate(r));
  }
  return k;
}

if (process.argv[2] === 'turns') {
  // The other node of the turn-taking workload.
  const dsm = await joinParent();
  process.on('message', async (m) => {
    if (m.cmd === 'go') {
      // The root is this node's once the parent's commit of it has arrived: waited for. (Read
      // at once, it was often not here yet, and this node counted increments of a property
      // of the typed array named NaN, touching no shared page at all.)
      await dsm.waitForGlobalTime(m.time);
      const ptr = dsm.root(m.root);
      if (ptr !== m.ptr) throw new Error(`root ${m.root} is ${ptr} here, ${m.ptr} on the parent`);
      process.send(await incrementFor(dsm, ptr / 4 + 1, m.ms));
    } else {
      await dsm.close();
      process.exit(0);
    }
  });
  process.send('joined');
  await new Promise(() => {});
}

/**
 * Two nodes taking turns on one page, each incrementing its own word on it as fast as it
 * can (yielding every 10): increments per second per node, the page 'migratory' and
 * 'sequential'.
 */
async function turns() {
  const { dsm, child: c } = await nodeAndChild('turns');
  const out = {};
  for (const model of ['migratory', 'sequential']) {
    await dsm.transaction((tx) => tx.setRoot(model, tx.alloc(4096, { model })));
    const ptr = dsm.root(model);
    const theirs = nextMessage(c);
    c.send({ cmd: 'go', root: model, ptr, time: dsm.globalTime, ms: 1500 });
    const mine = await incrementFor(dsm, ptr / 4, 1500);
    out[model] = (mine + (await theirs)) / 2 / 1.5;
  }
  c.send({ cmd: 'close' });
  await new Promise((r) => c.once('exit', r));
  await dsm.close();
  return out;
}

if (process.argv[2] === 'barrier') {
  // The other party of the bare barrier rounds.
  const dsm = await joinParent();
  process.once('message', async ({ rounds }) => {
    for (let i = 0; i < rounds; i++) await dsm.barrier('bare', 2);
    await dsm.close();
    process.send('done');
    process.exit(0);
  });
  process.send('joined');
  await new Promise(() => {});
}

const LOCK_MS = 1500;

/** Takes and releases lock 'turns' for `ms`, adding one to the sequential counter at `ptr` under it each time: the turns taken. */
async function lockTurns(dsm, ptr, ms) {
  const c = ptr / 4;
  let turns = 0;
  for (const end = now() + ms; now() < end; turns++) {
    const unlock = await dsm.lock('turns');
    dsm.u32[c] += 1;
    await unlock();
  }
  return turns;
}

if (process.argv[2] === 'lock') {
  // The other node taking turns on the lock.
  const dsm = await joinParent();
  process.once('message', async ({ ptr, time, ms }) => {
    await dsm.waitForGlobalTime(time);
    const turns = await lockTurns(dsm, ptr, ms);
    await dsm.close();
    process.send(turns, () => process.exit(0));
  });
  process.send('joined');
  await new Promise(() => {});
}

/**
 * Two nodes taking turns on one dsm.lock (each as fast as it can, a sequential counter
 * incremented under it): turns per second, both nodes together. Exits 1 if the counter
 * lost an increment (two holders at once).
 */
async function lockBench() {
  const { dsm, child: c } = await nodeAndChild('lock');
  await dsm.transaction((tx) => tx.setRoot('lock-counter', tx.alloc(4096, { model: 'sequential' })));
  const ptr = dsm.root('lock-counter');
  // The lock's page is made, and both nodes' code warmed, before the clock.
  await lockTurns(dsm, ptr, 100);
  const before = dsm.u32[ptr / 4];
  const theirs = nextMessage(c);
  c.send({ ptr, time: dsm.globalTime, ms: LOCK_MS });
  const mine = await lockTurns(dsm, ptr, LOCK_MS);
  const total = mine + (await theirs);
  const unlock = await dsm.lock('turns');
  const counted = dsm.u32[ptr / 4] - before;
  await unlock();
  await new Promise((r) => c.once('exit', r));
  await dsm.close();
  if (counted !== total) {
    console.error(`dsm.lock let two holders in: ${total} turns, the counter under it moved ${counted}`);
    process.exit(1);
  }
  return total / (LOCK_MS / 1e3);
}

if (process.argv[2] === 'echo') {
  // Echoes every byte back: the other end of the bare TCP round trip.
  const server = net.createServer((c) => {
    c.setNoDelay(true);
    c.on('data', (d) => c.write(d));
  });
  server.listen(0, '127.0.0.1', () => process.send(server.address().port));
  process.once('message', () => process.exit(0));
  await new Promise(() => {});
}

const BARRIER_WARMUP = 500;
const BARRIER_ROUNDS = 3000;

/** Milliseconds of BARRIER_ROUNDS rounds of dsm.barrier between this process's node and a child's. */
async function bareBarrier() {
  const { dsm, child: c } = await nodeAndChild('barrier');
  const done = nextMessage(c);
  c.send({ rounds: BARRIER_WARMUP + BARRIER_ROUNDS });
  for (let i = 0; i < BARRIER_WARMUP; i++) await dsm.barrier('bare', 2);
  const t0 = now();
  for (let i = 0; i < BARRIER_ROUNDS; i++) await dsm.barrier('bare', 2);
  const ms = now() - t0;
  await done;
  await dsm.close();
  return ms;
}

/** Milliseconds of BARRIER_ROUNDS one-byte round trips over TCP to a child process that echoes them. */
async function bareTcp() {
  const c = fork(fileURLToPath(import.meta.url), ['echo']);
  const port = await nextMessage(c);
  const s = net.connect(port, '127.0.0.1');
  s.setNoDelay(true);
  await new Promise((r) => s.once('connect', r));
  const one = Buffer.from([1]);
  const trip = () => new Promise((r) => { s.once('data', r); s.write(one); });
  for (let i = 0; i < BARRIER_WARMUP; i++) await trip();
  const t0 = now();
  for (let i = 0; i < BARRIER_ROUNDS; i++) await trip();
  const ms = now() - t0;
  s.destroy();
  c.send('exit');
  return ms;
}

/**
 * One process of the message-passing yardstick: sweeps its share of local grids and, after
 * every sweep, sends its edge rows to its neighbours over TCP and waits for theirs (the
 * halo exchange an MPI program makes). Node k listens; k connects to k + 1. Answers the
 * milliseconds the sweeps took and its final rows, to be checked against the local sweep.
 */
async function messagePassingShare(n, sweeps, k, nodes) {
  const rowBytes = n * 8;
  const a = new Float64Array(2 * n * n);
  initRows(a, 0, n, 0, n);
  initRows(a, n * n, n, 0, n);
  const [r0, r1] = rowsOf(n, nodes, k);
  // Rows arrive whole or in pieces; each neighbour sends exactly one row a sweep, in order.
  const link = (socket) => {
    socket.setNoDelay(true);
    const l = { socket, chunks: [], bytes: 0, waiter: null };
    socket.on('data', (d) => {
      l.chunks.push(d);
      l.bytes += d.length;
      if (l.waiter && l.bytes >= rowBytes) l.waiter();
    });
    return l;
  };
  const nextRow = async (l, into) => {
    if (l.bytes < rowBytes) await new Promise((r) => { l.waiter = r; });
    l.waiter = null;
    const all = l.chunks.length === 1 ? l.chunks[0] : Buffer.concat(l.chunks);
    Buffer.from(a.buffer, into * 8, rowBytes).set(all.subarray(0, rowBytes));
    const rest = all.subarray(rowBytes);
    l.chunks = rest.length ? [rest] : [];
    l.bytes = rest.length;
  };
  const server = net.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const below = k > 0 ? new Promise((r) => server.once('connection', (s) => r(link(s)))) : null;
  process.send(server.address().port);
  const ports = await new Promise((r) => process.once('message', r));
  let above = null;
  if (k + 1 < nodes) {
    const s = net.connect(ports[k + 1], '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    above = link(s);
  }
  const down = await below;
  sweepRows(a, 0, n * n, n, r0, r1); // JIT warm-up, then the grids start over
  initRows(a, n * n, n, 0, n);
  process.send('ready');
  await new Promise((r) => process.once('message', r));
  let src = 0;
  let dst = n * n;
  const t0 = now();
  for (let s = 0; s < sweeps; s++) {
    sweepRows(a, src, dst, n, r0, r1);
    if (down) down.socket.write(Buffer.from(a.buffer, (dst + r0 * n) * 8, rowBytes));
    if (above) above.socket.write(Buffer.from(a.buffer, (dst + (r1 - 1) * n) * 8, rowBytes));
    if (down) await nextRow(down, dst + (r0 - 1) * n);
    if (above) await nextRow(above, dst + r1 * n);
    [src, dst] = [dst, src];
  }
  const ms = now() - t0;
  return { ms, rows: Buffer.from(a.buffer, (src + r0 * n) * 8, (r1 - r0) * rowBytes).toString('base64') };
}

/** The message-passing yardstick on `nodes` processes (`bind`: each on a CPU of its own): the slowest one's milliseconds, and whether the grid equals `reference`. */
async function messagePassing(n, sweeps, nodes, reference, bind) {
  const children = [];
  const ports = [];
  for (let k = 0; k < nodes; k++) {
    const c = fork(fileURLToPath(import.meta.url), ['message-passing', String(n), String(sweeps), String(k), String(nodes)], bind ? forkBound(cpuFor(k)) : {});
    ports.push(await nextMessage(c));
    children.push(c);
  }
  const ready = children.map((c) => nextMessage(c));
  for (const c of children) c.send(ports);
  await Promise.all(ready);
  const done = children.map((c) => nextMessage(c));
  for (const c of children) c.send('go');
  const results = await Promise.all(done);
  let same = true;
  results.forEach((res, k) => {
    const [r0, r1] = rowsOf(n, nodes, k);
    const want = Buffer.from(reference.buffer, reference.byteOffset + r0 * n * 8, (r1 - r0) * n * 8);
    if (!want.equals(Buffer.from(res.rows, 'base64'))) same = false;
  });
  return { ms: Math.max(...results.map((res) => res.ms)), same };
}

if (process.argv[2] === 'message-passing') {
  const [n, sweeps, k, nodes] = process.argv.slice(3).map(Number);
  // A large message: exit once it is sent, not as soon as it is queued.
  process.send(await messagePassingShare(n, sweeps, k, nodes), () => process.exit(0));
  await new Promise(() => {});
}

if (process.argv[2] === 'share') {
  const [n, sweeps, k, nodes] = process.argv.slice(3).map(Number);
  process.once('message', () => {
    process.send(share(n, sweeps, k, nodes));
    process.exit(0);
  });
  process.send('ready');
  await new Promise(() => {});
}

/** The slowest of `nodes` processes sweeping their shares at once (no communication; `bind`: each on a CPU of its own). */
async function ceiling(n, sweeps, nodes, bind) {
  const children = [];
  for (let k = 0; k < nodes; k++) {
    const c = fork(fileURLToPath(import.meta.url), ['share', String(n), String(sweeps), String(k), String(nodes)], bind ? forkBound(cpuFor(k)) : {});
    await nextMessage(c);
    children.push(c);
  }
  const done = children.map((c) => nextMessage(c));
  for (const c of children) c.send('go');
  return Math.max(...(await Promise.all(done)));
}

const N = 1024;
const SWEEPS = 40;
const rows = [];
const row = (name, value, unit, baseline, baselineValue, target = null) =>
  rows.push({ name, value, unit, baseline, baselineValue, ratio: baselineValue ? value / baselineValue : null, target });

// Warm the kernel up (JIT) on both kinds of array before timing either.
localJacobi(256, 5);
// Each DSM node, and each message-passing process, bound to a CPU of its own (k mod the
// CPUs), as the example runs by default and as MPI launchers bind ranks; the 2-node rows
// also unbound, for comparison (cpu_binding.mjs says why binding pays here).
const runs = [
  { nodes: 1, sync: 'barrier' },
  { nodes: 2, sync: 'barrier', target: '>= 1.6' },
  { nodes: 2, sync: 'barrier', bind: false },
  { nodes: 2, sync: 'barrier', prefetch: false },
  // Steady state: 5 untimed sweeps over the real grids first (both threads compiled, the
  // pages' first moves made), then the grids start over.
  { nodes: 2, sync: 'barrier', warmup: 5 },
  { nodes: 4, sync: 'barrier' },
  { nodes: 2, sync: 'flags' },
];
for (const { nodes, sync, target, prefetch = true, warmup = 0, bind = true } of runs) {
  // The local baseline right before each DSM run: the machine's load drifts.
  const local = localJacobi(N, SWEEPS);
  const r = await dsmJacobi({ nodes, n: N, sweeps: SWEEPS, reference: local.grid, sync, prefetch, warmup, bind });
  if (!r.same) {
    console.error(`Jacobi on ${nodes} nodes (${sync}) differs from the local sweep`);
    process.exit(1);
  }
  const unbound = bind ? '' : ', unbound';
  const label = `Jacobi ${N}x${N}, ${SWEEPS} sweeps, ${nodes} node${nodes > 1 ? 's' : ''}, ${sync === 'flags' ? 'neighbour flags' : 'dsm.barrier'}${prefetch ? '' : ', no halo prefetch'}${warmup ? `, after ${warmup} untimed sweeps` : ''}${unbound}`;
  row(`${label}: sweeps per second`, SWEEPS / (r.ms / 1e3), '1/s', 'local Float64Array sweep, same run', SWEEPS / (local.ms / 1e3), target ?? null);
  if (nodes > 1 && sync === 'barrier' && prefetch && !warmup) {
    row(`machine ceiling: ${nodes} processes sweeping their shares of local grids at once, no communication${unbound}: sweeps per second`, SWEEPS / ((await ceiling(N, SWEEPS, nodes, bind)) / 1e3), '1/s', 'local Float64Array sweep, same run', SWEEPS / (local.ms / 1e3));
    const mp = await messagePassing(N, SWEEPS, nodes, local.grid, bind);
    if (!mp.same) {
      console.error(`the message-passing Jacobi on ${nodes} processes differs from the local sweep`);
      process.exit(1);
    }
    row(`message passing: ${nodes} processes sweeping their shares, halo rows sent over TCP after every sweep (no DSM)${unbound}: sweeps per second`, SWEEPS / (mp.ms / 1e3), '1/s', 'local Float64Array sweep, same run', SWEEPS / (local.ms / 1e3));
  }
  if (nodes > 1) {
    row(`${label}: faults through the service per sweep`, r.perSweep.serviceFaults, 'count', null, null);
    row(`${label}: invalidations per sweep`, r.perSweep.invalidations, 'count', null, null);
    row(`${label}: time sweeping, slowest node (the rest is synchronisation)`, Math.max(...r.computeMs), 'ms', 'whole run', r.ms);
  }
}
// The bare barrier round right after its TCP baseline: the machine's load drifts.
const tcpMs = await bareTcp();
const barrierMs = await bareBarrier();
row('dsm.barrier alone, 2 nodes: rounds per second', BARRIER_ROUNDS / (barrierMs / 1e3), '1/s', 'bare TCP round trip between two processes, same run', BARRIER_ROUNDS / (tcpMs / 1e3));
row('dsm.barrier alone, 2 nodes: microseconds per round', (barrierMs * 1e3) / BARRIER_ROUNDS, 'us', 'bare TCP round trip between two processes, same run', (tcpMs * 1e3) / BARRIER_ROUNDS);
const lockRate = await lockBench();
const tcpForLock = await bareTcp();
row('dsm.lock, two nodes taking turns (a sequential counter incremented under it): turns per second, both nodes', lockRate, '1/s', 'bare TCP round trips per second between two processes, same run', BARRIER_ROUNDS / (tcpForLock / 1e3));
const t = await turns();
row("two nodes taking turns on one page, 'migratory' (1 ms hold): increments per second per node", t.migratory, '1/s', "the same on a 'sequential' page", t.sequential);
console.log(JSON.stringify({ suite: 'models', rows }));
