// The page server's store: a commit stream applied and group-committed into LMDB, against a
// raw sequential write of the same bytes with the same number of fsyncs (fs.writeSync +
// fs.fsyncSync into a plain file), in the same run on the same disk. Two readings of "the
// same bytes": the page images each flush makes durable (what the store must write), and the
// commit records themselves (what a log of the stream would write). Prints one JSON line (see run.mjs).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
const require = createRequire(import.meta.url);
const { PageStore } = require('../../dist/pageserver/store.js');
const { CommitLog } = require('../../dist/pageserver/wal.js');
const { writeSnapshot, restoreSnapshot } = require('../../dist/pageserver/snapshot.js');

const PS = 4096;
const PAGES = 16384; // a 64 MiB region
const now = () => Number(process.hrtime.bigint());
const rows = [];
const row = (name, value, unit, baseline, baselineValue, target = null, ratio = baselineValue ? value / baselineValue : null) =>
  rows.push({ name, value, unit, baseline, baselineValue, ratio, target });

const work = fs.mkdtempSync(path.join(process.env.DSM_BENCH_DIR ?? os.tmpdir(), 'dsm-pagestore-bench-'));
let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);

/** One change: u64 version replaced | u32 length | body. */
function change(replaces, body) {
  const c = new Uint8Array(12 + body.length);
  const dv = new DataView(c.buffer);
  dv.setUint32(0, replaces >>> 0, true);
  dv.setUint32(4, Math.floor(replaces / 2 ** 32), true);
  dv.setUint32(8, body.length, true);
  c.set(body, 12);
  return c;
}

/**
 * Commits over the pre-filled region: `pagesPer` distinct pages each, every page a diff of
 * one run of `words` words (or a whole page when words is the page's), replacing its current version.
 */
function makeStream(n, pagesPer, words, versions, firstTime, among = PAGES) {
  const out = [];
  let time = firstTime;
  for (let i = 0; i < n; i++) {
    time++;
    const set = new Set();
    while (set.size < pagesPer) set.add(Math.floor(rand() * among));
    const pages = Uint32Array.from([...set].sort((a, b) => a - b));
    const parts = [];
    for (const p of pages) {
      let body;
      if (words * 4 >= PS) body = new Uint8Array(PS).fill(time & 0xff);
      else {
        body = new Uint8Array(4 + words * 4);
        const dv = new DataView(body.buffer);
        dv.setUint16(0, Math.floor(rand() * (PS / 4 - words)), true);
        dv.setUint16(2, words, true);
        for (let w = 0; w < words; w++) dv.setUint32(4 + w * 4, time + w, true);
      }
      parts.push(change(versions[p], body));
      versions[p] = time;
    }
    const changes = new Uint8Array(parts.reduce((s, x) => s + x.length, 0));
    let o = 0;
    for (const x of parts) (changes.set(x, o), (o += x.length));
    out.push({ time, pages, changes });
  }
  return out;
}

const mbs = (bytes, ns) => bytes / 2 ** 20 / (ns / 1e9);

/** A raw sequential write: `sizes[i]` bytes then one fsync, per flush. Returns ns. */
function rawWrite(name, sizes) {
  const file = path.join(work, `raw-${name}`);
  const fd = fs.openSync(file, 'w');
  const buf = Buffer.alloc(Math.max(...sizes, 1), 0x5a);
  const t0 = now();
  for (const n of sizes) {
    fs.writeSync(fd, buf, 0, n);
    fs.fsyncSync(fd);
  }
  const dt = now() - t0;
  fs.closeSync(fd);
  fs.rmSync(file);
  return dt;
}

const store = await PageStore.open(path.join(work, 'store'), { pageSize: PS, regionSize: PAGES * PS });
// Every page written once first: the runs below update a full store, as a running cluster does.
const versions = new Float64Array(PAGES);
let time = 0;
{
  const fill = [];
  for (let p = 0; p < PAGES; p++) fill.push({ page: p, version: 1, data: new Uint8Array(PS).fill(p & 0xff) });
  for (let i = 0; i < PAGES; i += 1024) await store.load(fill.slice(i, i + 1024), i + 1024 >= PAGES ? 1 : 0);
  versions.fill(1);
  time = 1;
}
// The layout's own cost: the data file over the pages' bytes, freshly loaded (see store.ts).
const loaded = store.stats();
row('data file per page, freshly loaded', loaded.bytesOnDisk / loaded.pages, 'bytes', 'page size', PS, '<= 1.1');

