// The page server's commit log: every change to the store (a commit's changes, a whole page
// taken from the region, a rebase on joining) is appended here and made durable with one
// fdatasync per group before it is acknowledged, and the store (LMDB) takes it in large
// checkpoints. A synced LMDB commit scatters copy-on-write pages and syncs twice (data, then
// meta page): 0.36 ms for a one-page commit here, against 0.12 ms for appending 64 bytes
// and fdatasync; the log puts only the sequential write on the acknowledgement's path.
//
// Files: log-<n>.wal in the store's directory, replayed in order over the store's image at
// open. A checkpoint starts a new file, flushes the store (one synced LMDB transaction of
// everything applied so far) and then retires the older files: the image then holds all
// they held. Replay is exact because it repeats the same calls in the same order on the
// same image; whatever the image already holds is skipped (older times, pages not missing).
//
// Retired files are kept (at most SPARES) and written over as later files. An fdatasync
// that extends a file also commits the file system's journal (the new size and blocks);
// one over blocks the file already has does not. Measured here, 300 appends of 4,900 bytes
// each followed by fdatasync, medians of 5: 184 us a sync in a growing file, 123 us in one
// written over. A file written over holds its earlier records after the new ones; each
// record's CRC covers the file's number, so those fail their check and end the replay, as
// a torn record does. A file is closed with an END record before the next one starts:
// replay of any file but the last must reach its END, or the log is damaged. The first
// format (wal-<n>.log: CRCs of the payload alone, no END, never written over) is still
// replayed, and its files deleted at the first checkpoint.
//
// Record, little-endian: u32 payload length | u32 CRC-32 of (u64 file number | payload) |
// payload, where the payload is u8 kind | ...:
//   1 commit  u64 time | u32 page count | u32 pages | bytes changes (the rest)
//   2 page    u32 page | u64 version | the page
//   3 rebase  u64 time | u32 count | per page u32 page, u64 version
//   4 end     (nothing: the file is complete) | 16 bytes: the next file's id (a linked END, log_mark.ts)
//   5 group   u32 bytes: the records of one write and fdatasync, this one first
//             | u64 the file's size as they were written (synced before; none before layout 4)
//   6 header  16 bytes: the file's id, random (first in the file, synced before any record)
//             | u64 the file's step: its size is a whole number of them (none: written before steps)
// A torn or damaged record (a crash during an append) ends the replay there: nothing after
// it was acknowledged, since acknowledgements wait for the fdatasync that covers them. But
// a group is written only once the one before it is synced, so a whole group record after
// a bad one means the bad one was synced, and acknowledged: the log is damaged (a disk
// fault, a stray write), not torn, and the store is refused rather than opened without
// the commits after it. (A file written before group records has none to tell by.)
// The record kinds and sizes, and reading a file back, are in wal_records.ts.
// Which file the store continues in, and how far, is the store's log mark (log_mark.ts): a
// log deleted, emptied, cut short below it or from another store is refused at open.
//
// A file's size is a whole number of steps (LOG_FILE_BYTES, named in its header), set and
// synced before any record goes past it: a file starts one step long (sparse: ftruncate),
// and a group that would not fit grows it by steps, synced before the group is written.
// So no crash leaves a file whose size is not a whole number of its steps, and records end
// inside the file, followed by zeros (never written) or a spare's stale records. A last file
// of another size was cut short after its records were synced (log_mark.ts), even at a
// record boundary, which a crash after a sync also leaves. Nor does a crash leave a file
// shorter than the size its group records name: a file grown by steps and cut back to a
// whole number of them keeps the group record that grew it (a group starts below the old
// size, since an END always fits after the records), and that record names the larger size. A file is one step long unless a
// checkpoint falls behind (feed.ts rotates at three quarters of a step). Files written
// before steps (a header of 17 bytes, no step) are read as before, without that check.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { StoreError } from './errors';
import { decodeMark, encodeMark, LOG_ID_BYTES, planReplay } from './log_mark';
import { putU64, syncDir } from './store_dir';
import { COMMIT, END, FILE_HEADER, GROUP, GROUP_BYTES, HEADER, HEADER_BYTES, PAGE, REBASE, replayFile } from './wal_records';
import type { PageStore } from './store';

