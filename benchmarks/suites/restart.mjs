// Restart of a whole cluster from its page server's store (Rainbow promises sub-second
// restart): a store holding a 256 MiB heap (every page written), then the time from starting
// the page server process on it to a node's first read of the heap, joined through it.
// Baseline: reading the store's data file once sequentially (the bytes the page server must
// bring in), measured in the same run. Prints one JSON line (see run.mjs).
import { createRequire } from 'node:module';
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);

const REGION = 256 << 20;
const PS = 4096;
const SECRET = 'bench';

if (process.argv[2] === 'pageserver') {
  // argv: pageserver <dir>; says its address, closes on request.
  const { startPageServer } = require('../..');
  const ps = await startPageServer({ dir: process.argv[3], secret: SECRET });
  process.on('message', async () => {
    await ps.close();
    process.exit(0);
  });
  process.send({ address: ps.address });
} else {
  const { PageStore } = require('../../dist/pageserver/store.js');
  const { createNode } = require('../..');
  const work = fs.mkdtempSync(path.join(process.env.DSM_BENCH_DIR ?? os.tmpdir(), 'dsm-restart-bench-'));
  const dir = path.join(work, 'store');
  try {
    // A full 256 MiB heap: every page written, each page's first word its number.
    const store = await PageStore.open(dir, { pageSize: PS, regionSize: REGION });
    const pages = REGION / PS;
    for (let first = 0; first < pages; first += 4096) {
      const batch = [];
      for (let p = first; p < Math.min(pages, first + 4096); p++) {
        const data = new Uint8Array(PS);
        new DataView(data.buffer).setUint32(0, p, true);
        batch.push({ page: p, version: 1 + p, data });
      }
      await store.load(batch, first + 4096 >= pages ? pages + 1 : undefined);
    }
    await store.close();
    const bytes = fs.statSync(path.join(dir, 'data.mdb')).size;

    const t0 = performance.now();
    const fd = fs.openSync(path.join(dir, 'data.mdb'), 'r');
    const buf = Buffer.alloc(1 << 20);
    while (fs.readSync(fd, buf) > 0);
    fs.closeSync(fd);
    const readMs = performance.now() - t0;

    const t1 = performance.now();
    const child = fork(fileURLToPath(import.meta.url), ['pageserver', dir]);
    const { address } = await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (c) => reject(new Error(`the page server exited (${c})`)));
    });
    const tReady = performance.now();
    const dsm = await createNode({ listen: '127.0.0.1:0', peers: [address], secret: SECRET, regionSize: REGION });
    const probe = 12345;
    const tJoined = performance.now();
    const got = dsm.u32[(probe * PS) / 4];
    const restartMs = performance.now() - t1;
    console.error(`restart: page server ready after ${(tReady - t1).toFixed(0)} ms, node joined after ${(tJoined - tReady).toFixed(0)} ms more, first read ${(performance.now() - tJoined).toFixed(1)} ms`);
    if (got !== probe) throw new Error(`page ${probe} read ${got} after the restart`);
    await dsm.close();
    const exited = new Promise((r) => child.once('exit', r));
    child.send('close');
    await exited;
    const rows = [
      {
        name: 'restart: page server start on a 256 MiB store to a node\'s first read',
        value: restartMs,
        unit: 'ms',
        baseline: `one sequential read of the store file (${(bytes / 2 ** 20).toFixed(0)} MiB)`,
        baselineValue: readMs,
        ratio: restartMs / readMs,
        target: '<= 1000 ms',
      },
    ];
    console.log(JSON.stringify({ suite: 'restart', rows }));
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
