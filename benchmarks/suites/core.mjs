// One node: fault costs against the bare floor, scans of granted pages against a local
// typed array, transaction latencies. Prints one JSON line (see run.mjs).
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { createNode } = require('../..');
const hooks = require('../../dist/native.js').loadNativeHooks();

const PAGE = 4096;
const now = () => Number(process.hrtime.bigint());
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const rows = [];
const row = (name, value, unit, baseline, baselineValue, target = null) =>
  rows.push({ name, value, unit, baseline, baselineValue, ratio: baselineValue ? value / baselineValue : null, target });

const dsm = await createNode({ regionSize: 256 << 20 });
const floorNs = hooks.measureFaultFloor(4000, 7);
const mprotectNs = hooks.measureMprotect(4000, 7);
row('bare fault floor (SIGSEGV + mprotect + return)', floorNs, 'ns', 'measured natively', floorNs);
row('mprotect of one page', mprotectNs, 'ns', 'bare fault floor', floorNs);

// In-handler faults: N distinct pages per transaction, one access each.
const N = 4000;
const readNs = [];
const writeNs = [];
for (let r = 0; r < 7; r++) {
  const first = 1000 + (r % 2) * N;
  await dsm.transaction(() => {
    let s = 0;
    const t0 = now();
    for (let p = first; p < first + N; p++) s += dsm.u8[p * PAGE];
    readNs.push((now() - t0) / N);
    return s;
  });
  await dsm.transaction(() => {
    const t0 = now();
    for (let p = first + 2 * N; p < first + 3 * N; p++) dsm.u8[p * PAGE + 1] = r;
    writeNs.push((now() - t0) / N);
  });
}
row('read-tracking fault (in handler)', median(readNs), 'ns', 'bare fault floor', floorNs, '<= 1.3');
row('shadow-on-write fault (in handler, 4 KiB copy)', median(writeNs), 'ns', 'bare fault floor', floorNs, '<= 1.3');

// JIT-hot scans: granted pages against a local array of the same length.
const len = (16 << 20) / 8;
const off = (64 << 20) / 8;
const local = new Float64Array(len).fill(1);
const scan = (a, o) => {
  let s = 0;
  for (let i = 0; i < len; i++) s += a[o + i];
  return s;
};
scan(dsm.f64, off); // grants the pages (reads outside a transaction)
const dsmScan = [];
const localScan = [];
for (let r = 0; r < 9; r++) {
  let t0 = now();
  scan(local, 0);
  localScan.push(now() - t0);
  t0 = now();
  scan(dsm.f64, off);
  dsmScan.push(now() - t0);
}
const mbps = (ns) => (len * 8) / ns * 1e3; // MB/s
row('scan of granted pages (f64, 16 MiB)', mbps(median(dsmScan)), 'MB/s', 'same scan of a local Float64Array', mbps(median(localScan)), '>= 0.95');

// Transactions.
async function txLatency(fn, iters) {
  for (let i = 0; i < 200; i++) await dsm.transaction(fn);
  const per = [];
  for (let b = 0; b < 9; b++) {
    const t0 = now();
    for (let i = 0; i < iters; i++) await dsm.transaction(fn);
    per.push((now() - t0) / iters);
  }
  return median(per) / 1000;
}
row('empty transaction', await txLatency(() => {}, 5000), 'us', null, null, '<= 10 us');
for (const k of [1, 10, 100]) {
  const us = await txLatency(() => {
    for (let p = 0; p < k; p++) dsm.u32[((20000 + p) * PAGE) / 4] += 1;
  }, k === 100 ? 200 : 2000);
  row(`transaction touching ${k} page(s) (read-modify-write)`, us, 'us', 'k x 2 bare faults', (k * 2 * floorNs) / 1000);
}
const commitsPerSec = 1e6 / (await txLatency(() => { dsm.u32[(30000 * PAGE) / 4] += 1; }, 5000));
row('commits per second, one node (token local)', commitsPerSec, '1/s', 'target 20,000/s', 20000, '>= 1');

// The service bridge: fault -> uv_async -> worker JS -> install -> futex wake.
const bridge = [];
for (let i = 0; i < 300; i++) {
  const p = 40000 + i;
  await dsm._testInvalidate(p, 1);
  const t0 = now();
  const v = dsm.u8[p * PAGE];
  bridge.push(now() - t0 + v * 0);
}
row('fault resolved by the service thread', median(bridge), 'ns', 'bare fault floor', floorNs);

await dsm.close();
console.log(JSON.stringify({ suite: 'core', rows }));
