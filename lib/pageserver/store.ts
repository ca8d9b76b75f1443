// The page server's store: the region's pages on disk, in LMDB, always a consistent image of
// the heap at one global time (every commit entirely in or entirely out).
//
// Layout: four LMDB databases, a page split into a body and a head record (store_dir.ts).
//
// Group commit: apply() changes pages in memory (the pages changed since the last flush),
// synchronously, keeping a page's diffs until the page is read or flushed (Pending diffs);
// flush() writes them all, with the time, in one LMDB write transaction whose commit is one
// synced LMDB commit (fsync of the data, then of the meta page), off the event
// loop. Commits applied while a flush is on disk wait for the next one, so under load each
// flush carries everything that arrived during the previous one.
// What it costs (benchmarks/suites/pagestore.mjs, medians of 5 runs): LMDB writes each page
// changed since the last flush once, however many commits changed it, but copies on write:
// a flush of 64 random pages writes their overflow pages plus the B-tree leaves and branches
// above them, scattered, and syncs data and meta page. Against a raw sequential write of the
// same page images with the same number of fsyncs that is 0.05-0.2 of its speed (60-230 MiB/s
// of page images, 17k-280k commits/s depending on how commits group). The syncs are not the
// limit: with LMDB's turned off (noSync, tried once, not kept) it still reaches only 0.2-0.3;
// the scattered copy-on-write page writes are. So the page server keeps a log in front
// (wal.ts: sequential appends on the commit path) and flushes this store at checkpoints: off
// the commit path, not off the disk.
//
// The directory itself (the layout, owner lock, creating and opening LMDB) is store_dir.ts;
// consistent views of it, store_view.ts.
import fs from 'node:fs';
import path from 'node:path';
import { applyDiff } from './diff';
import { DiffArena } from './diff_arena';
import { ParsedChanges, parseChanges } from './commit_changes';
import { StoreError } from './errors';
import { checkGeometry, claim, createStore, type Dbs, type Geometry, headRecord, inspect, joinPage, layoutRecord, lmdbAdvice, openDbs, putU64, readLayout, release, storedGeometry, TAIL, u64 } from './store_dir';
import { openStoreView, type StoreView, type ViewPage } from './store_view';

export { LAYOUT_VERSION, type Geometry } from './store_dir';
export type { StoreView, ViewPage } from './store_view';

const EMPTY = new Uint8Array(0);

/** A stored page: `data` is null while the store waits for a whole copy of this version (see `missing()`). */
export interface StoredPage {
  version: number;
  data: Uint8Array | null;
}

/** What `putPage` did with a whole page. */
export type PutResult = 'stored' | 'held' | 'ignored';

/** Figures for `dsm stats` and metrics. */
export interface StoreStats {
  /** Pages stored (at the applied time). */
  pages: number;
  /** Pages waiting for a whole copy. */
  missing: number;
  /** Pages applied but not yet flushed. */
  unflushedPages: number;
  /** Size of the LMDB data file. */
  bytesOnDisk: number;
  /** Synced LMDB commits (each one group commit). */
  fsyncs: number;
  /** Page records those commits wrote (a page changed by many commits between two flushes counts once). */
  pagesWritten: number;
  /** Commits applied and flushed, divided by `fsyncs`. */
  commitsPerFsync: number;
  appliedTime: number;
  durableTime: number;
}

// Pending diffs. Applying each commit's diffs at once cost a one-page commit 4.5 us on the page
// server's commit path, nearly all of it making the page: reading it from LMDB and a fresh
// 4 KiB array (1.5-1.9 us to allocate here). So a page on disk (or never written) that a
// commit changes is not made then: its entry keeps the diffs (copied into the store's
// DiffArena), and the page is made when it is read or flushed. A commit then costs a look at
// the page's version; the pages are made at the checkpoint, off the acknowledgement's path.
interface Dirty {
  version: number;
  /** null: missing, the store needs a whole copy of `version` (unless `base` is set). */
  data: Uint8Array | null;
  /** Not made yet: the page as on disk, or zeros (never written), with `count` kept diffs applied, the last at `last`. */
  base?: 'disk' | 'zero';
  last?: number;
  count?: number;
  bytes?: number;
}

