// The shared heap against local allocation, inside one running transaction: small objects
// against new Uint8Array(n) and Buffer.allocUnsafe(n), large ones against new
// ArrayBuffer(n), free + reuse, and a pointer store; Plurix's published 3 us per object and
// 0.5 us per pointer assignment as references. Prints one JSON line (see run.mjs).
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { createNode } = require('../..');
const now = () => Number(process.hrtime.bigint());
const rows = [];
const row = (name, value, unit, baseline, baselineValue, target = null) =>
  rows.push({ name, value, unit, baseline, baselineValue, ratio: baselineValue ? value / baselineValue : null, target });
const perOp = (n, fn) => {
  const t0 = now();
  fn(n);
  return (now() - t0) / n;
};
let sink;
const dsm = await createNode({ regionSize: 1 << 30 });
const N = 50_000;
const localBySize = {};
for (const size of [16, 64, 256]) {
  const local = perOp(N, (n) => { for (let i = 0; i < n; i++) sink = new Uint8Array(size); });
  const buf = perOp(N, (n) => { for (let i = 0; i < n; i++) sink = Buffer.allocUnsafe(size); });
  localBySize[size] = local;
  const d = await dsm.transaction((tx) => perOp(N, (n) => { for (let i = 0; i < n; i++) sink = tx.alloc(size); }));
  row(`alloc ${size} B in a running transaction`, d, 'ns', `new Uint8Array(${size})`, local, '<= 1.5');
  row(`alloc ${size} B in a running transaction (vs Buffer)`, d, 'ns', `Buffer.allocUnsafe(${size})`, buf);
  row(`alloc ${size} B (vs Plurix)`, d, 'ns', 'Plurix: 3 us per object', 3000);
}
const M = 500;
const big = 64 << 10;
const localBig = perOp(M, (n) => { for (let i = 0; i < n; i++) sink = new ArrayBuffer(big); });
const ptrs = [];
const dBig = await dsm.transaction((tx) => perOp(M, (n) => { for (let i = 0; i < n; i++) ptrs.push(tx.alloc(big)); }));
row('alloc 64 KiB (whole pages)', dBig, 'ns', 'new ArrayBuffer(64 KiB)', localBig);
const freeReuse = await dsm.transaction((tx) => perOp(N, (n) => { for (let i = 0; i < n; i++) tx.free(tx.alloc(64)); }));
row('free + reuse of 64 B', freeReuse, 'ns', 'new Uint8Array(64)', localBySize[64]);
const objs = await dsm.transaction((tx) => Array.from({ length: 1000 }, () => tx.alloc(16)));
const store = await dsm.transaction(() => perOp(N, (n) => { for (let i = 0; i < n; i++) dsm.u32[objs[i % 1000] >> 2] = objs[(i + 1) % 1000]; }));
row('pointer store into an object', store, 'ns', 'Plurix: 0.5 us per pointer assignment', 500);
await dsm.close();
console.log(JSON.stringify({ suite: 'alloc', rows }));
