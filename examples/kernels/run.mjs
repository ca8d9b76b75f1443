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
//  8. workers write their share of a result and close; node 0 reads it afterwards.
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

// 8. Workers write their share of a result and close; node 0 reads it after they have gone
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