/** A page with more diffs waiting than this (or more bytes of them than a page) is made at once. */
const PENDING_DIFFS = 64;

const isMissing = (d: Dirty): boolean => d.data === null && d.base === undefined;

/**
 * The pages of one region on disk, applied commit by commit in global-time order and flushed
 * in group commits. Not shared between processes; one instance per directory.
 */
export class PageStore {
  readonly dir: string;
  readonly geometry: Geometry;
  private readonly numPages: number;
  private readonly dbs: Dbs;
  private applied: number;
  private durable: number;
  /** Pages changed since the last flush began. */
  private dirty = new Map<number, Dirty>();
  /** Pages of the flush on its way to disk (read through until it is there). */
  private flushing: Map<number, Dirty> | undefined;
  /** Missing pages at the applied time, with the version each needs. */
  private readonly missingNow = new Map<number, number>();
  /** Missing pages as on disk (whether a flush must delete a missing record). */
  private readonly missingOnDisk = new Set<number>();
  /** Each page's version on disk as last read or written here: NaN not read yet, -1 none (8 bytes a page; the LMDB lookup was a third of a deferred commit's cost). */
  private readonly diskVersions: Float64Array;
  /** The diffs of pages not made yet (Pending diffs); emptied when a flush has made them all. */
  private readonly arena = new DiffArena();
  private readonly parsed = new ParsedChanges();
  /** Whole copies newer than the applied time, each for the commit that will make its version. */
  private readonly held = new Map<number, { version: number; data: Uint8Array }>();
  private storedPages: number;
  private chain: Promise<unknown> = Promise.resolve();
  /** The flush waiting for the one on disk, if any. */
  private queued: Promise<number> | undefined;
  private commitsUnflushed = 0;
  private commitsFlushed = 0;
  private fsyncs = 0;
  private pagesWritten = 0;
  private closed = false;
  /** The log mark on disk (log_mark.ts), and where each flush gets the one to write with its pages (the commit log sets it). */
  private mark: Uint8Array | undefined;
  markSource?: () => Uint8Array;

  private constructor(dir: string, geometry: Geometry, dbs: Dbs) {
    this.dir = dir;
    this.geometry = { pageSize: geometry.pageSize, regionSize: geometry.regionSize };
    this.numPages = geometry.regionSize / geometry.pageSize;
    this.dbs = dbs;
    const t = dbs.meta.getBinary('time');
    this.applied = this.durable = t ? u64(t, 0) : 0;
    this.mark = dbs.meta.getBinary('log');
    for (const { key, value } of dbs.missing.getRange()) {
      this.missingNow.set(key, u64(value, 0));
      this.missingOnDisk.add(key);
    }
    this.storedPages = dbs.head.getCount();
    this.diskVersions = new Float64Array(this.numPages).fill(NaN);
  }

  /**
   * Opens the store in `dir`, creating it when the directory is missing or empty (asynchronous:
   * a new store is made aside and renamed into place, so a crash never leaves half a store).
   * Without `geometry`, an existing store opens with its own (a new one needs it). Throws
   * StoreError for a directory that holds something else, a store of another layout version,
   * or one of another geometry than given.
   */
  static async open(dir: string, geometry?: Geometry): Promise<PageStore> {
    if (geometry) checkGeometry(geometry);
    dir = path.resolve(dir);
    if (inspect(dir) === 'new') {
      if (!geometry) throw new StoreError(`${dir} holds no page store yet; a new store needs the region's geometry ({ pageSize, regionSize })`);
      await createStore(dir, geometry);
      inspect(dir);
    }
    await claim(dir);
    let dbs: Dbs;
    try {
      dbs = openDbs(dir);
    } catch (e) {
      release(dir);
      throw e;
    }
    const fail = async (err: StoreError): Promise<never> => {
      await dbs.root.close();
      release(dir);
      throw err;
    };
    const stored = readLayout(dbs, dir);
    if (stored instanceof StoreError) return fail(stored);
    if (geometry && (stored.pageSize !== geometry.pageSize || stored.regionSize !== geometry.regionSize)) {
      return fail(
        new StoreError(
          `the page store in ${dir} holds a region of ${stored.regionSize} bytes in pages of ${stored.pageSize}; ` +
            `this cluster has ${geometry.regionSize} bytes in pages of ${geometry.pageSize}. Start the cluster with the store's geometry, or use another directory`,
        ),
      );
    }
    return new PageStore(dir, stored, dbs);
  }