/**
 * Applies `stream`, flushing every `perFlush` commits (0: flush() after every commit, not
 * awaited, so the grouping is whatever the disk allows); then the same bytes raw with the
 * same number of fsyncs: the page images each flush wrote, and the commit records.
 */
async function measure(label, stream, perFlush) {
  const before = store.stats();
  const imageBytes = [];
  let written = before.pagesWritten;
  const t0 = now();
  if (perFlush > 0) {
    for (let i = 0; i < stream.length; i++) {
      const c = stream[i];
      store.apply(c.time, c.pages, c.changes);
      if ((i + 1) % perFlush === 0 || i === stream.length - 1) {
        await store.flush();
        const w = store.stats().pagesWritten;
        imageBytes.push((w - written) * PS);
        written = w;
      }
    }
  } else {
    // As the page server runs: apply each commit as it arrives, ask for a flush each time.
    let last;
    for (let i = 0; i < stream.length; i++) {
      const c = stream[i];
      store.apply(c.time, c.pages, c.changes);
      last = store.flush();
      if (i % 64 === 63) await new Promise((r) => setImmediate(r));
    }
    await last;
  }
  const dt = now() - t0;
  const after = store.stats();
  const fsyncs = after.fsyncs - before.fsyncs;
  const images = (after.pagesWritten - before.pagesWritten) * PS;
  // Flushes not awaited one by one: their sizes are not seen from outside, so spread evenly.
  while (imageBytes.length < fsyncs) imageBytes.push(Math.round(images / fsyncs));
  const recordBytes = stream.reduce((s, c) => s + 28 + c.pages.length * 4 + c.changes.length, 0);
  const rawImages = rawWrite(`${label}-pages`, imageBytes);
  const rawRecords = rawWrite(`${label}-records`, Array.from({ length: fsyncs }, () => Math.round(recordBytes / fsyncs)));
  row(`${label}: page images to disk`, mbs(images, dt), 'MiB/s', 'raw write of the same bytes, same fsyncs', mbs(images, rawImages), '>= 0.8');
  row(`${label}: commits/s`, stream.length / (dt / 1e9), 'commits/s', 'raw write of the commit records, same fsyncs', stream.length / (rawRecords / 1e9));
  row(`${label}: commits per fsync`, stream.length / fsyncs, 'commits', `${fsyncs} fsyncs, ${(images / PS / fsyncs).toFixed(0)} pages each`, null);
}

/** The next `n` commits of the run, after the ones made so far. */
function nextStream(n, pagesPer, words, among = PAGES) {
  const st = makeStream(n, pagesPer, words, versions, time, among);
  time = st.at(-1).time;
  return st;
}

