#!/usr/bin/env node
// SPMD kernels as a program on N nodes would write them: `node examples/kernels/run.mjs
// --nodes 3 [--seed S]`. This process founds the cluster and starts the other nodes as
// child processes on loopback; every node runs every kernel below and checks the result
// against a local computation, then all close. No node waits for the others to join before
// its first dsm.barrier: the barrier waits for them.
//
//  1. red-black Gauss-Seidel in place on a 'sequential' grid, rows split between the nodes;
//  2. matrix product: node 0 fills A and B, each node computes every N-th row of C;
//  3. prefix sums (Hillis-Steele) over two 'sequential' buffers, a barrier per step;
//  4. a histogram in 'sequential' memory, each update under dsm.lock;
//  5. a value passed round the nodes on a 'migratory' page;
//  6. partial sums of interleaved 'sequential' writes added into a transactional total;
//  7. one block freed and allocated again under each model in turn;
//  8. Jacobi until it converges: each sweep's largest change reduced through a transactional
//     word, every node deciding from it whether to sweep again (rows straddle pages);
//  9. Gaussian elimination with partial pivoting, the pivot row broadcast each step;
// 10. odd-even transposition sort of blocks, with barriers between neighbours only;
// 11. a work queue: a head index on a 'migratory' page taken under dsm.lock;
// 12. a wavefront: each node waits for its left neighbour's flag on a 'sequential' page;
// 13. every node at once fills blocks of every model in the transactions that allocate them;
// 14. workers write their share of a result and close; node 0 reads it afterwards.
// Exits 0 when every node found every result right, 1 otherwise (the node and kernel named).
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const { createNode } = require('../..'); // in your own project: require('node-dsm')
const SECRET = 'kernels-example';
const USAGE = 'usage: run.mjs --nodes N (1..16) [--seed S (a whole number; default: random, printed)]';

const child = process.argv[2] === '--child';
let nodes;
let seed;
let k = 0;
if (child) {
  [nodes, seed, k] = process.argv.slice(4).map(Number);
} else {
  let o;
  try {
    ({ values: o } = parseArgs({ options: { nodes: { type: 'string', default: '3' }, seed: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } } }));
  } catch (e) {
    console.error(`${e.message}\n${USAGE}`);
    process.exit(2);
  }
  if (o.help) {
    console.log(USAGE);
    process.exit(0);
  }
  nodes = Number(o.nodes);
  seed = o.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(o.seed);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 16 || !Number.isSafeInteger(seed)) {
    console.error(USAGE);
    process.exit(2);
  }
  console.log(`kernels on ${nodes} node(s), seed ${seed} (--seed ${seed} replays the histogram's draws)`);
}
// A node whose parent is gone has nobody to report to.
if (child) process.on('disconnect', () => process.exit(1));

const dsm = await createNode(child ? { peers: [process.argv[3]], secret: SECRET, regionSize: 64 << 20 } : { listen: '127.0.0.1:0', secret: SECRET, regionSize: 64 << 20 });
const others = [];
if (!child) {
  const self = fileURLToPath(import.meta.url);
  for (let i = 1; i < nodes; i++) others.push(fork(self, ['--child', dsm.address, String(nodes), String(seed), String(i)], { stdio: 'inherit' }));
}
const exited = others.map((c) => new Promise((r) => c.once('exit', (code) => r(code))));

const barrier = (name) => dsm.barrier(name, nodes);
function fail(kernel, what) {
  console.error(`node ${k}: ${kernel}: ${what}`);
  process.exit(1);
}
/** Node 0 allocates `bytes` under `model` and names it; every node gets the pointer. */
async function shared(name, bytes, model) {
  if (k === 0) await dsm.transaction((tx) => tx.setRoot(name, tx.alloc(bytes, { model })));
  await barrier(`alloc ${name}`);
  return dsm.transaction(() => dsm.root(name));
}
const rowsOf = (n) => [Math.floor((n * k) / nodes), Math.floor((n * (k + 1)) / nodes)];
const a = dsm.f64;
const u32 = dsm.u32;
const t0 = Date.now();