/** A linked END's bytes: a file always has room for one after its records, so ending it never grows it. */
const LINKED_END_BYTES = HEADER + 1 + LOG_ID_BYTES;
/**
 * A log file's size step (the top of this file). Sparse, so a file takes only the blocks its
 * records were written to; a replay at open reads it whole (30 ms for 64 MiB of hole here).
 */
export const LOG_FILE_BYTES = 64 << 20;
const FILE = /^log-(\d+)\.wal$/;
/** The first format's files (see the top of this file). */
const FIRST_FORMAT_FILE = /^wal-(\d+)\.log$/;
const SPARE = /^spare-(\d+)\.wal$/;
/** Retired files kept to be written over. */
const SPARES = 2;
/** The staging buffer is given back after a sync once a burst grew it past this. */
const STAGED_KEEP_MAX = 8 << 20;

/** What a replay did (for the log line at start). */
export interface ReplayInfo {
  records: number;
  files: number;
  /** The last file ended in a torn or stale record (after its last synced one, never acknowledged). */
  tornTail: boolean;
}

/**
 * Records up to this many bytes get their CRC from crc32Small: for a one-page commit's 40-odd
 * bytes, zlib.crc32 and the view it needs took 137 ns here, the table loop 64 ns.
 */
const SMALL_RECORD = 128;
const CRC_TABLE = new Int32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  CRC_TABLE[n] = c;
}

