// The store knows which commit log file it continues in and how far it was synced (its log
// mark, written with each checkpoint): a log file deleted, emptied, cut short below that
// position or taken from another store is refused (ERR_DSM_STORE) instead of the store
// starting at its last checkpoint without the acknowledged commits only the log held. And
// every state a crash during a checkpoint, or during the open that replays the log, can leave
// still opens, with every synced commit.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { open } from 'lmdb';
import { PageStore } from '../../lib/pageserver/store';
import { CommitLog, LOG_FILE_BYTES } from '../../lib/pageserver/wal';
import { decodeMark, encodeMark } from '../../lib/pageserver/log_mark';
import { LAYOUT_VERSION } from '../../lib/pageserver/store_dir';

import { groupStarts, logFixture } from './log_fixture';
import { geometry, PS, wholePage } from './whole_page';

describe('the store’s log mark', () => {
  afterEach(() => vi.restoreAllMocks());
  const { newRoot, openStore, image, commit } = logFixture('dsm-logmark-');
  /** The page server's checkpoint: the next file, the store flushed (with the mark), the older files retired. */
  const checkpoint = async (store: PageStore, log: CommitLog) => {
    const done = log.rotate();
    await store.flush();
    await done();
  };
  /** Opens a store and its log as the page server does (replay, then a checkpoint); its applied time. */
  const start = async (dir: string, step?: number) => {
    const store = await openStore(dir);
    const { log } = CommitLog.open(store.dir, store, step);
    await checkpoint(store, log);
    const t = store.appliedTime;
    if (t > 0) expect(store.readPage(5)!.data!.every((b) => b === t % 256)).toBe(true);
    log.close();
    await store.close();
    return t;
  };
  const logFiles = (dir: string) =>
    fs
      .readdirSync(dir)
      .filter((f) => /^log-\d+\.wal$/.test(f))
      .sort((a, b) => parseInt(a.slice(4)) - parseInt(b.slice(4)));
  /** A store opened as a page server does, 1..10 checkpointed, then 11..20 synced. */
  const tenCheckpointed = async (dir: string) => {
    const store = await openStore(dir);
    const { log } = CommitLog.open(store.dir, store);
    await checkpoint(store, log);
    commit(store, log, 1, 10);
    await log.sync();
    await checkpoint(store, log);
    commit(store, log, 11, 20);
    await log.sync();
    return { store, log };
  };
  /** 1..10 checkpointed, then 11..30 synced in two groups and never checkpointed; the crash image. */
  const crashed = async (root: string, name: string) => {
    const dir = path.join(root, `${name}-live`);
    const { store, log } = await tenCheckpointed(dir);
    commit(store, log, 21, 30);
    await log.sync();
    const to = image(dir, path.join(root, name));
    log.close();
    return to;
  };
  const refused = async (dir: string, message: RegExp) => {
    const store = await openStore(dir);
    const at = store.appliedTime;
    expect(() => CommitLog.open(store.dir, store)).toThrow(expect.objectContaining({ code: 'ERR_DSM_STORE', message: expect.stringMatching(message) }));
    // Nothing of the log reached the store before it was refused.
    expect(store.appliedTime).toBe(at);
    expect(store.appliedTime).toBe(10);
  };

  it('refuses a log deleted, emptied, cut short below the checkpointed position, or from another store', async () => {
    const root = newRoot();
    const whole = await crashed(root, 'whole');
    expect(await start(whole)).toBe(30);

    const deleted = await crashed(root, 'deleted');
    for (const f of logFiles(deleted)) fs.rmSync(path.join(deleted, f));
    await refused(deleted, /log-\d+\.wal, which the store continues in, is missing.*dsm restore --from FILE --dir DIR/);

    const emptied = await crashed(root, 'emptied');
    for (const f of logFiles(emptied)) fs.truncateSync(path.join(emptied, f), 0);
    await refused(emptied, /is empty or damaged at its start.*dsm restore --from FILE --dir DIR/);

    // Cut below what was synced when the checkpoint's flush began (a flush after the sync of 21..30).
    const cut = await crashed(root, 'cut');
    {
      const store = await openStore(cut);
      const { log } = CommitLog.open(store.dir, store);
      await checkpoint(store, log);
      commit(store, log, 31, 40);
      await log.sync();
      await store.flush(); // the mark now says 10 commits of this file were synced
      const end = log.bytes;
      log.close();
      await store.close();
      const [f] = logFiles(cut);
      // Into the middle of that synced group: before the mark, the cut was a "torn last record".
      fs.truncateSync(path.join(cut, f), end - 3 * PS);
      const again = await openStore(cut);
      expect(() => CommitLog.open(again.dir, again)).toThrow(expect.objectContaining({ code: 'ERR_DSM_STORE', message: expect.stringMatching(/is cut short: its records end at byte \d+, where the store recorded \d+ bytes synced/) }));
    }

    // A log file of another store, copied in under the name this store's has.
    const foreign = await crashed(root, 'foreign');
    const other = await crashed(root, 'other');
    for (const f of logFiles(foreign)) fs.rmSync(path.join(foreign, f));
    for (const f of logFiles(other)) fs.copyFileSync(path.join(other, f), path.join(foreign, f));
    await refused(foreign, /is not this store's: its id differs/);
  });

  it('refuses the last file cut at a record boundary past the mark, one step long or grown by steps, and one grown and cut back to whole steps', async () => {
    const root = newRoot();
    // 11..20 and 21..30 synced after the checkpoint of 1..10: cut where 21..30 starts, as a
    // crash right after the sync of 11..20 would have left the records.
    const boundary = await crashed(root, 'boundary');
    const last = path.join(boundary, logFiles(boundary).at(-1)!);
    expect(fs.statSync(last).size).toBe(LOG_FILE_BYTES);
    const [, second] = groupStarts(last);
    fs.truncateSync(last, second);
    await refused(boundary, new RegExp(`${path.basename(last)} is cut short: it is ${second} bytes, where the log gives its files a whole number of ${LOG_FILE_BYTES}-byte steps.*dsm restore --from FILE --dir DIR`));

    // A file grown by two steps (each sync of 10 whole pages, 41 KiB, is more than one).
    const STEP = 32 << 10;
    const live = path.join(root, 'grown-live');
    const store = await openStore(live);
    const { log } = CommitLog.open(store.dir, store, STEP);
    await checkpoint(store, log);
    commit(store, log, 1, 10);
    await log.sync();
    commit(store, log, 11, 20);
    await log.sync();
    const grown = image(live, path.join(root, 'grown'));
    const whole = image(live, path.join(root, 'grown-whole'));
    const steps = [1, 2].map((n) => image(live, path.join(root, `grown-to-${n}-steps`)));
    log.close();
    const file = path.join(grown, logFiles(grown).at(-1)!);
    expect(fs.statSync(file).size).toBe(3 * STEP);
    const starts = groupStarts(file);
    expect(starts).toHaveLength(2);
    fs.truncateSync(file, starts[1]);
    const again = await openStore(grown);
    expect(() => CommitLog.open(again.dir, again, STEP)).toThrow(expect.objectContaining({ code: 'ERR_DSM_STORE', message: expect.stringMatching(/is cut short: it is \d+ bytes/) }));
    expect(again.appliedTime).toBe(0);
    // Cut back to a whole number of steps, as a crash before a growth leaves a file's size:
    // the group record that grew it past the cut lies below the cut and names the larger size.
    for (const [i, dir] of steps.entries()) {
      const f = path.join(dir, logFiles(dir).at(-1)!);
      fs.truncateSync(f, (i + 1) * STEP);
      const s = await openStore(dir);
      expect(() => CommitLog.open(s.dir, s, STEP)).toThrow(
        expect.objectContaining({ code: 'ERR_DSM_STORE', message: expect.stringMatching(new RegExp(`is cut short: it is ${(i + 1) * STEP} bytes, where its records say it was ${(i + 2) * STEP} bytes long`)) }),
      );
      expect(s.appliedTime).toBe(0);
    }
    expect(await start(whole, STEP)).toBe(20);
  });

  it('refuses a later file of the chain deleted, emptied or foreign while the checkpoint that would name it had not been written', async () => {
    const root = newRoot();
    /** 1..10 checkpointed, then a rotation (11..20 synced in the older file before it, 21..30 after it) whose flush never ran. */
    const midCheckpoint = async (name: string) => {
      const dir = path.join(root, `${name}-live`);
      const { store, log } = await tenCheckpointed(dir);
      log.rotate();
      commit(store, log, 21, 30);
      await log.sync();
      const to = image(dir, path.join(root, name));
      log.close();
      return to;
    };
    expect(await start(await midCheckpoint('whole'))).toBe(30);
    const newest = (dir: string) => path.join(dir, logFiles(dir).at(-1)!);
    const deleted = await midCheckpoint('deleted');
    expect(logFiles(deleted)).toHaveLength(2);
    fs.rmSync(newest(deleted));
    await refused(deleted, /went on in a next file, which is missing/);
    const emptied = await midCheckpoint('emptied');
    fs.truncateSync(newest(emptied), 0);
    await refused(emptied, /is empty or damaged at its start, where .* went on in it/);
    const foreign = await midCheckpoint('foreign');
    const other = await midCheckpoint('other');
    fs.copyFileSync(newest(other), newest(foreign));
    await refused(foreign, /is not the one .* went on in/);
  });

  it('opens from every state a crash during a checkpoint or an open can leave, with every synced commit', async () => {
    const root = newRoot();
    let n = 0;
    /** Runs `step` with an image of the directory taken before every change it makes to the files. */
    const imagesDuring = async (dir: string, step: () => Promise<void>) => {
      const images: string[] = [];
      let taking = false;
      // The image's own writes (through the same spied functions) are not changes to the store.
      const take = () => {
        if (taking) return;
        taking = true;
        try {
          images.push(image(dir, path.join(root, `crash-${n++}`)));
        } finally {
          taking = false;
        }
      };
      for (const name of ['openSync', 'writeSync', 'fdatasyncSync', 'fsyncSync', 'renameSync', 'rmSync', 'ftruncateSync', 'closeSync'] as const) {
        const real = fs[name] as (...a: unknown[]) => unknown;
        vi.spyOn(fs, name).mockImplementation(((...a: unknown[]) => {
          // Only changes to the store's directory (its own file reads, and the images' copies, are not).
          if (name !== 'openSync' || a[1] === 'w' || a[1] === 'r+') if (typeof a[0] !== 'string' || a[0].startsWith(dir)) take();
          return real.apply(fs, a);
        }) as never);
      }
      try {
        await step();
      } finally {
        vi.restoreAllMocks();
      }
      take();
      return images;
    };
    // Steps smaller than a sync of 10 whole-page commits (41 KiB): each sync grows its file.
    const STEP = 32 << 10;
    const dir = path.join(root, 'live');
    const store = await openStore(dir);
    const { log } = CommitLog.open(store.dir, store, STEP);
    await checkpoint(store, log);
    commit(store, log, 1, 10);
    await log.sync();
    // Two checkpoints, so the second writes a retired file over.
    const images = await imagesDuring(dir, () => checkpoint(store, log));
    commit(store, log, 11, 20);
    await log.sync();
    images.push(...(await imagesDuring(dir, () => checkpoint(store, log))));
    // A sync that grows its file (a spare of two steps, written over by 82 KiB).
    const growing = await imagesDuring(dir, async () => {
      commit(store, log, 21, 40);
      await log.sync();
    });
    expect(growing.length).toBe(5);
    log.close();
    await store.close();
    expect(images.length).toBeGreaterThan(10);
    for (const img of [...images, ...growing]) {
      // Every image holds at least the commits synced before its checkpoint (or sync) began.
      const t = await start(img, STEP);
      expect(t, img).toBeGreaterThanOrEqual(images.includes(img) ? 10 : 20);
    }
    // An open of a crashed store is a replay and a checkpoint: a crash at any point of it opens too.
    const opening = image(dir, path.join(root, 'opening'));
    fs.rmSync(path.join(opening, 'owner.pid'), { force: true });
    const during = await imagesDuring(opening, async () => {
      expect(await start(opening, STEP)).toBe(40);
    });
    expect(during.length).toBeGreaterThan(5);
    for (const img of during) expect(await start(img, STEP), img).toBe(40);
    // And twice: a crash during the open of a store a crash left mid-open.
    const twice = await imagesDuring(during[Math.floor(during.length / 2)], async () => {
      expect(await start(during[Math.floor(during.length / 2)], STEP)).toBe(40);
    });
    for (const img of twice) expect(await start(img, STEP), img).toBe(40);
  });

  it.each([1, 2, 3])('upgrades a store of layout %i: its log (no header, one without a size step, or group records without the file size) replays as before, and its first checkpoint writes the mark, the current layout and a file with steps', async (version) => {
    const root = newRoot();
    const dir = path.join(root, 'store');
    // Closed here, not after the test: the layout is rewritten below.
    await (await PageStore.open(dir, geometry)).close();
    // Layout 1: the same layout record with version 1, no mark; a log file without a header.
    // Layout 2: a mark, and a log file whose header has its id alone.
    // Layout 3: a mark, a header with the id and the step, a whole step long; group records
    // without the file's size.
    const id = Buffer.alloc(16, 7);
    const env = open({ path: dir, compression: false, maxDbs: 8 });
    const meta = env.openDB({ name: 'meta', encoding: 'binary', compression: false });
    const layout = Buffer.from(meta.getBinary('layout')!);
    layout.writeUInt32LE(version, 8);
    await meta.put('layout', layout);
    if (version >= 2) await meta.put('log', encodeMark(1, id, version === 2 ? 8 + 17 : 8 + 25));
    await env.close();
    const seed = zlib.crc32(Buffer.from([1, 0, 0, 0, 0, 0, 0, 0])); // every record's CRC starts from its file's u64 number
    const rec = (payload: Buffer) => {
      const h = Buffer.alloc(8);
      h.writeUInt32LE(payload.length, 0);
      h.writeUInt32LE(zlib.crc32(payload, seed), 4);
      return Buffer.concat([h, payload]);
    };
    const commits: Buffer[] = [];
    for (let t = 1; t <= 3; t++) {
      const changes = wholePage(t === 1 ? 0 : t - 1, t);
      const p = Buffer.alloc(17 + changes.length);
      p[0] = 1;
      p.writeUInt32LE(t, 1);
      p.writeUInt32LE(1, 9);
      p.writeUInt32LE(5, 13);
      p.set(changes, 17);
      commits.push(rec(p));
    }
    const group = Buffer.alloc(5);
    group[0] = 5;
    group.writeUInt32LE(13 + commits.reduce((a, c) => a + c.length, 0), 1);
    const step = Buffer.alloc(8);
    step.writeUInt32LE(LOG_FILE_BYTES, 0);
    const header = version === 1 ? [] : [rec(Buffer.concat([Buffer.from([6]), id, ...(version === 3 ? [step] : [])]))];
    fs.writeFileSync(path.join(dir, 'log-1.wal'), Buffer.concat([...header, rec(group), ...commits]));
    if (version === 3) fs.truncateSync(path.join(dir, 'log-1.wal'), LOG_FILE_BYTES);
    expect(await start(dir)).toBe(3);
    const env2 = open({ path: dir, compression: false, maxDbs: 8 });
    const meta2 = env2.openDB({ name: 'meta', encoding: 'binary', compression: false });
    expect(meta2.getBinary('layout')!.readUInt32LE(8)).toBe(LAYOUT_VERSION);
    const mark = decodeMark(dir, meta2.getBinary('log'))!;
    await env2.close();
    // The file the mark names has a size step: a whole one.
    expect(mark.seq).toBeGreaterThan(1);
    expect(fs.statSync(path.join(dir, `log-${mark.seq}.wal`)).size).toBe(LOG_FILE_BYTES);
    // From now on its log is checked: deleted, the store is refused.
    for (const f of logFiles(dir)) fs.rmSync(path.join(dir, f));
    const s = await openStore(dir);
    expect(() => CommitLog.open(s.dir, s)).toThrow(expect.objectContaining({ code: 'ERR_DSM_STORE' }));
  });
});