{
  const kernel = 'red-black Gauss-Seidel';
  const n = 120;
  const iterations = 15;
  const g = (await shared('gs', n * n * 8, 'sequential')) / 8;
  const init = (i, j) => (i === 0 ? 1 : i === n - 1 || j === 0 || j === n - 1 ? 0 : ((i * 7 + j * 13) % 17) / 17);
  const sweep = (arr, off, lo, hi, colour) => {
    for (let i = Math.max(lo, 1); i < Math.min(hi, n - 1); i++) {
      for (let j = 1 + ((i + colour) & 1); j < n - 1; j += 2) {
        arr[off + i * n + j] = 0.25 * (arr[off + (i - 1) * n + j] + arr[off + (i + 1) * n + j] + arr[off + i * n + j - 1] + arr[off + i * n + j + 1]);
      }
    }
  };
  const [r0, r1] = rowsOf(n);
  for (let i = r0; i < r1; i++) for (let j = 0; j < n; j++) a[g + i * n + j] = init(i, j);
  const ref = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) ref[i * n + j] = init(i, j);
  await barrier('gs init');
  for (let s = 0; s < iterations; s++) {
    for (const colour of [0, 1]) {
      sweep(a, g, r0, r1, colour);
      sweep(ref, 0, 0, n, colour);
      await barrier('gs');
    }
  }
  for (let i = 0; i < n * n; i++) if (a[g + i] !== ref[i]) fail(kernel, `cell ${i} is ${a[g + i]}, the local computation ${ref[i]}`);
}
{
  const kernel = 'matrix product';
  const n = 64;
  const A = (await shared('A', n * n * 8, 'sequential')) / 8;
  const B = (await shared('B', n * n * 8, 'sequential')) / 8;
  const C = (await shared('C', n * n * 8, 'sequential')) / 8;
  const av = (i) => (i % 7) - 3;
  const bv = (i) => (i % 5) - 2;
  if (k === 0) for (let i = 0; i < n * n; i++) [a[A + i], a[B + i]] = [av(i), bv(i)];
  await barrier('mm filled');
  for (let i = k; i < n; i += nodes) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let q = 0; q < n; q++) s += a[A + i * n + q] * a[B + q * n + j];
      a[C + i * n + j] = s;
    }
  }
  await barrier('mm done');
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let q = 0; q < n; q++) s += av(i * n + q) * bv(q * n + j);
      if (a[C + i * n + j] !== s) fail(kernel, `C[${i}][${j}] is ${a[C + i * n + j]}, the local computation ${s}`);
    }
  }
}
{
  const kernel = 'prefix sums';
  const m = 1500;
  const total = m * nodes;
  let src = (await shared('scan x', total * 8, 'sequential')) / 8;
  let dst = (await shared('scan y', total * 8, 'sequential')) / 8;
  for (let i = k * m; i < (k + 1) * m; i++) a[src + i] = (i % 10) + 1;
  await barrier('scan init');
  for (let d = 1; d < total; d *= 2) {
    for (let i = k * m; i < (k + 1) * m; i++) a[dst + i] = i >= d ? a[src + i] + a[src + i - d] : a[src + i];
    await barrier('scan');
    [src, dst] = [dst, src];
  }
  for (let i = 0, s = 0; i < total; i++) {
    s += (i % 10) + 1;
    if (a[src + i] !== s) fail(kernel, `element ${i} is ${a[src + i]}, the local computation ${s}`);
  }
}
{
  const kernel = 'histogram under a lock';
  const bins = 64;
  const rounds = 30;
  const per = 20;
  const h = (await shared('histogram', bins * 4, 'sequential')) / 4;
  let x = (seed + k * 7919) >>> 0;
  for (let r = 0; r < rounds; r++) {
    const unlock = await dsm.lock('histogram');
    try {
      for (let i = 0; i < per; i++) {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        u32[h + (x % bins)] += 1;
      }
    } finally {
      await unlock();
    }
  }
  await barrier('histogram done');
  let sum = 0;
  for (let b = 0; b < bins; b++) sum += u32[h + b];
  if (sum !== nodes * rounds * per) fail(kernel, `the bins hold ${sum} counts, ${nodes * rounds * per} were made`);
}
{
  const kernel = 'migratory ring';
  const rounds = 20;
  const r = (await shared('ring', 8, 'migratory')) / 4;
  for (let turn = 0; turn < rounds; turn++) {
    // This node's turn: the value says so. Spin a little, then let the event loop run.
    for (let spins = 0; u32[r] !== turn * nodes + k; spins++) if (spins > 50) await new Promise((res) => setTimeout(res, 0));
    u32[r] += 1;
    u32[r + 1] += k;
  }
  await barrier('ring done');
  if (u32[r] !== rounds * nodes) fail(kernel, `the value is ${u32[r]} after ${rounds * nodes} passes`);
  if (u32[r + 1] !== (rounds * nodes * (nodes - 1)) / 2) fail(kernel, `the sum of the passers is ${u32[r + 1]}`);
}
{
  const kernel = 'transactional total of sequential partial sums';
  const n = 30000;
  const v = (await shared('vector', n * 8, 'sequential')) / 8;
  const total = await shared('total', 8, 'transactional');
  for (let i = k; i < n; i += nodes) a[v + i] = i; // interleaved: every page written by every node
  await barrier('vector');
  const [i0, i1] = rowsOf(n);
  let part = 0;
  for (let i = i0; i < i1; i++) part += a[v + i];
  await dsm.transaction(() => {
    a[total / 8] += part;
  });
  await barrier('total');
  const got = await dsm.transaction(() => a[total / 8]);
  if (got !== ((n - 1) * n) / 2) fail(kernel, `the total is ${got}, the sum ${((n - 1) * n) / 2}`);
}
{
  const kernel = 'one block under each model in turn';
  const bytes = 16 * dsm.pageSize;
  const words = bytes / 4;
  const models = ['sequential', 'transactional', 'migratory', 'sequential', 'transactional'];
  for (let round = 0; round < models.length; round++) {
    const model = models[round];
    if (k === 0) {
      await dsm.transaction((tx) => {
        const old = dsm.root('block');
        if (old !== undefined) tx.free(old);
        tx.setRoot('block', tx.alloc(bytes, { model }));
      });
    }
    await barrier(`block ${round}`);
    const w = (await dsm.transaction(() => dsm.root('block'))) / 4;
    const write = () => {
      for (let i = k; i < words; i += nodes) u32[w + i] = round * 1000 + k + 1;
    };
    if (model === 'transactional') await dsm.transaction(write);
    else if (model === 'migratory') {
      // Nodes writing one migratory page by turns would move it at every write: a lock
      // makes each node's writes one visit.
      const unlock = await dsm.lock('block');
      try {
        write();
      } finally {
        await unlock();
      }
    } else write();
    await barrier(`block ${round} written`);
    const check = () => {
      for (let i = 0; i < words; i++) if (u32[w + i] !== round * 1000 + (i % nodes) + 1) return `round ${round} ('${model}'): word ${i} is ${u32[w + i]}`;
      return undefined;
    };
    const bad = model === 'transactional' ? await dsm.transaction(check) : check();
    if (bad) fail(kernel, bad);
    await barrier(`block ${round} checked`);
  }
}