/** zlib.crc32(b.subarray(from, to), seed), without the view (the same CRC-32, for short runs). */
function crc32Small(b: Uint8Array, from: number, to: number, seed: number): number {
  let c = ~seed;
  for (let i = from; i < to; i++) c = CRC_TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** The CRC every record of file `seq` starts from: its u64 number's. */
function seedOf(seq: number): number {
  const b = Buffer.alloc(8);
  putU64(b, 0, seq);
  return zlib.crc32(b);
}

/** The log files in `dir`, oldest first; `seed` null for the first format. */
function logFiles(dir: string): Array<{ seq: number; name: string; seed: number | null }> {
  const out: Array<{ seq: number; name: string; seed: number | null }> = [];
  for (const f of fs.readdirSync(dir)) {
    let m = FILE.exec(f);
    if (m) out.push({ seq: Number(m[1]), name: f, seed: seedOf(Number(m[1])) });
    else if ((m = FIRST_FORMAT_FILE.exec(f))) out.push({ seq: Number(m[1]), name: f, seed: null });
  }
  return out.sort((a, b) => a.seq - b.seq);
}


export class CommitLog {
  private fd: number;
  private seq: number;
  private seed: number;
  /** The current file's id (its header). */
  private id: Buffer;
  /** Records appended since the last sync, back to back as they go to the file (CRCs filled in as they are written). */
  private staged = Buffer.allocUnsafe(1 << 16);
  /** Bytes staged: the next group's record goes first (filled in as it is written). */
  private used = GROUP_BYTES;
  private records = 0;
  private lastLen = 0;
  /** Bytes in the current file (checkpoints start a new one past a size); where the next write goes. */
  bytes = 0;
  /** The current file's size: a whole number of `step`s, synced (records never go past it). */
  private size: number;
  /** fdatasyncs so far (dsm stats). */
  syncs = 0;
  /** Records made durable, divided by syncs (dsm stats). */
  private synced = 0;
  private syncing?: Promise<void>;

  private constructor(
    private readonly dir: string,
    private readonly store: PageStore,
    seq: number,
    private readonly step: number,
  ) {
    this.seq = seq;
    this.seed = seedOf(seq);
    ({ fd: this.fd, id: this.id, size: this.size } = this.startFile(seq));
    this.bytes = HEADER_BYTES;
    // Every flush of the store records where in the log its image stands.
    store.markSource = () => encodeMark(this.seq, this.id, this.bytes);
  }

  /**
   * Opens the log of the store in `dir`: replays every file into `store`, then starts a new
   * file (`step`: its size step, the top of this file). The caller checkpoints (the replayed
   * records stay until then).
   */
  static open(dir: string, store: PageStore, step = LOG_FILE_BYTES): { log: CommitLog; replay: ReplayInfo } {
    const files = logFiles(dir);
    const name = (f: { name: string } | number) => path.join(dir, typeof f === 'number' ? `log-${f}.wal` : f.name);
    // Every file is read and checked before any record of it reaches the store: a refused log
    // changes nothing. Only its records are kept for the replay, not the rest of its step.
    const records = new Map<number, Buffer>();
    const scans = files.map((f) => {
      const b = fs.readFileSync(name(f));
      const scan = replayFile(name(f), b, f.seed, store, undefined);
      records.set(f.seq, Buffer.from(b.subarray(0, scan.at)));
      return { ...f, ...scan, size: b.length };
    });
    const plan = planReplay(dir, scans, decodeMark(dir, store.logMark), name);
    const replay: ReplayInfo = { records: 0, files: plan.replay.length, tornTail: false };
    for (const f of plan.replay) replayFile(name(f), records.get(f.seq)!, files.find((x) => x.seq === f.seq)!.seed, store, replay);
    replay.tornTail = plan.replay.at(-1)?.end === 'torn';
    // A file a rotation never finished holds nothing: it becomes a spare, out of the chain.
    for (const f of plan.setAside) fs.renameSync(name(f), path.join(dir, `spare-${f.seq}.wal`));
    const spares = fs.readdirSync(dir).map((f) => SPARE.exec(f)).filter((m): m is RegExpExecArray => m !== null);
    const top = Math.max(0, ...files.map((f) => f.seq), ...spares.map((m) => Number(m[1])));
    const log = new CommitLog(dir, store, top + 1, step);
    // The log goes on in the new file (made first: log_mark.ts, step 1): the last one ends
    // where its replay did, for good, with an END naming it.
    const last = plan.replay.at(-1);
    if (last) {
      try {
        endFile(name(last), files.find((x) => x.seq === last.seq)!.seed, last.at, log.id, last.step);
      } catch (e) {
        fs.closeSync(log.fd);
        throw e;
      }
    }
    return { log, replay };
  }

  private file(seq: number): string {
    return path.join(this.dir, `log-${seq}.wal`);
  }

  /**
   * Starts file `seq`, for writing from its start (a spare renamed to it when there is one):
   * its size (a whole number of steps) and header, synced, and its name.
   */
  private startFile(seq: number): { fd: number; id: Buffer; size: number } {
    // The spare with the most blocks written: its syncs commit no journal as far as they reach
    // (its size says nothing: every file is at least a step, mostly holes).
    let largest: { name: string; blocks: number } | undefined;
    for (const f of fs.readdirSync(this.dir)) {
      if (!SPARE.test(f)) continue;
      const { blocks } = fs.statSync(path.join(this.dir, f));
      if (!largest || blocks > largest.blocks) largest = { name: f, blocks };
    }
    let fd: number;
    if (largest) {
      fs.renameSync(path.join(this.dir, largest.name), this.file(seq));
      fd = fs.openSync(this.file(seq), 'r+');
    } else fd = fs.openSync(this.file(seq), 'w');
    const id = randomBytes(LOG_ID_BYTES);
    let size: number;
    try {
      // A spare already is a whole number of steps unless it was written before steps (or a
      // rotation it came from never finished): rounded up. In the same sync as the header, so
      // the size is durable before an END names the file and before any record is in it.
      const had = fs.fstatSync(fd).size;
      size = Math.max(this.step, Math.ceil(had / this.step) * this.step);
      if (had !== size) fs.ftruncateSync(fd, size);
      const h = Buffer.alloc(HEADER_BYTES);
      h.writeUInt32LE(HEADER_BYTES - HEADER, 0);
      h[HEADER] = FILE_HEADER;
      id.copy(h, HEADER + 1);
      putU64(h, HEADER + 1 + LOG_ID_BYTES, this.step);
      h.writeUInt32LE(zlib.crc32(h.subarray(HEADER), seedOf(seq)), 4);
      writeAll(fd, h, h.length, 0);
      fs.fdatasyncSync(fd);
      // Before any record in it is acknowledged (and before an END names it), its name must survive a crash.
      syncDir(this.dir);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    return { fd, id, size };
  }

  /**
   * Grows the current file by whole steps until `end` bytes and a linked END fit, synced before
   * anything is written past its old size: a crash then never leaves records past a size that
   * is not a whole number of steps (which is how a cut file is told from a crashed one).
   */
  private makeRoom(end: number): void {
    if (end + LINKED_END_BYTES <= this.size) return;
    const size = Math.ceil((end + LINKED_END_BYTES) / this.step) * this.step;
    fs.ftruncateSync(this.fd, size);
    fs.fdatasyncSync(this.fd);
    this.syncs++;
    this.size = size;
  }

  appendCommit(time: number, pages: Uint32Array, changes: Uint8Array): void {
    const at = this.reserve(1 + 8 + 4 + pages.length * 4 + changes.length);
    const b = this.staged;
    b[at] = COMMIT;
    b.writeUInt32LE(time >>> 0, at + 1);
    b.writeUInt32LE(Math.floor(time / 2 ** 32), at + 5);
    b.writeUInt32LE(pages.length, at + 9);
    for (let i = 0; i < pages.length; i++) b.writeUInt32LE(pages[i], at + 13 + i * 4);
    b.set(changes, at + 13 + pages.length * 4);
    this.seal(at);
  }

  appendPage(page: number, version: number, data: Uint8Array): void {
    const at = this.reserve(1 + 4 + 8 + data.length);
    const b = this.staged;
    b[at] = PAGE;
    b.writeUInt32LE(page, at + 1);
    b.writeUInt32LE(version >>> 0, at + 5);
    b.writeUInt32LE(Math.floor(version / 2 ** 32), at + 9);
    b.set(data, at + 13);
    this.seal(at);
  }

  appendRebase(time: number, written: Array<{ page: number; version: number }>): void {
    const at = this.reserve(1 + 8 + 4 + written.length * 12);
    const b = this.staged;
    b[at] = REBASE;
    b.writeUInt32LE(time >>> 0, at + 1);
    b.writeUInt32LE(Math.floor(time / 2 ** 32), at + 5);
    b.writeUInt32LE(written.length, at + 9);
    let o = at + 13;
    for (const { page, version } of written) {
      b.writeUInt32LE(page, o);
      b.writeUInt32LE(version >>> 0, o + 4);
      b.writeUInt32LE(Math.floor(version / 2 ** 32), o + 8);
      o += 12;
    }
    this.seal(at);
  }

  /**
   * Room for a record of `len` payload bytes after the staged ones; returns where its payload
   * starts. Records are built in place in one buffer, so a sync is one write of one buffer:
   * two allocations a record and a writev of 200 pieces per 100 one-page commits cost more
   * than the fdatasync they shared (1.0 us a commit to append and 3-5 us to sync, against
   * 2 us a commit for a raw write and fsync of the same bytes).
   */
  private reserve(len: number): number {
    const need = this.used + HEADER + len;
    if (need > this.staged.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.staged.length * 2));
      this.staged.copy(grown, 0, 0, this.used);
      this.staged = grown;
    }
    this.staged.writeUInt32LE(len, this.used);
    this.lastLen = len;
    return this.used + HEADER;
  }

  /** Ends the record whose payload starts at `at` (just reserved): it is staged (its CRC is filled in as it is written, for the file it goes to). */
  private seal(at: number): void {
    this.used = at + this.lastLen;
    this.records++;
  }

  /**
   * Makes everything appended so far durable: one write and one fdatasync for all of it.
   * Both run on this thread, blocking it for the sync (as Redis's appendfsync always does):
   * commits that arrive meanwhile wait in the socket and make the next group. Through the
   * thread pool (a write, then an fdatasync, each a round trip of thread wake-ups) the
   * page server acknowledged fewer commits: measured here with two nodes, 1,650 -> 2,400
   * awaited 'disk' transfers/s and 6,700 -> 9,000 with 16 in flight each. A disk that takes
   * seconds to sync now also delays this page server's lease answers, so the cluster sees
   * it as stalled: it is, for every commit that waits on it.
   */
  sync(): Promise<void> {
    const run = (this.syncing ?? Promise.resolve()).then(() => this.syncOnce());
    // The chain the next sync waits on never rejects: a failure is the caller's of `run`
    // (a chain that rejected with nobody on it was an unhandled rejection on a full disk).
    const settled: Promise<void> = run.then(
      () => undefined,
      () => undefined,
    );
    this.syncing = settled;
    void settled.then(() => {
      if (this.syncing === settled) this.syncing = undefined;
    });
    return run;
  }

  /**
   * Writes and syncs what is staged. On failure (a full disk) everything stays staged, to be
   * written again whole from the same place by the next sync: after a failed fdatasync the
   * kernel may have dropped the dirty pages, so only writing them again makes them durable.
   */
  private async syncOnce(): Promise<void> {
    if (this.used === GROUP_BYTES) return;
    const bytes = this.used;
    const fd = this.fd;
    // All calls block: no record is appended before the buffer is reset below.
    this.makeRoom(this.bytes + bytes);
    this.sealGroup(bytes);
    this.fillCrcs(bytes);
    writeAll(fd, this.staged, bytes, this.bytes);
    fs.fdatasyncSync(fd);
    this.synced += this.records;
    this.used = GROUP_BYTES;
    this.records = 0;
    // A burst (a backup's whole pages, a rebase) may have grown the buffer: give it back.
    if (this.staged.length > STAGED_KEEP_MAX) this.staged = Buffer.allocUnsafe(1 << 16);
    this.bytes += bytes;
    this.syncs++;
  }

  /**
   * Fills in the group record in front of the first `bytes` staged bytes, naming the file's
   * size (made room for and synced first): a file found shorter was cut (the top of this file).
   */
  private sealGroup(bytes: number): void {
    this.staged.writeUInt32LE(GROUP_BYTES - HEADER, 0);
    this.staged[HEADER] = GROUP;
    this.staged.writeUInt32LE(bytes, HEADER + 1);
    putU64(this.staged, HEADER + 5, this.size);
  }

  /** The CRCs of the first `bytes` staged bytes' records, for the current file. */
  private fillCrcs(bytes: number): void {
    const b = this.staged;
    for (let at = 0; at < bytes; ) {
      const len = b.readUInt32LE(at);
      const from = at + HEADER;
      b.writeUInt32LE(len <= SMALL_RECORD ? crc32Small(b, from, from + len, this.seed) : zlib.crc32(b.subarray(from, from + len), this.seed), at + 4);
      at += HEADER + len;
    }
  }

  /** Records per fdatasync so far. */
  get recordsPerSync(): number {
    return this.syncs ? this.synced / this.syncs : 0;
  }

  /**
   * Starts a new file and ends the current one (its END naming the new one, synced): records
   * appended from now on (and any not yet written) go there. Call it when the store holds
   * every change appended so far, then flush the store; the function returned retires the
   * files before the one the store's mark names once that flush is done (after any write to
   * them still under way). Throws StoreError, with the current file still in use, when the
   * new file or the END cannot be written.
   */
  rotate(): () => Promise<void> {
    const old = this.seq;
    const oldFd = this.fd;
    // The next file first, then the END naming it (log_mark.ts: a crash between leaves a file
    // that is set aside). Both synced before any record of the next file can be.
    let next: { fd: number; id: Buffer; size: number };
    try {
      next = this.startFile(old + 1);
    } catch (e) {
      throw new StoreError(`starting the commit log file ${this.file(old + 1)} failed: ${(e as Error).message}. Check the disk (space, permissions)`, { cause: e });
    }
    const end = endRecord(this.seed, next.id);
    try {
      writeAll(oldFd, end, end.length, this.bytes);
      fs.fdatasyncSync(oldFd);
    } catch (e) {
      fs.closeSync(next.fd);
      throw new StoreError(`ending the commit log file ${this.file(old)} failed: ${(e as Error).message}. Check the disk (space, permissions)`, { cause: e });
    }
    this.fd = next.fd;
    this.id = next.id;
    this.size = next.size;
    this.seq = old + 1;
    this.seed = seedOf(this.seq);
    this.bytes = HEADER_BYTES;
    return async () => {
      await this.syncing?.catch(() => undefined);
      fs.closeSync(oldFd);
      // Only files before the one the store's mark names: those the store holds all of
      // (after a flush that failed, or none, that is fewer than the files before this one).
      const mark = decodeMark(this.dir, this.store.logMark);
      for (const f of logFiles(this.dir)) {
        if (!mark || f.seq >= Math.min(mark.seq, old + 1)) continue;
        const file = path.join(this.dir, f.name);
        // A retired file's name need not survive a crash: either way it holds only what the store does.
        if (f.seed !== null) fs.renameSync(file, path.join(this.dir, `spare-${f.seq}.wal`));
        else fs.rmSync(file, { force: true });
      }
      // Those with the most blocks written are kept: a file written over saves its syncs the
      // journal only as far as it reaches (and every file is a step long, mostly holes).
      const spares = fs
        .readdirSync(this.dir)
        .filter((f) => SPARE.test(f))
        .map((f) => ({ f, blocks: fs.statSync(path.join(this.dir, f)).blocks }))
        .sort((a, b) => b.blocks - a.blocks);
      for (const { f } of spares.slice(SPARES)) fs.rmSync(path.join(this.dir, f), { force: true });
    };
  }

  /** Writes what is staged (not synced: nothing of it was acknowledged) and the file's END, and closes it. */
  close(): void {
    this.appendEnd();
    this.makeRoom(this.bytes + this.used);
    this.sealGroup(this.used);
    this.fillCrcs(this.used);
    writeAll(this.fd, this.staged, this.used, this.bytes);
    this.used = GROUP_BYTES;
    this.records = 0;
    fs.closeSync(this.fd);
  }

  private appendEnd(): void {
    const at = this.reserve(1);
    this.staged[at] = END;
    this.seal(at);
  }
}

