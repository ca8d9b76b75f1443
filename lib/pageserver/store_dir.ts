// The page store's directory on disk: its layout record (what kind of store, which layout
// version, which region geometry), the owner lock, and opening LMDB only on a file that is
// an LMDB environment (LMDB trusts its file: anything else crashes the process). store.ts
// keeps the pages; this file decides whether a directory is a store it may open.
//
// One owner at a time: two writers would each apply commits over a stale image. The owner
// holds an exclusive lock on owner.pid (flock: the kernel drops it when the process dies,
// however it dies) and writes its pid there for the message another claimant shows. A pid
// alone went stale: a killed owner not yet reaped (a zombie) still looked alive, and after a
// reboot its pid could belong to any process.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { open, type Database, type RootDatabase } from 'lmdb';
import { loadNative } from '../native';
import { StoreError } from './errors';

/**
 * The on-disk layout this code writes. It reads layout 1 too (no log mark yet): its log is
 * replayed unchecked, and the first flush with the log open writes the mark and this layout.
 * And layout 2: its log files have no size steps (wal.ts), read without that check; its
 * first flush with the log open names a file with steps, and writes layout 3. Layout 3 is
 * there so that an older node-dsm refuses the store by its layout version instead of
 * reading a header with a step as a log damaged at its start. Layout 4's group records name
 * their file's size (wal.ts); a layout-3 log is read without that check. Any other is refused.
 */
export const LAYOUT_VERSION = 4;
const MAGIC = Buffer.from('DSMPAGES');
// LMDB's own page size for the store (the overflow arithmetic in store.ts depends on it).
const LMDB_PAGE = 4096;
const LMDB_MAGIC = 0xbeefc0de;

/** The region a store holds: its page size and its size in bytes. */
export interface Geometry {
  pageSize: number;
  regionSize: number;
}

export const u64 = (b: Uint8Array, at: number): number => {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return dv.getUint32(at, true) + dv.getUint32(at + 4, true) * 2 ** 32;
};
export const putU64 = (b: Uint8Array, at: number, v: number): void => {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  dv.setUint32(at, v >>> 0, true);
  dv.setUint32(at + 4, Math.floor(v / 2 ** 32), true);
};

// Layout (LAYOUT_VERSION 4), four named LMDB databases in the directory's data.mdb:
//   body     u32 page -> the page minus its last TAIL (24) bytes
//   head     u32 page -> u64 version | the page's last TAIL bytes
//   missing  u32 page -> u64 the version the store needs a whole copy of (no body/head then)
//   meta     'layout' -> magic | u32 layout version | u32 page size | u64 region size
//            'time'   -> u64 the global time of the last commit in the image
//            'log'    -> the log mark: which commit log file the image continues in, and
//                        how far (log_mark.ts; none until the first flush with the log open)
// Layout 3 is the same, its log's group records without sizes; layout 2 its log files without
// size steps too (wal.ts); layout 1 without 'log' too.
// Why split a page: LMDB keeps a value over ~2 KiB in overflow pages with a header, so a
// 4,096-byte value takes two 4 KiB pages. Measured with lmdb 3.5 on this 2-vCPU machine (16,384
// pages loaded, then 300 synced transactions of 64 updates of random pages; two runs each):
//   whole 4,096-byte values:     8,258 bytes of data.mdb a page (8,380 after the updates), 9,700-14,500 pages/s
//   4,072 bytes + 32-byte head:  4,187 bytes a page (4,280 after the updates),             13,500-20,400 pages/s
// A value of up to 4,072 bytes takes one overflow page (4,076 takes two), and the heads pack
// about 90 to a leaf page, so the split costs ~2% over the raw pages instead of ~100%, and
// writes about half the pages. A larger page size (k x 4 KiB) takes k overflow pages the same way.
// The file's high-water mark also follows the largest transaction (LMDB copies on write and
// reuses freed pages later): flushing a backlog of N pages at once needs room for N more.
/** The bytes of a page its head record keeps (see the layout above). */
export const TAIL = 24;

/** The head record of a page at `version` with contents `data`. */
export function headRecord(version: number, data: Uint8Array): Buffer {
  const h = Buffer.alloc(8 + TAIL);
  putU64(h, 0, version);
  h.set(data.subarray(data.length - TAIL), 8);
  return h;
}