  /** The geometry of the store in `dir` (store_dir.ts): a page server restarting on its directory maps the region the store holds. */
  static storedGeometry(dir: string): Promise<Geometry | undefined> {
    return storedGeometry(path.resolve(dir));
  }

  /** The global time of the last commit applied (0: a new store). */
  get appliedTime(): number {
    return this.applied;
  }

  /** The log mark on disk: which commit log file the image continues in, and how far (log_mark.ts). */
  get logMark(): Uint8Array | undefined {
    return this.mark;
  }

  /** The last applied time known to be on disk. */
  get durableTime(): number {
    return this.durable;
  }

  /**
   * Applies the commit at `time` (its written pages and their changes, lib/service/changes.ts;
   * none, as for a configuration, just moves the time). Commits must come in global-time order;
   * one at or before `appliedTime` is ignored (false). A page whose diff does not fit the stored
   * version, or whose change was left out, becomes missing (see `missing()`). Throws
   * StoreError, with nothing applied, for a malformed commit.
   */
  apply(time: number, pages: Uint32Array, changes: Uint8Array = EMPTY): boolean {
    this.checkOpen();
    if (!Number.isSafeInteger(time) || time <= 0) throw new StoreError(`a commit's time must be a positive integer, got ${String(time)}`);
    if (time <= this.applied) return false;
    const parsed = parseChanges(time, pages, changes, this.geometry.pageSize, this.numPages, this.parsed);
    for (let i = 0; i < parsed.count; i++) {
      const page = pages[i];
      const replaces = parsed.replaces[i];
      const at = parsed.at[i];
      const len = parsed.len[i];
      const held = this.held.size ? this.held.get(page) : undefined;
      if (held && held.version <= time) this.held.delete(page);
      if (len === this.geometry.pageSize) {
        this.set(page, time, changes.slice(at, at + len));
        continue;
      }
      if (held?.version === time) {
        // The node that sent it had this commit applied: the copy is its result.
        this.set(page, time, held.data);
        continue;
      }
      if (len < 0) {
        this.set(page, time, null);
        continue;
      }
      const mine = this.dirty.get(page);
      if (mine) {
        if (isMissing(mine) || mine.version !== replaces) this.set(page, time, null);
        else this.change(page, mine, time, changes, at, len);
        continue;
      }
      const under = this.flushing?.get(page);
      if (under) {
        // On its way to disk (made): this interval's own copy.
        if (under.data === null || under.version !== replaces) this.set(page, time, null);
        else this.change(page, { version: under.version, data: under.data.slice() }, time, changes, at, len);
        continue;
      }
      if (this.missingNow.has(page)) {
        this.set(page, time, null);
        continue;
      }
      // On disk or never written: only the version is looked at now; the page is made when it is read or flushed.
      const v = this.diskVersion(page);
      if (Math.max(v, 0) !== replaces) this.set(page, time, null);
      else this.change(page, { version: replaces, data: null, base: v < 0 ? 'zero' : 'disk', last: -1, count: 0, bytes: 0 }, time, changes, at, len);
    }
    this.applied = time;
    this.commitsUnflushed++;
    return true;
  }

  /** Pages the store cannot make from diffs and needs whole (`putPage`), in page order. */
  missing(): Uint32Array {
    return Uint32Array.from([...this.missingNow.keys()].sort((a, b) => a - b));
  }

  /** The version a missing page needs, or undefined when the page is not missing. */
  missingVersion(page: number): number | undefined {
    return this.missingNow.get(page);
  }

