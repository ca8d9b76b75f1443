// The page store on a real LMDB directory: commits applied and flushed in group commits,
// pages it cannot make recorded as missing, bad input refused whole, and stores of another
// layout or geometry refused.
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open } from 'lmdb';
import { PageStore } from '../../lib/pageserver/store';
import { NOT_CARRIED } from '../../lib/service/changes';
import { commitStream } from './fixtures/commit_stream.mjs';

const PS = 4096;
const GEO = { pageSize: PS, regionSize: 64 * PS };
const dirs: string[] = [];
const stores: PageStore[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'dsm-store-'));
  dirs.push(d);
  return path.join(d, 'store');
}
// A child that opens the store named by its argument, prints its pid once it holds it, and
// stays until killed.
const holdStore = `require(${JSON.stringify(path.join(__dirname, '../../dist/pageserver/store.js'))}).PageStore.open(process.argv[1]).then(() => { console.log('open ' + process.pid); setInterval(() => {}, 1 << 30); })`;

// A child's expression that opens the store named by its argument.
const openStoreJs = `require(${JSON.stringify(path.join(__dirname, '../../dist/pageserver/store.js'))}).PageStore.open(process.argv[1])`;

/** Resolves with the pid a holdStore child prints. */
function opened(out: NodeJS.ReadableStream): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = '';
    out.on('data', (d) => {
      text += String(d);
      const m = /open (\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    out.on('end', () => reject(new Error(`the child ended before opening the store: ${text}`)));
  });
}

async function openStore(dir: string, geo = GEO): Promise<PageStore> {
  const s = await PageStore.open(dir, geo);
  stores.push(s);
  return s;
}
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close().catch(() => undefined);
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** One change: u64 version it replaces | u32 length | bytes. */
function change(replaces: number, body: Uint8Array | null): Uint8Array {
  const h = new Uint8Array(12 + (body?.length ?? 0));
  const dv = new DataView(h.buffer);
  dv.setUint32(0, replaces, true);
  dv.setUint32(8, body ? body.length : NOT_CARRIED, true);
  if (body) h.set(body, 12);
  return h;
}
const cat = (...p: Uint8Array[]) => Uint8Array.from(p.flatMap((x) => [...x]));
const run = (word: number, value: number) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setUint16(0, word, true);
  new DataView(b.buffer).setUint16(2, 1, true);
  new DataView(b.buffer).setUint32(4, value, true);
  return b;
};
const wholePage = (fill: number) => new Uint8Array(PS).fill(fill);
const equalImage = (s: PageStore, image: Map<number, { version: number; data: Uint8Array }>) => {
  for (let p = 0; p < 64; p++) {
    const got = s.readPage(p);
    const want = image.get(p);
    expect(got?.version, `page ${p}`).toBe(want?.version);
    if (want) expect(Buffer.from(got!.data!).equals(Buffer.from(want.data)), `page ${p}`).toBe(true);
  }
};