{
  const kernel = 'Jacobi to convergence';
  const n = 77; // a row is 616 bytes: rows straddle pages, the grid ends inside one
  const tol = 1e-3; // 279 sweeps
  const g = [(await shared('jc a', n * n * 8, 'sequential')) / 8, (await shared('jc b', n * n * 8, 'sequential')) / 8];
  // Sweep s reduces into slot s % 3; node 0 clears the slot of sweep s + 1 before it arrives
  // at barrier s, when every node has read the slot of sweep s - 2, the one it clears.
  const res = (await shared('jc max', 3 * 8, 'transactional')) / 8;
  const init = (i, j) => (i === 0 ? 1 : j === n - 1 ? 0.5 : 0);
  const sweep = (arr, src, dst, lo, hi) => {
    let m = 0;
    for (let i = Math.max(lo, 1); i < Math.min(hi, n - 1); i++) {
      for (let j = 1; j < n - 1; j++) {
        const v = 0.25 * (arr[src + (i - 1) * n + j] + arr[src + (i + 1) * n + j] + arr[src + i * n + j - 1] + arr[src + i * n + j + 1]);
        m = Math.max(m, Math.abs(v - arr[src + i * n + j]));
        arr[dst + i * n + j] = v;
      }
    }
    return m;
  };
  const [r0, r1] = rowsOf(n);
  for (let i = r0; i < r1; i++) for (let j = 0; j < n; j++) a[g[0] + i * n + j] = a[g[1] + i * n + j] = init(i, j);
  const ref = new Float64Array(2 * n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) ref[i * n + j] = ref[n * n + i * n + j] = init(i, j);
  let refSweeps = 0;
  while (sweep(ref, (refSweeps % 2) * n * n, ((refSweeps + 1) % 2) * n * n, 0, n) >= tol) refSweeps++;
  refSweeps++;
  await barrier('jc init');
  let s = 0;
  for (;;) {
    const m = sweep(a, g[s % 2], g[(s + 1) % 2], r0, r1);
    await dsm.transaction(() => {
      if (m > a[res + (s % 3)]) a[res + (s % 3)] = m;
    });
    if (k === 0) await dsm.transaction(() => (a[res + ((s + 1) % 3)] = 0));
    await barrier('jc sweep');
    const done = a[res + (s % 3)] < tol;
    s++;
    if (done) break;
  }
  if (s !== refSweeps) fail(kernel, `converged after ${s} sweeps, the local computation after ${refSweeps}`);
  for (let i = 0; i < n * n; i++) if (a[g[s % 2] + i] !== ref[(s % 2) * n * n + i]) fail(kernel, `cell ${i} is ${a[g[s % 2] + i]}, the local computation ${ref[(s % 2) * n * n + i]}`);
}
{
  const kernel = 'Gaussian elimination';
  const n = 45;
  const w = n + 1; // the matrix and the right-hand side: 368-byte rows
  const M = (await shared('ge matrix', n * w * 8, 'sequential')) / 8;
  const P = (await shared('ge pivot', w * 8, 'sequential')) / 8;
  const val = (i, j) => (j === n ? i + 1 : ((i * 37 + j * 11 + seed) % 19) - 9 + (i === j ? 0.5 : 0));
  const ref = new Float64Array(n * w);
  for (let i = 0; i < n; i++) for (let j = 0; j < w; j++) ref[i * w + j] = val(i, j);
  for (let i = k; i < n; i += nodes) for (let j = 0; j < w; j++) a[M + i * w + j] = val(i, j);
  // Row i lives on node i % nodes; step c: the owner of row c swaps the pivot row in and
  // broadcasts it, every node eliminates below it in its rows.
  const pivotRow = (arr, off, c) => {
    let p = c;
    for (let i = c + 1; i < n; i++) if (Math.abs(arr[off + i * w + c]) > Math.abs(arr[off + p * w + c])) p = i;
    if (p !== c) for (let j = 0; j < w; j++) [arr[off + c * w + j], arr[off + p * w + j]] = [arr[off + p * w + j], arr[off + c * w + j]];
  };
  const eliminate = (arr, off, piv, c, first, step) => {
    for (let i = first; i < n; i += step) {
      if (i <= c) continue;
      const f = arr[off + i * w + c] / piv[c];
      for (let j = c; j < w; j++) arr[off + i * w + j] -= f * piv[j];
    }
  };
  for (let c = 0; c < n; c++) {
    pivotRow(ref, 0, c);
    eliminate(ref, 0, ref.slice(c * w, c * w + w), c, 0, 1);
  }
  await barrier('ge init');
  for (let c = 0; c < n; c++) {
    if (c % nodes === k) {
      pivotRow(a, M, c);
      for (let j = 0; j < w; j++) a[P + j] = a[M + c * w + j];
    }
    await barrier('ge pivot');
    eliminate(a, M, a.slice(P, P + w), c, k, nodes);
    await barrier('ge step');
  }
  for (let i = 0; i < n * w; i++) if (a[M + i] !== ref[i]) fail(kernel, `element ${i} is ${a[M + i]}, the local computation ${ref[i]}`);
}
{
  const kernel = 'odd-even transposition sort';
  const per = 333;
  const buf = (await shared('sort', nodes * per * 8, 'sequential')) / 8;
  let x = (seed * 2654435761) >>> 0;
  const data = Array.from({ length: nodes * per }, () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const mine = data.slice(k * per, (k + 1) * per).sort((p, q) => p - q);
  for (let i = 0; i < per; i++) a[buf + k * per + i] = mine[i];
  // Phase p pairs node k with k + 1 or k - 1; the pair meet at a barrier of two parties
  // before reading both blocks, and again before either overwrites its own.
  for (let phase = 0; phase < nodes; phase++) {
    const partner = (k + phase) % 2 === 0 ? k + 1 : k - 1;
    if (partner < 0 || partner >= nodes) continue;
    const pair = `sort ${Math.min(k, partner)}`;
    await dsm.barrier(pair, 2);
    const both = [...a.subarray(buf + k * per, buf + (k + 1) * per), ...a.subarray(buf + partner * per, buf + (partner + 1) * per)].sort((p, q) => p - q);
    await dsm.barrier(pair, 2);
    const keep = partner > k ? both.slice(0, per) : both.slice(per);
    for (let i = 0; i < per; i++) a[buf + k * per + i] = keep[i];
  }
  await barrier('sorted');
  const sorted = data.sort((p, q) => p - q);
  for (let i = 0; i < nodes * per; i++) if (a[buf + i] !== sorted[i]) fail(kernel, `element ${i} is ${a[buf + i]}, sorted ${sorted[i]}`);
}
{
  const kernel = 'work queue';
  const tasks = 150;
  const head = (await shared('queue head', 4, 'migratory')) / 4;
  const results = (await shared('queue results', tasks * 8, 'sequential')) / 8;
  const work = (t) => {
    let s = 0;
    for (let i = 0; i <= t % 40; i++) s += Math.sqrt(t * 1000 + i);
    return s;
  };
  for (let taken = 0; ; taken++) {
    const unlock = await dsm.lock('queue');
    let t;
    try {
      t = u32[head];
      if (t < tasks) u32[head] = t + 1;
    } finally {
      await unlock();
    }
    if (t >= tasks) break;
    a[results + t] = work(t);
    if (taken % 8 === 7) await new Promise((res) => setImmediate(res)); // let the others in
  }
  await barrier('queue done');
  for (let t = 0; t < tasks; t++) if (a[results + t] !== work(t)) fail(kernel, `task ${t}'s result is ${a[results + t]}, the local computation ${work(t)}`);
}
{
  const kernel = 'wavefront';
  const rows = 40;
  const cols = 101;
  const grid = (await shared('wave', rows * cols * 8, 'sequential')) / 8;
  const flags = (await shared('wave flags', nodes * dsm.pageSize, 'sequential')) / 4; // a page per node
  const flag = (j) => flags + (j * dsm.pageSize) / 4;
  const f = (i, j, up, left) => (i === 0 && j === 0 ? 1 : ((up + left) % 1000003) + ((i * 3 + j) % 7));
  const [c0, c1] = rowsOf(cols);
  for (let i = 0; i < rows; i++) {
    // Row i of the left neighbour's columns is done once its flag passes i.
    if (k > 0) for (let spins = 0; u32[flag(k - 1)] <= i; spins++) if (spins > 100) await new Promise((res) => setImmediate(res));
    for (let j = c0; j < c1; j++) a[grid + i * cols + j] = f(i, j, i > 0 ? a[grid + (i - 1) * cols + j] : 0, j > 0 ? a[grid + i * cols + j - 1] : 0);
    u32[flag(k)] = i + 1;
  }
  await barrier('wave done');
  const ref = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) ref[i * cols + j] = f(i, j, i > 0 ? ref[(i - 1) * cols + j] : 0, j > 0 ? ref[i * cols + j - 1] : 0);
  for (let i = 0; i < rows * cols; i++) if (a[grid + i] !== ref[i]) fail(kernel, `cell ${i} is ${a[grid + i]}, the local computation ${ref[i]}`);
}
{
  const kernel = 'blocks filled as they are allocated';
  // Every node at once: their allocations collide, and the runs that lose go again.
  const words = 2500;
  const blocks = {};
  // The blocks are found through one table (a word per model and node), not a root each:
  // a heap has 64 root names, and 16 nodes would take 48 of them.
  const named = ['sequential', 'migratory', 'transactional'];
  const table = (await shared('filled table', named.length * nodes * 4, 'transactional')) / 4;
  const entry = (model, j) => table + named.indexOf(model) * nodes + j;
  for (const model of ['sequential', 'migratory', 'transactional', 'local']) {
    blocks[model] = await dsm.transaction((tx) => {
      const p = tx.alloc(words * 4, { model });
      for (let i = 0; i < words; i++) u32[p / 4 + i] = k * 100000 + i;
      if (model !== 'local') u32[entry(model, k)] = p;
      return p;
    });
  }
  await barrier('filled');
  const check = (p, j) => {
    for (let i = 0; i < words; i++) if (u32[p / 4 + i] !== j * 100000 + i) return `word ${i} is ${u32[p / 4 + i]}`;
    return undefined;
  };
  const bad = check(blocks.local, k);
  if (bad) fail(kernel, `this node's 'local' block: ${bad}`);
  for (const model of ['sequential', 'migratory', 'transactional']) {
    for (let j = 0; j < nodes; j++) {
      const p = await dsm.transaction(() => u32[entry(model, j)]);
      // Migratory pages move on every touch: one node reads them at a time.
      const unlock = model === 'migratory' ? await dsm.lock('filled') : undefined;
      const wrong = model === 'transactional' ? await dsm.transaction(() => check(p, j)) : check(p, j);
      await unlock?.();
      if (wrong) fail(kernel, `node ${j}'s '${model}' block: ${wrong}`);
    }
  }
  await barrier('filled read');
  await dsm.transaction((tx) => {
    for (const [model, p] of Object.entries(blocks)) {
      tx.free(p);
      if (model !== 'local') u32[entry(model, k)] = 0;
    }
  });
}

// 14. Workers write their share of a result and close; node 0 reads it after they have gone
// (a closing node hands its sequential pages to a member that stays).
const share = 4 * dsm.pageSize;
const result = (await shared('result', nodes * share, 'sequential')) / 4;
for (let i = 0; i < share / 4; i++) u32[result + (k * share) / 4 + i] = k * 1_000_000 + i;
await barrier('end');
if (k === 0) {
  const codes = await Promise.all(exited);
  const bad = codes.findIndex((c) => c !== 0);
  if (bad >= 0) {
    console.error(`node ${bad + 1} exited with ${codes[bad]}`);
    process.exit(1);
  }
  for (let j = 0; j < nodes; j++) {
    for (let i = 0; i < share / 4; i++) {
      const v = u32[result + (j * share) / 4 + i];
      if (v !== j * 1_000_000 + i) fail('results of closed workers', `node ${j}'s word ${i} is ${v} after it closed`);
    }
  }
  console.log(`every kernel right on every node (${Date.now() - t0} ms)`);
}
await dsm.close();
// The channel to the parent (watched for 'disconnect' above) would keep a child running.
if (child) process.exit(0);