/**
 * Puts page `page` back together into `into` (a page's bytes) from its body (only its first
 * body-length bytes are read: lmdb's fast reads hand out a window on a larger buffer) and its
 * head record. Throws StoreError when the body is missing or of the wrong length.
 */
export function joinPage(dir: string, page: number, body: Uint8Array | undefined, head: Uint8Array, into: Uint8Array): void {
  joinTail(head, into);
  joinBody(dir, page, body, into);
}

/** joinPage's first half: the head record's bytes of the page. */
export function joinTail(head: Uint8Array, into: Uint8Array): void {
  into.set(head.subarray(8, 8 + TAIL), into.length - TAIL);
}

/** joinPage's second half: the body's bytes of the page. */
export function joinBody(dir: string, page: number, body: Uint8Array | undefined, into: Uint8Array): void {
  const n = into.length - TAIL;
  if (!body || body.length !== n) throw new StoreError(`the page store in ${dir} is damaged (page ${page} has no body); restore it from a snapshot`);
  into.set(body.subarray(0, n));
}

export function checkGeometry(g: Geometry): void {
  const { pageSize, regionSize } = g ?? ({} as Geometry);
  if (!Number.isSafeInteger(pageSize) || pageSize < 4096 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    throw new StoreError(`pageSize must be a power of two from 4096 to 65536, got ${String(pageSize)}`);
  }
  if (!Number.isSafeInteger(regionSize) || regionSize <= 0 || regionSize % pageSize !== 0 || regionSize / pageSize > 2 ** 32) {
    throw new StoreError(`regionSize must be a positive multiple of the page size (${pageSize}), got ${String(regionSize)}`);
  }
}

export function layoutRecord(g: Geometry): Buffer {
  const b = Buffer.alloc(24);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(LAYOUT_VERSION, 8);
  b.writeUInt32LE(g.pageSize, 12);
  putU64(b, 16, g.regionSize);
  return b;
}

// LMDB trusts its file: opening something else crashes the process, and so does a file cut
// short (its map reaches past the end: SIGBUS on the first read there). Both meta pages must
// carry LMDB's magic, and the file must hold every page they name, before it is handed over.
// Meta page: LMDB's 24-byte page header, then magic u32 @24, version u32, address, map size,
// two 48-byte database records @48, last page number u64 @144, transaction id u64 @152.
const META_LAST_PAGE = 144;

