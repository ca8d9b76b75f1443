// The shared heap against local allocation, inside one running transaction: small objects
// against new Uint8Array(n), Buffer.allocUnsafe(n) and the addon's malloc(n), and with the
// first write into each object (which for the DSM is where its page faults in); large ones against new
// ArrayBuffer(n), free + reuse, and a pointer store; Plurix's published 3 us per object and
// 0.5 us per pointer assignment as references. Prints one JSON line (see run.mjs).
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { createNode } = require('../..');
const hooks = require('../../dist/native.js').loadNativeHooks();
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
  // Every loop runs once untimed first, so each side is measured JIT-compiled.
  const local = (n) => { for (let i = 0; i < n; i++) sink = new Uint8Array(size); };
  const buf = (n) => { for (let i = 0; i < n; i++) sink = Buffer.allocUnsafe(size); };
  const localW = (n) => { for (let i = 0; i < n; i++) (sink = new Uint8Array(size))[0] = 1; };
  const u8 = dsm.u8;
  const mk = (tx) => (n) => { for (let i = 0; i < n; i++) sink = tx.alloc(size); };
  const mkW = (tx) => (n) => { for (let i = 0; i < n; i++) u8[(sink = tx.alloc(size))] = 1; };
  for (const f of [local, buf, localW]) f(N);
  await dsm.transaction((tx) => { mk(tx)(N); mkW(tx)(N); });
  const tLocal = perOp(N, local);
  const tBuf = perOp(N, buf);
  const tLocalW = perOp(N, localW);
  const tMalloc = hooks.measureMalloc(size, N, 5);
  localBySize[size] = tLocal;
  const d = await dsm.transaction((tx) => perOp(N, mk(tx)));
  const dW = await dsm.transaction((tx) => perOp(N, mkW(tx)));
  row(`alloc ${size} B in a running transaction`, d, 'ns', `new Uint8Array(${size})`, tLocal, '<= 1.5');
  row(`alloc ${size} B in a running transaction (vs Buffer)`, d, 'ns', `Buffer.allocUnsafe(${size})`, tBuf);
  row(`alloc ${size} B in a running transaction (vs malloc)`, d, 'ns', `native malloc(${size})`, tMalloc);
  row(`alloc ${size} B (vs Plurix)`, d, 'ns', 'Plurix: 3 us per object', 3000);
  row(`alloc ${size} B + first write (page faults in)`, dW, 'ns', `new Uint8Array(${size}) + write`, tLocalW);
}
const M = 500;
const big = 64 << 10;
const localBigLoop = (n) => { for (let i = 0; i < n; i++) sink = new ArrayBuffer(big); };
localBigLoop(M);
const localBig = perOp(M, localBigLoop);
const ptrs = [];
const dBig = await dsm.transaction((tx) => perOp(M, (n) => { for (let i = 0; i < n; i++) ptrs.push(tx.alloc(big)); }));
row('alloc 64 KiB (whole pages)', dBig, 'ns', 'new ArrayBuffer(64 KiB)', localBig);
const reuse = (tx) => (n) => { for (let i = 0; i < n; i++) tx.free(tx.alloc(64)); };
await dsm.transaction((tx) => reuse(tx)(N));
const freeReuse = await dsm.transaction((tx) => perOp(N, reuse(tx)));
row('free + reuse of 64 B', freeReuse, 'ns', 'new Uint8Array(64)', localBySize[64]);
const objs = await dsm.transaction((tx) => Array.from({ length: 1000 }, () => tx.alloc(16)));
const store = await dsm.transaction(() => perOp(N, (n) => { for (let i = 0; i < n; i++) dsm.u32[objs[i % 1000] >> 2] = objs[(i + 1) % 1000]; }));
row('pointer store into an object', store, 'ns', 'Plurix: 0.5 us per pointer assignment', 500);
await dsm.close();
console.log(JSON.stringify({ suite: 'alloc', rows }));