describe('page store', () => {
  it('applies a commit stream, group-commits it in one fsync, and reopens at the flushed image', async () => {
    const dir = tmpDir();
    const s = await openStore(dir);
    expect(s.appliedTime).toBe(0);
    expect(s.readPage(3)).toBeUndefined();
    const stream = commitStream(7);
    let c: ReturnType<typeof stream.next>['value'] = undefined!;
    for (let i = 0; i < 200; i++) {
      c = stream.next().value!;
      expect(s.apply(c.time, c.pages, c.changes)).toBe(true);
    }
    const image = new Map([...c.image].map(([p, v]) => [p, { ...v, data: v.data.slice() }]));
    expect(s.appliedTime).toBe(c.time);
    expect(s.durableTime).toBe(0);
    equalImage(s, image);
    expect(await s.flush()).toBe(c.time);
    const st = s.stats();
    expect(st.fsyncs).toBe(1);
    expect(st.commitsPerFsync).toBe(200);
    expect(st.pages).toBe(image.size);
    expect(st.durableTime).toBe(c.time);
    expect(st.bytesOnDisk).toBeGreaterThan(image.size * PS);
    // The split layout keeps the file near the pages' own size, not twice it.
    expect(st.bytesOnDisk).toBeLessThan(image.size * PS * 1.6 + 64 * 4096);
    // Nothing new: no transaction.
    expect(await s.flush()).toBe(c.time);
    expect(s.stats().fsyncs).toBe(1);
    // Replays of applied commits are ignored.
    expect(s.apply(c.time, c.pages, c.changes)).toBe(false);
    await s.close();
    expect(() => s.apply(c.time + 1, new Uint32Array(0))).toThrow(expect.objectContaining({ code: 'ERR_DSM_STORE' }));
    await expect(s.flush()).rejects.toMatchObject({ code: 'ERR_DSM_STORE' });
    const again = await openStore(dir);
    expect(again.appliedTime).toBe(c.time);
    expect(again.durableTime).toBe(c.time);
    equalImage(again, image);
    // And goes on from there: diffs apply against the pages read back from disk.
    for (let i = 0; i < 50; i++) {
      c = stream.next().value!;
      again.apply(c.time, c.pages, c.changes);
    }
    expect(again.missing()).toHaveLength(0);
    equalImage(again, c.image);
  });

  it('keeps pages larger than LMDB’s, split the same way', async () => {
    const dir = tmpDir();
    const geo = { pageSize: 8192, regionSize: 16 * 8192 };
    const s = await openStore(dir, geo);
    const page = new Uint8Array(8192).map((_, i) => i * 7);
    s.apply(3, Uint32Array.of(2), change(0, page));
    const d = new Uint8Array(8);
    new DataView(d.buffer).setUint16(0, 2047, true); // the last word: in the 24 bytes kept beside the body
    new DataView(d.buffer).setUint16(2, 1, true);
    new DataView(d.buffer).setUint32(4, 0xfeedf00d, true);
    s.apply(4, Uint32Array.of(2), change(3, d));
    await s.close();
    const again = await PageStore.open(dir);
    stores.push(again);
    expect(again.geometry).toEqual(geo);
    const got = again.readPage(2)!;
    expect(got.version).toBe(4);
    const want = page.slice();
    new DataView(want.buffer).setUint32(8188, 0xfeedf00d, true);
    expect(Buffer.from(got.data!).equals(Buffer.from(want))).toBe(true);
  });

  it('a flush covers every commit applied before it was asked for, while commits go on during flushes', async () => {
    const dir = tmpDir();
    const s = await openStore(dir);
    const stream = commitStream(11);
    const asked: Array<{ before: number; done: Promise<number> }> = [];
    let c = stream.next().value!;
    for (let round = 0; round < 60; round++) {
      for (let i = 0; i < 10; i++) s.apply((c = stream.next().value!).time, c.pages, c.changes);
      asked.push({ before: s.appliedTime, done: s.flush() });
      // Let the flush get under way (or not): the contract holds either way.
      await new Promise((r) => setImmediate(r));
    }
    let prev = 0;
    for (const { before, done } of asked) {
      const t = await done;
      expect(t).toBeGreaterThanOrEqual(before);
      expect(t).toBeGreaterThanOrEqual(prev);
      prev = t;
    }
    expect(prev).toBe(c.time);
    expect(s.durableTime).toBe(c.time);
    const st = s.stats();
    expect(st.fsyncs).toBeGreaterThanOrEqual(1);
    expect(st.fsyncs).toBeLessThanOrEqual(60);
    expect(st.commitsPerFsync * st.fsyncs).toBe(600);
    await s.close();
    const again = await openStore(dir);
    expect(again.appliedTime).toBe(c.time);
    equalImage(again, c.image);
  });

  it('pages changed by many commits between flushes read the same before, during and after the flush that takes them', async () => {
    // Diffs wait to be applied until a page is read or flushed, and a page with many waiting
    // is made at once: few pages and many commits cross both, with flushes on their way.
    const dir = tmpDir();
    const s = await openStore(dir);
    const stream = commitStream(23, { numPages: 6, maxPages: 3 });
    const model = (img: Map<number, { version: number; data: Uint8Array }>) => new Map([...img].map(([p, v]) => [p, { ...v, data: v.data.slice() }]));
    let c = stream.next().value!;
    s.apply(c.time, c.pages, c.changes);
    for (let round = 0; round < 12; round++) {
      for (let i = 0; i < 90; i++) s.apply((c = stream.next().value!).time, c.pages, c.changes);
      const flushed = model(c.image);
      const done = s.flush();
      // Applied on top of the pages on their way to disk, read while they are.
      for (let i = 0; i < 40; i++) s.apply((c = stream.next().value!).time, c.pages, c.changes);
      if (round % 3 === 0) equalImage(s, c.image);
      const after = model(c.image);
      expect(await done).toBeGreaterThanOrEqual(Math.max(...[...flushed.values()].map((v) => v.version)));
      equalImage(s, after);
    }
    expect(s.missing()).toHaveLength(0);
    await s.close();
    const again = await openStore(dir);
    expect(again.appliedTime).toBe(c.time);
    equalImage(again, c.image);
  });

  it('many flushes asked for at once make one', async () => {
    const s = await openStore(tmpDir());
    const stream = commitStream(12);
    const flushes: Promise<number>[] = [];
    for (let i = 0; i < 300; i++) {
      const c = stream.next().value!;
      s.apply(c.time, c.pages, c.changes);
      flushes.push(s.flush());
    }
    const times = await Promise.all(flushes);
    expect(new Set(times).size).toBe(1);
    expect(times[0]).toBe(s.appliedTime);
    expect(s.stats().fsyncs).toBe(1);
  });

  it('records pages it cannot make as missing, and takes whole copies of them', async () => {
    const dir = tmpDir();
    const s = await openStore(dir);
    s.apply(5, Uint32Array.of(1, 2), cat(change(0, wholePage(1)), change(0, run(0, 0xaabbccdd))));
    expect(s.readPage(1)).toEqual({ version: 5, data: wholePage(1) });
    expect(new DataView(s.readPage(2)!.data!.buffer).getUint32(0, true)).toBe(0xaabbccdd);
    // A diff against a version the store does not hold, and a change left out.
    s.apply(7, Uint32Array.of(1, 2), cat(change(6, run(1, 9)), change(5, null)));
    expect([...s.missing()]).toEqual([1, 2]);
    expect(s.readPage(1)).toEqual({ version: 7, data: null });
    expect(s.missingVersion(2)).toBe(7);
    // Later diffs cannot fix them either; the needed version follows.
    s.apply(9, Uint32Array.of(1), change(7, run(1, 10)));
    expect(s.missingVersion(1)).toBe(9);
    expect(s.putPage(1, 7, wholePage(3))).toBe('ignored'); // older than needed
    expect(s.putPage(1, 9, wholePage(4))).toBe('stored');
    expect(s.putPage(3, 9, wholePage(4))).toBe('ignored'); // not missing
    // A copy newer than the applied time waits for its commit.
    expect(s.putPage(2, 12, wholePage(6))).toBe('held');
    s.apply(12, Uint32Array.of(2), change(7, run(0, 1)));
    expect(s.readPage(2)).toEqual({ version: 12, data: wholePage(6) });
    expect(s.missing()).toHaveLength(0);
    // A missing page made whole again by a commit's whole page.
    s.apply(13, Uint32Array.of(4), change(3, run(0, 1)));
    expect([...s.missing()]).toEqual([4]);
    await s.flush();
    s.apply(14, Uint32Array.of(4), change(1, wholePage(8)));
    expect(s.missing()).toHaveLength(0);
    s.apply(15, Uint32Array.of(5), change(0, null));
    // A configuration commit: no pages, no changes, only the time.
    expect(s.apply(16, new Uint32Array(0))).toBe(true);
    await s.close();
    const again = await openStore(dir);
    expect(again.appliedTime).toBe(16);
    expect([...again.missing()]).toEqual([5]);
    expect(again.readPage(4)).toEqual({ version: 14, data: wholePage(8) });
    expect(again.readPage(2)).toEqual({ version: 12, data: wholePage(6) });
    expect(again.readPage(1)).toEqual({ version: 9, data: wholePage(4) });
    expect(again.stats().pages).toBe(3);
  });

  it('refuses a malformed commit whole: nothing of it is applied', async () => {
    const s = await openStore(tmpDir());
    s.apply(1, Uint32Array.of(0), change(0, run(0, 1)));
    const before = s.readPage(0);
    // The first page's change is fine, the second's is cut short.
    const bad = cat(change(1, run(0, 2)), change(0, run(0, 3)).subarray(0, 15));
    expect(() => s.apply(2, Uint32Array.of(0, 1), bad)).toThrow(expect.objectContaining({ code: 'ERR_DSM_STORE', name: 'StoreError' }));
    expect(() => s.apply(2, Uint32Array.of(64), change(0, run(0, 1)))).toThrow(expect.objectContaining({ code: 'ERR_DSM_STORE' }));
    expect(() => s.apply(1.5, Uint32Array.of(0), change(1, run(0, 1)))).toThrow(expect.objectContaining({ code: 'ERR_DSM_STORE' }));
    expect(s.appliedTime).toBe(1);
    expect(s.readPage(0)).toEqual(before);
    expect(s.readPage(1)).toBeUndefined();
    expect(() => s.putPage(0, 1, new Uint8Array(10))).toThrow(expect.objectContaining({ code: 'ERR_DSM_STORE' }));
  });

  it('a view stays at its time while the store goes on', async () => {
    const s = await openStore(tmpDir());
    const stream = commitStream(3);
    let c = stream.next().value!;
    for (let i = 0; i < 40; i++) s.apply((c = stream.next().value!).time, c.pages, c.changes);
    await s.flush();
    const image = new Map([...c.image].map(([p, v]) => [p, { version: v.version, data: v.data.slice() }]));
    // Applied but not flushed: not in the view.
    s.apply(c.time + 100, Uint32Array.of(9), change(0, null));
    const view = s.openView();
    try {
      expect(view.time).toBe(c.time);
      for (let i = 0; i < 40; i++) s.apply((c = stream.next().value!).time + 1000, c.pages, new Uint8Array(0));
      await s.flush();
      const seen = [...view.pages()];
      expect(seen.map((p) => p.page)).toEqual([...image.keys()].sort((a, b) => a - b));
      expect(view.count).toBe(image.size);
      for (const p of seen) {
        expect(p.version).toBe(image.get(p.page)!.version);
        expect(Buffer.from(p.data!).equals(Buffer.from(image.get(p.page)!.data))).toBe(true);
      }
      // batches() (a page server founding from its store) reads the values in place, the
      // head's bytes from a buffer the body's read reuses: the same pages, whole.
      const batched: Array<{ page: number; version: number; data: Buffer }> = [];
      view.batches(7, (pages, versions, data, count) => {
        for (let i = 0; i < count; i++) batched.push({ page: pages[i], version: versions[i], data: Buffer.from(data.subarray(i * PS, (i + 1) * PS)) });
      });
      expect(batched.map((p) => p.page)).toEqual(seen.map((p) => p.page));
      expect(batched.some((p) => p.data.subarray(PS - 24).some((x) => x !== 0))).toBe(true); // tails are compared too
      for (const p of batched) {
        expect(p.version).toBe(image.get(p.page)!.version);
        expect(p.data.equals(Buffer.from(image.get(p.page)!.data))).toBe(true);
      }
    } finally {
      view.close();
    }
    // The later commits carried nothing: their pages are missing now, in the next view.
    const next = s.openView();
    expect(next.time).toBe(s.appliedTime);
    expect([...next.pages()].filter((p) => p.data === null).length).toBe(s.missing().length);
    next.close();
  });

  it('has one owner at a time: refused while another process or instance holds it, taken over from a dead one', async () => {
    const dir = tmpDir();
    await (await PageStore.open(dir, GEO)).close();
    const mine = await openStore(dir);
    await expect(PageStore.open(dir, GEO)).rejects.toMatchObject({ code: 'ERR_DSM_STORE', message: expect.stringContaining('already open in this process') });
    await mine.close();
    const child = spawn(process.execPath, ['-e', holdStore, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await opened(child.stdout);
      await expect(PageStore.open(dir, GEO)).rejects.toMatchObject({ code: 'ERR_DSM_STORE', message: expect.stringContaining(`in use by process ${child.pid}`) });
    } finally {
      child.kill('SIGKILL');
    }
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
    // Its owner file is left behind by the kill; the owner is dead, so the store opens.
    expect(fs.readFileSync(path.join(dir, 'owner.pid'), 'utf8')).toBe(String(child.pid));
    const after = await openStore(dir, GEO);
    expect(after.appliedTime).toBe(0);
    await after.close();
    // A pid left in the file names nobody once its lock is gone, even a live process's (a
    // pid reused after a reboot): the store opens.
    fs.writeFileSync(path.join(dir, 'owner.pid'), String(process.ppid));
    await (await openStore(dir, GEO)).close();
  });

  it('is taken over from an owner killed and never reaped (a zombie keeps its pid)', async () => {
    const dir = tmpDir();
    await (await PageStore.open(dir, GEO)).close();
    // The owner's parent never waits for it: `exec sleep` replaces the shell that started it.
    const shell = spawn('sh', ['-c', `"$0" -e "$1" "$2" & exec sleep 600`, process.execPath, holdStore, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const pid = await opened(shell.stdout);
      process.kill(pid, 'SIGKILL');
      // Wait for the zombie: still a process (kill(pid, 0) succeeds), no longer running.
      for (let i = 0; i < 400 && !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); i++) await new Promise((r) => setTimeout(r, 25));
      expect(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')).toMatch(/^\d+ \(.*\) Z/);
      expect(() => process.kill(pid, 0)).not.toThrow();
      const after = await openStore(dir, GEO);
      expect(after.appliedTime).toBe(0);
      await after.close();
    } finally {
      shell.kill('SIGKILL');
    }
  });

  /** A closed store with every page written: its directory and its LMDB data file. */
  const fullStore = async () => {
    const dir = tmpDir();
    const s = await PageStore.open(dir, GEO);
    for (let p = 0; p < 64; p++) s.apply(p + 1, Uint32Array.of(p), change(0, wholePage(p + 1)));
    await s.close();
    return { dir, data: path.join(dir, 'data.mdb') };
  };

  it('refuses a data file cut short or missing a meta page as damaged (LMDB itself died of SIGBUS on it)', async () => {
    const { dir, data } = await fullStore();
    const whole = fs.readFileSync(data);
    // Opened in a child: without the check, the process dies on the first read past the end.
    const openIn = () => {
      const r = spawnSync(process.execPath, ['-e', `${openStoreJs}.then(() => console.log('opened'), (e) => console.log(e.code, e.message))`, dir], { encoding: 'utf8' });
      return { out: r.stdout.trim(), signal: r.signal };
    };
    expect(openIn().out).toBe('opened');
    for (const size of [whole.length >> 1, whole.length - 4096, 4096]) {
      fs.writeFileSync(data, whole.subarray(0, size));
      const got = openIn();
      expect(got.signal, `cut to ${size} bytes`).toBeNull();
      expect(got.out, `cut to ${size} bytes`).toMatch(/^ERR_DSM_STORE .*is damaged.*Restore it from a snapshot/);
    }
  });

  it('says a store whose data file is scrambled is damaged, not that the disk may be full', async () => {
    const { dir, data } = await fullStore();
    const b = fs.readFileSync(data);
    // Past the meta pages and the first tree pages (they name the databases): where the pages are.
    for (let i = 4 * 4096; i < b.length; i += 97) b[i] ^= 0x5a;
    fs.writeFileSync(data, b);
    // In a child: LMDB reads what it finds as it finds it.
    const write = `const s = await ${openStoreJs}; s.apply(65, Uint32Array.of(3), Buffer.from(args)); await s.flush(); console.log('written');`;
    const r = spawnSync(process.execPath, ['-e', `(async (args) => { ${write} })(${JSON.stringify([...change(3, wholePage(9))])}).catch((e) => console.log(e.code, e.message))`, dir], { encoding: 'utf8' });
    expect(r.signal).toBeNull();
    expect(r.stdout.trim()).toMatch(/^ERR_DSM_STORE .*The store is damaged: restore it from a snapshot/);
  });

  it('refuses a directory of other files, an LMDB database that is not a store, another geometry, another layout version', async () => {
    const dir = tmpDir();
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'hello');
    await expect(PageStore.open(dir, GEO)).rejects.toMatchObject({ code: 'ERR_DSM_STORE', message: expect.stringContaining('not a page store') });
    // A file named like LMDB's that is not: refused before LMDB sees it.
    fs.writeFileSync(path.join(dir, 'data.mdb'), Buffer.alloc(20000, 7));
    await expect(PageStore.open(dir, GEO)).rejects.toMatchObject({ code: 'ERR_DSM_STORE' });
    const other = tmpDir();
    const db = open({ path: other, compression: false });
    await db.put('x', 'y');
    await db.close();
    await expect(PageStore.open(other, GEO)).rejects.toMatchObject({ code: 'ERR_DSM_STORE', message: expect.stringContaining('not a page store') });

    const good = tmpDir();
    await expect(PageStore.open(good)).rejects.toMatchObject({ code: 'ERR_DSM_STORE', message: expect.stringContaining('geometry') });
    expect(fs.existsSync(good)).toBe(false);
    await (await PageStore.open(good, GEO)).close();
    // An existing store opens with its own geometry when none is given.
    const own = await PageStore.open(good);
    expect(own.geometry).toEqual(GEO);
    await own.close();
    await expect(PageStore.open(good, { pageSize: PS, regionSize: 128 * PS })).rejects.toMatchObject({ code: 'ERR_DSM_STORE', message: expect.stringContaining('geometry') });
    await expect(PageStore.open(good, { pageSize: 8192, regionSize: 64 * PS })).rejects.toMatchObject({ code: 'ERR_DSM_STORE' });
    // Another layout version, written into the store's own layout record.
    const root = open({ path: good, compression: false, maxDbs: 8 });
    const meta = root.openDB({ name: 'meta', encoding: 'binary', compression: false });
    const layout = Buffer.from(meta.getBinary('layout')!);
    layout.writeUInt32LE(99, 8);
    await meta.put('layout', layout);
    await root.close();
    await expect(PageStore.open(good, GEO)).rejects.toMatchObject({ code: 'ERR_DSM_STORE', message: expect.stringContaining('layout version 99') });
    await expect(PageStore.open(tmpDir(), { pageSize: 1000, regionSize: 1000 })).rejects.toMatchObject({ code: 'ERR_DSM_STORE' });
  });
});