// Small: one-page commits, a two-word diff each, all over the region.
let s = nextStream(20000, 1, 2);
await measure('small commits (1 page, 8-byte diff), 100 per fsync', s, 100);
s = nextStream(20000, 1, 2);
await measure('small commits, flush requested after each', s, 0);
// Bank-like: two-page commits within 256 hot pages, flushed as the disk allows.
s = nextStream(20000, 2, 2, 256);
await measure('hot commits (2 of 256 pages, 8-byte diffs), flush requested after each', s, 0);
// Large: 32 whole pages a commit.
s = nextStream(1000, 32, PS / 4);
await measure('large commits (32 whole pages), 2 per fsync', s, 2);
// The page server's path (feed.ts): each commit applied in memory and appended to the commit
// log, one fdatasync per group, which is what an acknowledgement waits for; LMDB takes the log
// in checkpoints. Against a raw write of the log's bytes with the same number of fsyncs (into
// a new file, as the raw rows above). `over`: the log writes over a file a checkpoint retired,
// as a page server does after its first checkpoints (wal.ts); else into a new file.
async function measureLog(label, n, make, perSync, over) {
  const { log } = CommitLog.open(store.dir, store);
  const checkpoint = async () => {
    const done = log.rotate();
    await store.flush();
    await done();
  };
  const run = async (stream) => {
    for (let i = 0; i < stream.length; i++) {
      const c = stream[i];
      store.apply(c.time, c.pages, c.changes);
      log.appendCommit(c.time, c.pages, c.changes);
      if ((i + 1) % perSync === 0 || i === stream.length - 1) await log.sync();
    }
  };
  // Untimed first, as every loop here; it leaves a retired file of the size the timed run needs.
  await run(make(n));
  await checkpoint();
  if (!over) for (const f of fs.readdirSync(store.dir)) if (f.startsWith('spare-')) fs.rmSync(path.join(store.dir, f));
  await checkpoint();
  const stream = make(n);
  const bytes0 = log.bytes;
  const syncs0 = log.syncs;
  const t0 = now();
  await run(stream);
  const dt = now() - t0;
  const logBytes = log.bytes - bytes0;
  const syncs = log.syncs - syncs0;
  const t1 = now();
  await checkpoint();
  const cp = now() - t1;
  log.close();
  const raw = rawWrite(`${label}-log`, Array.from({ length: syncs }, () => Math.round(logBytes / syncs)));
  row(`${label}: log bytes to disk (acknowledgement path)`, mbs(logBytes, dt), 'MiB/s', 'raw write of the same bytes, same fsyncs', mbs(logBytes, raw), '>= 0.8');
  row(`${label}: commits/s with LMDB's checkpoint included`, stream.length / ((dt + cp) / 1e9), 'commits/s', 'raw write of the same bytes, same fsyncs', stream.length / (raw / 1e9));
}
const small = (n) => nextStream(n, 1, 2);
const hot = (n) => nextStream(n, 2, 2, 256);
await measureLog('log: small commits (1 page, 8-byte diff), 100 per fsync, into a new file', 20000, small, 100, false);
await measureLog('log: small commits (1 page, 8-byte diff), 100 per fsync, over a retired file', 20000, small, 100, true);
await measureLog('log: hot commits (2 of 256 pages), 10 per fsync, into a new file', 20000, hot, 10, false);
await measureLog('log: hot commits (2 of 256 pages), 10 per fsync, over a retired file', 20000, hot, 10, true);

// LMDB copies on write and keeps freed pages for reuse: the file's high-water mark follows the largest transaction.
const st = store.stats();
row('data file per page after the runs (free pages included)', st.bytesOnDisk / st.pages, 'bytes', 'page size', PS);
await store.close();

// A 256 MiB heap on disk: reopening it to the first page read (the store's part of a cluster
// restart), and a snapshot of it written and restored, against a raw write of the same bytes.
{
  const HEAP = 65536;
  const big = await PageStore.open(path.join(work, 'heap'), { pageSize: PS, regionSize: HEAP * PS });
  for (let i = 0; i < HEAP; i += 4096) {
    const batch = [];
    for (let p = i; p < i + 4096; p++) batch.push({ page: p, version: 1, data: new Uint8Array(PS).fill(p & 0xff) });
    await big.load(batch, i + 4096 >= HEAP ? 1 : 0);
  }
  await big.close();
  const t0 = now();
  const again = await PageStore.open(path.join(work, 'heap'));
  again.readPage(HEAP >> 1);
  row('open a 256 MiB store to its first page read', (now() - t0) / 1e6, 'ms', 'sub-second restart (the whole cluster)', 1000, '<= 1000 ms');
  const file = path.join(work, 'heap.snap');
  const t1 = now();
  const info = await writeSnapshot(again, file);
  const snapNs = now() - t1;
  await again.close();
  const rawNs = rawWrite('snapshot', [info.bytes]);
  row('snapshot of a 256 MiB store', mbs(info.bytes, snapNs), 'MiB/s', 'raw write of the same bytes, one fsync', mbs(info.bytes, rawNs));
  const t2 = now();
  await restoreSnapshot(file, path.join(work, 'restored'));
  row('restore of that snapshot (checked whole, then loaded)', mbs(info.bytes, now() - t2), 'MiB/s', 'raw write of the same bytes, one fsync', mbs(info.bytes, rawNs));
}
fs.rmSync(work, { recursive: true, force: true });
console.log(JSON.stringify({ suite: 'pagestore', rows }));