  /**
   * Gives the store a whole copy of a missing page: 'stored' when it is the version the store
   * needs; 'held' when it is newer than the applied time (it is taken when the commit of that
   * time arrives); 'ignored' when the page is not missing or the copy is older than needed.
   */
  putPage(page: number, version: number, data: Uint8Array): PutResult {
    this.checkOpen();
    if (!Number.isInteger(page) || page < 0 || page >= this.numPages) throw new StoreError(`page ${String(page)} is outside the region of ${this.numPages} pages`);
    if (!(data instanceof Uint8Array) || data.length !== this.geometry.pageSize) {
      throw new StoreError(`a whole page is ${this.geometry.pageSize} bytes, got ${data instanceof Uint8Array ? data.length : typeof data}`);
    }
    const need = this.missingNow.get(page);
    if (need === undefined || !Number.isSafeInteger(version) || version < need) return 'ignored';
    if (version === need) {
      this.set(page, version, data.slice());
      return 'stored';
    }
    if (version <= this.applied) return 'ignored';
    const held = this.held.get(page);
    if (!held || held.version < version) this.held.set(page, { version, data: data.slice() });
    return 'held';
  }

  /**
   * Joins the store to a running cluster at `time` (a page server joining or rejoining): the
   * cluster's written pages and versions at that time are given; each page the store holds
   * at another version becomes missing at the cluster's (nothing reaches the disk until
   * they come whole, `putPage`), a stored page the cluster never wrote becomes zeros, and
   * the applied time jumps to `time`. Returns the pages that must come whole.
   */
  rebase(time: number, written: Array<{ page: number; version: number }>): Uint32Array {
    this.checkOpen();
    if (!Number.isSafeInteger(time) || time < this.applied) throw new StoreError(`cannot rebase the store at ${this.applied} back to time ${time}`);
    const cluster = new Map<number, number>();
    for (const { page, version } of written) {
      if (!Number.isInteger(page) || page < 0 || page >= this.numPages) throw new StoreError(`page ${page} is outside the region of ${this.numPages} pages`);
      cluster.set(page, version);
    }
    const need: number[] = [];
    for (const [page, version] of cluster) {
      const cur = this.current(page);
      if (!cur || cur.version !== version || cur.data === null) {
        this.set(page, version, null);
        need.push(page);
      }
    }
    const view = this.openView();
    try {
      for (const p of view.pages()) if (!cluster.has(p.page)) this.set(p.page, 0, new Uint8Array(this.geometry.pageSize));
    } finally {
      view.close();
    }
    for (const page of [...this.dirty.keys()]) if (!cluster.has(page) && this.dirty.get(page)!.version !== 0) this.set(page, 0, new Uint8Array(this.geometry.pageSize));
    this.applied = time;
    this.commitsUnflushed++;
    return Uint32Array.from(need);
  }

  /** The page at the applied time; undefined: never written (a zero page). */
  readPage(page: number): StoredPage | undefined {
    this.checkOpen();
    const cur = this.current(page);
    return cur && { version: cur.version, data: cur.data && cur.data.slice() };
  }

