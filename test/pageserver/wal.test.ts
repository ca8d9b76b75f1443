// The page server's commit log: changes logged and synced are replayed over the store's
// image when it opens (the store took none of them in), a torn last record (a crash during
// an append, never acknowledged) ends the replay there, files written over hold nothing of
// their earlier use that replays, and a file the log went on from must be complete.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { PageStore } from '../../lib/pageserver/store';
import { CommitLog } from '../../lib/pageserver/wal';

import { logFixture } from './log_fixture';
import { PS, wholePage } from './whole_page';

describe('page server commit log', () => {
  const { newRoot, openStore, image: crashImage, commit } = logFixture('dsm-wal-');
  /** A new store in a directory of its own, and its log. */
  const storeAndLog = async () => {
    const root = newRoot();
    const store = await openStore(path.join(root, 'store'));
    return { root, store, log: CommitLog.open(store.dir, store).log };
  };
  /** A checkpoint as the page server makes it: the next file, the store flushed (with the log's mark), the older files retired. */
  const checkpoint = async (store: PageStore, log: CommitLog) => {
    const done = log.rotate();
    await store.flush();
    await done();
  };
  const logFiles = (dir: string) => fs.readdirSync(dir).filter((f) => /^log-\d+\.wal$/.test(f));

  it('replays synced changes over the store, and stops at a torn last record', async () => {
    const { root, store, log } = await storeAndLog();
    await checkpoint(store, log);
    commit(store, log, 1, 3);
    await log.sync();
    const end = log.bytes;
    crashImage(store.dir, path.join(root, 'crashed'));
    log.close();
    // A crash mid-append: half a record after the synced ones (inside the file's step).
    const file = logFiles(path.join(root, 'crashed'))[0];
    const fd = fs.openSync(path.join(root, 'crashed', file), 'r+');
    fs.writeSync(fd, Buffer.from([200, 0, 0, 0, 1, 2, 3]), 0, 7, end);
    fs.closeSync(fd);
    const again = await openStore(path.join(root, 'crashed'));
    expect(again.appliedTime).toBeLessThan(3);
    const opened = CommitLog.open(again.dir, again);
    expect(opened.replay.tornTail).toBe(true);
    expect(again.appliedTime).toBe(3);
    expect(again.readPage(5)).toMatchObject({ version: 3 });
    expect(again.readPage(5)!.data!.every((b) => b === 3)).toBe(true);
    opened.log.close();
  });

  it('refuses a log damaged before records synced after it; a damaged last write is a torn one', async () => {
    const { root, store, log } = await storeAndLog();
    await checkpoint(store, log);
    // Three writes, each synced: the first two were acknowledged once the next was written.
    for (const t of [1, 4, 7]) {
      commit(store, log, t, t + 2);
      await log.sync();
    }
    crashImage(store.dir, path.join(root, 'image'));
    log.close();
    const file = logFiles(path.join(root, 'image'))[0];
    // Each write: its group record, then three records of a whole-page commit.
    const record = 8 + 1 + 8 + 4 + 4 + 12 + PS;
    const group = 13 + 3 * record;
    const damaged = async (name: string, at: number) => {
      const dir = path.join(root, name);
      crashImage(path.join(root, 'image'), dir);
      const b = fs.readFileSync(path.join(dir, file));
      b[at] ^= 0x40;
      fs.writeFileSync(path.join(dir, file), b);
      return openStore(dir);
    };
    // A byte of commit 5 (the second write): commits 6 to 9 were acknowledged after it.
    // The replay used to stop there and open the store at time 4, calling it a torn tail.
    const mid = await damaged('mid', group + 13 + record + 100);
    expect(() => CommitLog.open(mid.dir, mid)).toThrow(expect.objectContaining({ code: 'ERR_DSM_STORE', message: expect.stringMatching(/damaged at byte .*Restore the store from a snapshot/) }));
    // A byte of commit 7, in the last write (a crash before its sync): never acknowledged.
    const last = await damaged('last', 2 * group + 13 + 100);
    const opened = CommitLog.open(last.dir, last);
    expect(opened.replay.tornTail).toBe(true);
    expect(last.appliedTime).toBe(6);
    opened.log.close();
  });

  it('writes retired files over, and nothing of their earlier records replays', async () => {
    const { root, store, log } = await storeAndLog();
    // A long first file, retired by a checkpoint.
    commit(store, log, 1, 40);
    await log.sync();
    const done = log.rotate();
    await store.flush();
    await done();
    const spares = fs.readdirSync(store.dir).filter((f) => f.startsWith('spare-'));
    expect(spares).toHaveLength(1);
    const spareSize = fs.statSync(path.join(store.dir, spares[0])).size;
    expect(spareSize).toBeGreaterThan(40 * PS);
    // The next file is that one, written over from its start by fewer records.
    await checkpoint(store, log);
    expect(fs.readdirSync(store.dir).filter((f) => f.startsWith('spare-'))).toHaveLength(1);
    commit(store, log, 41, 43);
    await log.sync();
    const current = logFiles(store.dir);
    expect(current).toHaveLength(1);
    expect(fs.statSync(path.join(store.dir, current[0])).size).toBe(spareSize);
    crashImage(store.dir, path.join(root, 'crashed'));
    const again = await openStore(path.join(root, 'crashed'));
    expect(again.appliedTime).toBe(40);
    const opened = CommitLog.open(again.dir, again);
    // Its earlier records (times 4..40 after the new ones end) are stale: they end the replay.
    expect(opened.replay).toMatchObject({ records: 3, tornTail: true });
    expect(again.appliedTime).toBe(43);
    expect(again.readPage(5)!.data!.every((b) => b === 43)).toBe(true);
    opened.log.close();
    log.close();
  });

  it('refuses a log whose earlier file lacks its end, and still replays the first format', async () => {
    const { root, store, log } = await storeAndLog();
    commit(store, log, 1, 2);
    await log.sync();
    const endAt = log.bytes;
    // A checkpoint that never finished: the next file started, the older one not retired.
    log.rotate();
    commit(store, log, 3, 3);
    await log.sync();
    crashImage(store.dir, path.join(root, 'whole'));
    crashImage(store.dir, path.join(root, 'cut'));
    log.close();
    const [first] = logFiles(path.join(root, 'cut')).sort((a, b) => parseInt(a.slice(4)) - parseInt(b.slice(4)));
    // Its END record (linked: 25 bytes), gone as the file's step was before it was written.
    const fd = fs.openSync(path.join(root, 'cut', first), 'r+');
    fs.writeSync(fd, Buffer.alloc(25), 0, 25, endAt);
    fs.closeSync(fd);
    const whole = await openStore(path.join(root, 'whole'));
    const opened = CommitLog.open(whole.dir, whole);
    expect(opened.replay).toMatchObject({ records: 3, files: 2 });
    expect(whole.appliedTime).toBe(3);
    opened.log.close();
    const cut = await openStore(path.join(root, 'cut'));
    expect(() => CommitLog.open(cut.dir, cut)).toThrow(expect.objectContaining({ code: 'ERR_DSM_STORE', message: expect.stringContaining('damaged before its end') }));

    // The first format: wal-<n>.log, CRCs of the payload alone, no END.
    const old = path.join(root, 'old');
    fs.mkdirSync(old);
    const plain = await openStore(path.join(old, 'store'));
    const records: Buffer[] = [];
    for (let t = 1; t <= 2; t++) {
      const changes = wholePage(t === 1 ? 0 : t - 1, t);
      const payload = Buffer.alloc(1 + 8 + 4 + 4 + changes.length);
      payload[0] = 1;
      payload.writeUInt32LE(t, 1);
      payload.writeUInt32LE(1, 9);
      payload.writeUInt32LE(5, 13);
      payload.set(changes, 17);
      const h = Buffer.alloc(8);
      h.writeUInt32LE(payload.length, 0);
      h.writeUInt32LE(zlib.crc32(payload), 4);
      records.push(h, payload);
    }
    fs.writeFileSync(path.join(plain.dir, 'wal-1.log'), Buffer.concat(records));
    const o = CommitLog.open(plain.dir, plain);
    expect(o.replay.records).toBe(2);
    expect(plain.appliedTime).toBe(2);
    const d = o.log.rotate();
    await plain.flush();
    await d();
    expect(fs.existsSync(path.join(plain.dir, 'wal-1.log'))).toBe(false);
    o.log.close();
  });
});