/**
 * Makes a file end at `at` (after its last whole record), durably: an END naming the next
 * file's id, or a cut for the first format. A file with steps has room for it (makeRoom).
 */
function endFile(file: string, seed: number | null, at: number, next: Buffer, step: number | undefined): void {
  try {
    const fd = fs.openSync(file, 'r+');
    try {
      if (seed === null) fs.ftruncateSync(fd, at);
      else {
        const end = endRecord(seed, next);
        // Never past its size: a file grown to another size would read as cut short.
        if (step !== undefined && at + end.length > fs.fstatSync(fd).size) fs.ftruncateSync(fd, Math.ceil((at + end.length) / step) * step);
        writeAll(fd, end, end.length, at);
      }
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    throw new StoreError(`ending the commit log file ${file} after its replay failed: ${(e as Error).message}. Check the disk (space, permissions)`, { cause: e });
  }
}

/** An END record for a file whose CRC seed is `seed`: naming the next file's id (linked), or nothing (a clean close). */
function endRecord(seed: number, next?: Buffer): Buffer {
  const end = Buffer.alloc(HEADER + 1 + (next ? LOG_ID_BYTES : 0));
  end.writeUInt32LE(end.length - HEADER, 0);
  end[HEADER] = END;
  next?.copy(end, HEADER + 1);
  end.writeUInt32LE(zlib.crc32(end.subarray(HEADER), seed), 4);
  return end;
}

/** Writes the first `len` bytes of `b` at `position`: a write may take fewer bytes than asked (a disk filling up). */
function writeAll(fd: number, b: Buffer, len: number, position: number): void {
  for (let at = 0; at < len; ) at += fs.writeSync(fd, b, at, len - at, position + at);
}