/** Why `file` is not a whole LMDB data file: 'foreign' (not LMDB at all) or what is damaged; undefined when whole. */
function lmdbDamage(file: string): string | undefined {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const b = Buffer.alloc(META_LAST_PAGE + 8);
    let metas = 0;
    let last = 0;
    for (const at of [0, LMDB_PAGE]) {
      if (fs.readSync(fd, b, 0, b.length, at) !== b.length || b.readUInt32LE(24) !== LMDB_MAGIC) continue;
      metas++;
      last = Math.max(last, u64(b, META_LAST_PAGE));
    }
    if (metas === 0) return 'foreign';
    if (metas < 2) return `one of its two meta pages is missing or damaged (${size} bytes)`;
    if ((last + 1) * LMDB_PAGE > size) return `it is cut short: ${size} bytes, where its last page ends at ${(last + 1) * LMDB_PAGE}`;
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

const OWNER = 'owner.pid';
// A claimant waits this long for a holder to let go: a page server killed a moment ago
// releases its lock only once the kernel has torn its memory down.
const CLAIM_WAIT_MS = 3000;
// The directories this process has open, and the descriptor holding each one's lock.
const openHere = new Map<string, number>();

const pidIn = (file: string): number => {
  try {
    return Number.parseInt(fs.readFileSync(file, 'utf8'), 10) || 0;
  } catch {
    return 0;
  }
};

export async function claim(dir: string): Promise<void> {
  const file = path.join(dir, OWNER);
  const deadline = Date.now() + CLAIM_WAIT_MS;
  for (;;) {
    if (openHere.has(dir)) throw new StoreError(`the page store in ${dir} is already open in this process; use that instance, or close it first`);
    let fd: number;
    try {
      fd = loadNative().lockFile(file);
    } catch (e) {
      throw new StoreError(`cannot lock the page store in ${dir}: ${(e as Error).message}`, { cause: e });
    }
    if (fd >= 0) {
      try {
        fs.ftruncateSync(fd, 0);
        fs.writeSync(fd, String(process.pid), 0);
      } catch (e) {
        loadNative().unlockFile(fd);
        throw new StoreError(`cannot write ${file}: ${(e as Error).message}`, { cause: e });
      }
      openHere.set(dir, fd);
      return;
    }
    if (Date.now() >= deadline) {
      const pid = pidIn(file);
      throw new StoreError(`the page store in ${dir} is in use by ${pid ? `process ${pid}` : 'another process'}; stop that process first, or give this one another directory`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function release(dir: string): void {
  const fd = openHere.get(dir);
  if (fd === undefined) return;
  openHere.delete(dir);
  // The file stays, emptied (unlinking a lock file lets a waiter lock the old file while a
  // newcomer locks a new one).
  try {
    loadNative().unlockFile(fd);
  } catch (e) {
    throw new StoreError(`cannot release the page store in ${dir}: ${(e as Error).message}`, { cause: e });
  }
}

export interface Dbs {
  root: RootDatabase;
  body: Database<Uint8Array, number>;
  head: Database<Uint8Array, number>;
  missing: Database<Uint8Array, number>;
  meta: Database<Uint8Array, string>;
  /** The same body and head, their values handed out in place (see IN_PLACE): for bulk reads only. */
  inPlace: { body: Database<Uint8Array, number>; head: Database<Uint8Array, number> };
}

/**
 * Values handed out in place instead of copied: a view of LMDB's map (valid while the read
 * transaction lasts) or of lmdb-js's one shared value buffer (valid until the next read).
 * For bulk reads that copy each value at once. Copying every page's body into a new Buffer
 * first was most of a page server's start on a large store: a 256 MiB store read 156-181
 * ms that way, 42-44 ms in place.
 */
const IN_PLACE = {
  encode: (v: Uint8Array) => v,
  decode: (b: Uint8Array, size: number) => (b.length === size ? b : b.subarray(0, size)),
};
// lmdb's typings leave `encoder` out of a database's options; lmdb reads it there.
const encoderOption: object = { encoder: IN_PLACE };

function openEnv(dir: string, create: boolean): Dbs {
  const root = open({ path: dir, noSubdir: false, compression: false, overlappingSync: false, noSync: false, pageSize: LMDB_PAGE, maxDbs: 8 });
  const opt = { encoding: 'binary' as const, compression: false, create };
  const db = (name: string) => root.openDB<Uint8Array, number>({ name, keyEncoding: 'uint32', ...opt });
  const meta = root.openDB<Uint8Array, string>({ name: 'meta', ...opt });
  const inPlaceOpt = { compression: false, create, ...encoderOption };
  const inPlace = (name: string) => root.openDB<Uint8Array, number>({ name, keyEncoding: 'uint32', ...inPlaceOpt });
  return { root, body: db('body'), head: db('head'), missing: db('missing'), meta, inPlace: { body: inPlace('body'), head: inPlace('head') } };
}

/**
 * What `dir` holds: nothing yet ('new': missing or empty), or an LMDB environment. Throws
 * StoreError for a directory that holds something else.
 */
export function inspect(dir: string): 'new' | 'lmdb' {
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new StoreError(`cannot read the store directory ${dir}: ${(e as Error).message}`, { cause: e });
  }
  if (entries.length === 0) return 'new';
  const data = path.join(dir, 'data.mdb');
  const damage = fs.existsSync(data) ? lmdbDamage(data) : 'foreign';
  if (damage === 'foreign') {
    throw new StoreError(`${dir} is not a page store (it holds other files); give the page server an empty or new directory, or the directory of an existing store`);
  }
  if (damage) throw new StoreError(`the page store in ${dir} is damaged: ${data}: ${damage}. Restore it from a snapshot (dsm restore --from FILE --dir DIR)`);
  return 'lmdb';
}

/**
 * LMDB's codes for a file that is not what LMDB wrote: MDB_PAGE_NOTFOUND, MDB_CORRUPTED,
 * MDB_PANIC, MDB_VERSION_MISMATCH, MDB_INVALID, MDB_INCOMPATIBLE, MDB_BAD_RSLOT,
 * MDB_BAD_TXN (a write that met one of those), MDB_BAD_VALSIZE, MDB_BAD_DBI.
 */
const LMDB_DAMAGE = new Set([-30797, -30796, -30795, -30794, -30793, -30784, -30783, -30782, -30781, -30780]);

/** What to tell the user after LMDB failed with `e` on the store in `dir`. */
export function lmdbAdvice(e: { code?: unknown }): string {
  return typeof e.code === 'number' && LMDB_DAMAGE.has(e.code)
    ? 'The store is damaged: restore it from a snapshot (dsm restore --from FILE --dir DIR)'
    : 'Check the disk (space, permissions); if it has room and this goes on, the store may be damaged: restore it from a snapshot';
}

/** Opens the LMDB environment in `dir` (which `inspect` found to be one). */
export function openDbs(dir: string): Dbs {
  try {
    return openEnv(dir, false);
  } catch (e) {
    throw new StoreError(`cannot open the page store in ${dir}: ${(e as Error).message}. ${lmdbAdvice(e as { code?: unknown })}`, { cause: e });
  }
}

/**
 * The geometry a page store's layout record names, or a StoreError (not thrown) saying why
 * the environment is not one this code reads: not a page store, or another layout version.
 */
export function readLayout(dbs: Dbs, dir: string): Geometry | StoreError {
  const layout = dbs.meta?.getBinary('layout');
  if (!dbs.body || !dbs.head || !dbs.missing || !layout || !MAGIC.equals(layout.subarray(0, 8))) {
    return new StoreError(`${dir} is an LMDB database but not a page store; give the page server an empty or new directory`);
  }
  const version = layout.readUInt32LE(8);
  if (version < 1 || version > LAYOUT_VERSION) {
    return new StoreError(
      `the page store in ${dir} has layout version ${version}; this version of node-dsm reads layouts 1 to ${LAYOUT_VERSION}. ` +
        'Open it with the node-dsm version that wrote it, take a snapshot (dsm snapshot) and restore it with this one (dsm restore)',
    );
  }
  return { pageSize: layout.readUInt32LE(12), regionSize: u64(layout, 16) };
}

/**
 * The geometry of the store in `dir`, undefined when there is none yet (a missing or empty
 * directory). Throws StoreError for a directory that holds something else.
 */
export async function storedGeometry(dir: string): Promise<Geometry | undefined> {
  if (inspect(dir) === 'new') return undefined;
  const dbs = openDbs(dir);
  try {
    const stored = readLayout(dbs, dir);
    if (stored instanceof StoreError) throw stored;
    return stored;
  } finally {
    await dbs.root.close();
  }
}

/** Makes a new, empty store in `dir`: built aside and renamed into place, so a crash never leaves half a store. */
export async function createStore(dir: string, geometry: Geometry): Promise<void> {
  const tmp = `${dir}.new-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    // Only missing parents recursively: Node's recursive mkdir retries forever where mkdir(2)
    // says ENOENT under an existing parent (a directory in /proc), and the caller hung.
    const parent = path.dirname(tmp);
    if (!fs.existsSync(parent)) fs.mkdirSync(parent, { recursive: true });
    fs.mkdirSync(tmp);
    const dbs = openEnv(tmp, true);
    try {
      await dbs.root.transaction(() => {
        dbs.meta.putSync('layout', layoutRecord(geometry));
        const t = Buffer.alloc(8);
        dbs.meta.putSync('time', t);
      });
    } finally {
      await dbs.root.close();
    }
    // Over a missing or empty directory: rename(2) replaces an empty directory.
    fs.renameSync(tmp, dir);
    syncDir(path.dirname(dir));
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new StoreError(`cannot create a page store in ${dir}: ${(e as Error).message}`, { cause: e });
  }
}

/** Makes a rename or a new file in `dir` durable (a file's fsync covers its data, not its name). */
export function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