  /**
   * Writes everything applied so far to disk in one synced LMDB transaction, with the applied
   * time, and resolves with the time now durable. Calls while a flush is on its way wait for it
   * and then flush what arrived meanwhile, together.
   */
  flush(): Promise<number> {
    if (this.closed) return Promise.reject(this.closedError());
    // Calls while one flush waits its turn share it: it takes everything applied until it starts.
    if (this.queued) return this.queued;
    const run = this.chain.then(() => {
      this.queued = undefined;
      return this.flushOnce();
    });
    this.queued = run;
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async flushOnce(): Promise<number> {
    // Taken now, with the batch: every record the log synced so far is in it.
    const mark = this.markSource?.();
    const marked = mark && !(this.mark && Buffer.from(mark).equals(this.mark)) ? mark : undefined;
    if (this.applied === this.durable && this.dirty.size === 0 && !marked) return this.durable;
    const batch = this.dirty;
    this.makeAll(batch);
    // Every entry is made now (the flushing layer's were, and the next starts empty).
    this.arena.reset();
    const time = this.applied;
    const commits = this.commitsUnflushed;
    this.dirty = new Map();
    this.commitsUnflushed = 0;
    this.flushing = batch;
    try {
      await this.write(batch, time, marked);
    } catch (e) {
      // Nothing of the batch is on disk: it goes back under what was applied since.
      for (const [page, d] of this.dirty) batch.set(page, d);
      this.dirty = batch;
      this.commitsUnflushed += commits;
      throw e;
    } finally {
      this.flushing = undefined;
    }
    this.durable = time;
    this.fsyncs++;
    this.pagesWritten += batch.size;
    this.commitsFlushed += commits;
    return time;
  }

  /** Makes every pending page of `batch`, into one allocation (a fresh array per page costs more than the rest). */
  private makeAll(batch: Map<number, Dirty>): void {
    let n = 0;
    for (const d of batch.values()) if (d.base !== undefined) n++;
    if (n === 0) return;
    const ps = this.geometry.pageSize;
    const slab = new Uint8Array(n * ps);
    let at = 0;
    for (const [page, d] of batch) {
      if (d.base === undefined) continue;
      this.make(page, d, slab.subarray(at, at + ps));
      at += ps;
    }
  }

  /** One synced LMDB transaction: the pages of `batch`, `time`, and a new log mark (with the current layout: a store of layout 1 or 2 is upgraded so). */
  private async write(batch: Map<number, Dirty>, time: number, mark?: Uint8Array): Promise<void> {
    const { body, head, missing, meta, root } = this.dbs;
    const ps = this.geometry.pageSize;
    let stored = 0;
    const missingAfter = new Set(this.missingOnDisk);
    try {
      await root.transaction(() => {
        stored = this.storedPages;
        for (const [page, d] of batch) {
          const had = head.doesExist(page);
          if (d.data) {
            body.putSync(page, d.data.subarray(0, ps - TAIL));
            head.putSync(page, headRecord(d.version, d.data));
            if (!had) stored++;
            if (missingAfter.delete(page)) missing.removeSync(page);
          } else {
            if (had) {
              body.removeSync(page);
              head.removeSync(page);
              stored--;
            }
            const m = Buffer.alloc(8);
            putU64(m, 0, d.version);
            missing.putSync(page, m);
            missingAfter.add(page);
          }
        }
        const t = Buffer.alloc(8);
        putU64(t, 0, time);
        meta.putSync('time', t);
        if (mark) meta.putSync('log', mark);
        if (mark) meta.putSync('layout', layoutRecord(this.geometry));
      });
    } catch (e) {
      // lmdb-js says "Commit failed (see commitError for details)": a promise that rejects
      // with what tells (and was an unhandled rejection when nobody looked).
      const pending = (e as { commitError?: Promise<unknown> }).commitError;
      const detail = ((pending && (await Promise.race([pending.then(() => e, (x: unknown) => x), new Promise((r) => setTimeout(() => r(e), 1000))]))) ?? e) as Error & { code?: number };
      throw new StoreError(`writing the page store in ${this.dir} failed: ${detail.message}. ${lmdbAdvice(detail)}`, { cause: e });
    }
    this.storedPages = stored;
    if (mark) this.mark = mark;
    for (const [page, d] of batch) this.diskVersions[page] = d.data ? d.version : -1;
    this.missingOnDisk.clear();
    for (const p of missingAfter) this.missingOnDisk.add(p);
  }

  /**
   * A consistent view of the store as on disk now, at `durableTime` (flush first for the latest
   * applied commits). Close it when done.
   */
  openView(): StoreView {
    this.checkOpen();
    return openStoreView(this.dbs, this.geometry, this.dir);
  }

  /**
   * Writes pages straight into a new store (nothing applied yet), one synced transaction per
   * call; the last call gives the image's `time`, which makes the store's applied time. For
   * restoring a snapshot into a directory that is renamed into place only when complete.
   * @internal
   */
  async load(pages: ViewPage[], time = 0): Promise<void> {
    this.checkOpen();
    if (this.applied !== 0 || this.dirty.size !== 0) throw new StoreError('only a new, empty store can be loaded');
    const batch = new Map<number, Dirty>();
    for (const p of pages) batch.set(p.page, { version: p.version, data: p.data });
    const run = this.chain.then(() => this.write(batch, time));
    this.chain = run.catch(() => undefined);
    await run;
    for (const p of pages) if (!p.data) this.missingNow.set(p.page, p.version);
    this.applied = this.durable = time;
  }

  /** Figures for stats and metrics. */
  stats(): StoreStats {
    let pages = this.storedPages;
    let bytesOnDisk = 0;
    try {
      bytesOnDisk = fs.statSync(path.join(this.dir, 'data.mdb')).size;
    } catch {
      // closed and removed
    }
    // Pages whose fate since the last flush is not on disk yet.
    for (const layer of [this.flushing, this.dirty]) {
      if (!layer) continue;
      for (const [page, d] of layer) {
        const onDisk = this.dbs.head.doesExist(page);
        if (!isMissing(d) && !onDisk) pages++;
        else if (isMissing(d) && onDisk) pages--;
      }
    }
    return {
      pages,
      missing: this.missingNow.size,
      unflushedPages: this.dirty.size + (this.flushing?.size ?? 0),
      bytesOnDisk,
      fsyncs: this.fsyncs,
      pagesWritten: this.pagesWritten,
      commitsPerFsync: this.fsyncs ? this.commitsFlushed / this.fsyncs : 0,
      appliedTime: this.applied,
      durableTime: this.durable,
    };
  }

  /** Flushes what is applied, then closes the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      await this.chain;
      await this.dbs.root.close();
      release(this.dir);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw this.closedError();
  }

  private closedError(): StoreError {
    return new StoreError(`the page store in ${this.dir} is closed; open it again`);
  }

  /** `d` (this page's entry, or a new one) moves to `time` with the diff (`len` bytes of `changes` at `at`) applied or kept. */
  private change(page: number, d: Dirty, time: number, changes: Uint8Array, at: number, len: number): void {
    if (d.base !== undefined && d.count! < PENDING_DIFFS && d.bytes! + len <= this.geometry.pageSize) {
      // A copy: the commit's bytes may be a window on a buffer that is reused.
      d.last = this.arena.keep(changes, at, len, d.last!);
      d.count!++;
      d.bytes! += len;
    } else {
      this.make(page, d);
      applyDiff(d.data!, changes, at, len);
    }
    d.version = time;
    this.dirty.set(page, d);
  }

  /** The page's version on disk, -1 when there is none. */
  private diskVersion(page: number): number {
    let v = this.diskVersions[page];
    if (Number.isNaN(v)) {
      const h = this.dbs.head.getBinaryFast(page);
      v = this.diskVersions[page] = h ? u64(h, 0) : -1;
    }
    return v;
  }

  /** Makes a pending page's contents (they are this entry's own then); `into`, when given, is zeros. */
  private make(page: number, d: Dirty, into?: Uint8Array): void {
    if (d.base === undefined) return;
    const ps = this.geometry.pageSize;
    const data = into ?? new Uint8Array(ps);
    // A base on disk stays there until this entry is flushed: only the flush that takes the entry writes the page.
    if (d.base === 'disk' && this.readDisk(page, data) === undefined) throw new StoreError(`the page store in ${this.dir} is damaged (page ${page} went from the disk); restore it from a snapshot`);
    this.arena.applyTo(data, d.last!, d.count!);
    d.data = data;
    d.base = undefined;
  }

  /** The page's version on disk, its contents copied into `into`; undefined when the disk has no such page. */
  private readDisk(page: number, into: Uint8Array): number | undefined {
    const h = this.dbs.head.getBinary(page);
    if (!h) return undefined;
    // getBinaryFast's buffer is a window on a larger one: only its first `length` bytes are the value.
    joinPage(this.dir, page, this.dbs.body.getBinaryFast(page), h, into);
    return u64(h, 0);
  }

  private set(page: number, version: number, data: Uint8Array | null): void {
    this.dirty.set(page, { version, data });
    if (data) this.missingNow.delete(page);
    else this.missingNow.set(page, version);
  }

  /** The page at the applied time, made: the unflushed layers first, then the disk. */
  private current(page: number): Dirty | undefined {
    const d = this.dirty.get(page) ?? this.flushing?.get(page);
    if (d) {
      this.make(page, d);
      return d;
    }
    const need = this.missingNow.get(page);
    if (need !== undefined) return { version: need, data: null };
    const data = new Uint8Array(this.geometry.pageSize);
    const version = this.readDisk(page, data);
    return version === undefined ? undefined : { version, data };
  }
}
