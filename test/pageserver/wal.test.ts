// The page server's commit log: changes logged and synced are replayed over the store's
// image when it opens (the store took none of them in), and a torn last record (a crash
// during an append, never acknowledged) ends the replay there.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PageStore } from '../../lib/pageserver/store';
import { CommitLog } from '../../lib/pageserver/wal';

const PS = 4096;
const geometry = { pageSize: PS, regionSize: 64 * PS };

/** One whole-page change replacing `replaces`, the page filled with `fill`. */
function wholePage(replaces: number, fill: number): Uint8Array {
  const c = new Uint8Array(12 + PS);
  const dv = new DataView(c.buffer);
  dv.setUint32(0, replaces, true);
  dv.setUint32(8, PS, true);
  c.fill(fill, 12);
  return c;
}

describe('page server commit log', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('replays synced changes over the store, and stops at a torn last record', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsm-wal-'));
    dirs.push(root);
    const dir = path.join(root, 'store');
    let store = await PageStore.open(dir, geometry);
    let { log } = CommitLog.open(store.dir, store);
    await log.rotate()();
    for (let t = 1; t <= 3; t++) {
      const changes = wholePage(t === 1 ? 0 : t - 1, t);
      store.apply(t, Uint32Array.of(5), changes);
      log.appendCommit(t, Uint32Array.of(5), changes);
    }
    await log.sync();
    log.close();
    // A crash mid-append: half a record after the synced ones.
    const file = fs.readdirSync(store.dir).find((f) => f.startsWith('wal-'))!;
    fs.appendFileSync(path.join(store.dir, file), Buffer.from([200, 0, 0, 0, 1, 2, 3]));
    // The store itself never flushed: a copy of the directory now is what a crash leaves.
    const crashed = path.join(root, 'crashed');
    fs.mkdirSync(crashed);
    for (const f of fs.readdirSync(store.dir)) if (f !== 'owner.pid') fs.copyFileSync(path.join(store.dir, f), path.join(crashed, f));
    await store.close();
    store = await PageStore.open(crashed, geometry);
    expect(store.appliedTime).toBeLessThan(3);
    const opened = CommitLog.open(store.dir, store);
    log = opened.log;
    expect(opened.replay.tornTail).toBe(true);
    expect(store.appliedTime).toBe(3);
    expect(store.readPage(5)).toMatchObject({ version: 3 });
    expect(store.readPage(5)!.data!.every((b) => b === 3)).toBe(true);
    log.close();
    await store.close();
  });
});
