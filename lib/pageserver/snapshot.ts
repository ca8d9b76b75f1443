// A page store's image at one global time, in one file (`dsm snapshot`, `dsm restore`).
//
// Format version 2, little-endian:
//   header   'DSMSNAP\0' | u32 format version | u32 page size | u64 region size | u64 global time | u64 records
//   cluster  u32 bytes | the JSON of the cluster identity the heap is of ({ id, foundedAt, from }; no bytes: none known)
//   records  u32 page | u32 kind (0: the page follows, 1: missing, nothing follows) | u64 version | [page size bytes]
//            in increasing page order; pages never written are not recorded (they are zeros)
//   trailer  'DSMSEND\0' | u64 records | SHA-256 of every byte before the trailer
// The file is written under a temporary name and renamed when complete, and a restore checks
// the whole file before it makes anything, then builds the store aside and renames it into
// place: a damaged file is refused, never loaded halfway. The cluster goes into the restored
// store's record (cluster_record.ts), so that the store, started with peers, joins only its
// own cluster (or one founded again from a store of it) as the store it came from would: a
// store without it joined any cluster, whose heap replaced the restored one. Version 1 (no
// cluster) is still read.
import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { setImmediate as turn } from 'node:timers/promises';
import { PageStore, type Geometry, type ViewPage } from './store';
import { SnapshotError } from './errors';
import { putU64, syncDir, u64 } from './store_dir';
import { ClusterRecord } from './cluster_record';
import type { ClusterIdentity } from '../service/cluster_identity';

/** The snapshot format this code writes; it reads this one and version 1. */
export const SNAPSHOT_VERSION = 2;
/** The longest cluster section a reader takes (an identity's JSON is under 150 bytes). */
const CLUSTER_MAX = 1024;
const MAGIC = Buffer.from('DSMSNAP\0');
const END = Buffer.from('DSMSEND\0');
const HEADER = 40;
const RECORD = 16;
const TRAILER = 48;
const BATCH = 512;
const CHUNK = 1 << 20;

/** Progress of a snapshot write or restore: pages done of the total, and the phase. */
export interface SnapshotProgress {
  phase: 'writing' | 'checking' | 'restoring';
  done: number;
  total: number;
}

/** What a snapshot holds. */
export interface SnapshotInfo {
  time: number;
  /** Pages recorded (missing ones included). */
  pages: number;
  geometry: Geometry;
  bytes: number;
  /** The cluster whose heap it is (undefined: not known, or a version 1 file). */
  cluster?: ClusterIdentity;
}

/**
 * The bytes of a snapshot of the store's durable image (flush first for the latest commits),
 * in chunks of about 1 MiB, from one consistent view taken at the first `next()`: the file
 * format, for a page server to send over the network (`saveSnapshot` writes them on the other
 * side). The view stays open until the generator finishes or is returned early.
 */
export async function* snapshotChunks(store: PageStore, onProgress?: (p: SnapshotProgress) => void, cluster?: ClusterIdentity): AsyncGenerator<Buffer, SnapshotInfo> {
  const view = store.openView();
  try {
    const { pageSize, regionSize } = view.geometry;
    const hash = createHash('sha256');
    let buf = Buffer.alloc(CHUNK + RECORD + pageSize);
    let used = 0;
    let bytes = 0;
    const take = (): Buffer => {
      const out = buf.subarray(0, used);
      hash.update(out);
      bytes += used;
      // The consumer owns what it was given: the next chunk goes into a new buffer.
      buf = Buffer.alloc(buf.length);
      used = 0;
      return out;
    };
    MAGIC.copy(buf, 0);
    buf.writeUInt32LE(SNAPSHOT_VERSION, 8);
    buf.writeUInt32LE(pageSize, 12);
    putU64(buf, 16, regionSize);
    putU64(buf, 24, view.time);
    putU64(buf, 32, view.count);
    const named = cluster ? Buffer.from(JSON.stringify({ id: cluster.id, foundedAt: cluster.foundedAt, from: cluster.from })) : Buffer.alloc(0);
    buf.writeUInt32LE(named.length, HEADER);
    named.copy(buf, HEADER + 4);
    used = HEADER + 4 + named.length;
    let n = 0;
    for (const p of view.pages()) {
      buf.writeUInt32LE(p.page, used);
      buf.writeUInt32LE(p.data ? 0 : 1, used + 4);
      putU64(buf, used + 8, p.version);
      used += RECORD;
      if (p.data) {
        buf.set(p.data, used);
        used += pageSize;
      }
      n++;
      if (used >= CHUNK) {
        yield take();
        onProgress?.({ phase: 'writing', done: n, total: view.count });
      }
    }
    if (n !== view.count) throw new SnapshotError(`the store view yielded ${n} pages where it counted ${view.count}; the store is damaged`);
    const body = take();
    const trailer = Buffer.alloc(TRAILER);
    END.copy(trailer, 0);
    putU64(trailer, 8, n);
    hash.digest().copy(trailer, 16);
    bytes += TRAILER;
    yield Buffer.concat([body, trailer]);
    onProgress?.({ phase: 'writing', done: n, total: view.count });
    return { time: view.time, pages: n, geometry: view.geometry, bytes, ...(cluster ? { cluster } : {}) };
  } finally {
    view.close();
  }
}

/** Writes `chunks` to `file` under a temporary name, synced and renamed into place once `verify` passes; nothing is left otherwise. */
async function writeAtomically(chunks: AsyncIterable<Uint8Array>, file: string, verify: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'w');
    for await (const chunk of chunks) fs.writeSync(fd, chunk);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    await verify(tmp);
    fs.renameSync(tmp, file);
    syncDir(path.dirname(path.resolve(file)));
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    if (e instanceof SnapshotError) throw new SnapshotError(e.message.split(tmp).join(file), { cause: e });
    throw new SnapshotError(`writing the snapshot ${file} failed: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Writes snapshot bytes received from elsewhere (a page server's `snapshotChunks`, sent over
 * the network) to `file`: checked whole before it is renamed into place, so the file appears
 * complete and intact or not at all. Throws SnapshotError otherwise.
 */
export async function saveSnapshot(chunks: AsyncIterable<Uint8Array>, file: string): Promise<SnapshotInfo> {
  let info: SnapshotInfo | undefined;
  await writeAtomically(chunks, file, async (tmp) => {
    info = await checkSnapshot(tmp);
  });
  return info!;
}

/**
 * Writes the store's durable image (flush first for the latest commits) to `file`, streaming
 * from one consistent view while the store goes on applying. The file appears complete or not at all.
 */
export async function writeSnapshot(store: PageStore, file: string, onProgress?: (p: SnapshotProgress) => void, cluster?: ClusterIdentity): Promise<SnapshotInfo> {
  const chunks = snapshotChunks(store, onProgress, cluster);
  let info: SnapshotInfo | undefined;
  // Between chunks the store goes on: the event loop gets a turn after each.
  async function* paced(): AsyncGenerator<Buffer> {
    for (;;) {
      const r = await chunks.next();
      if (r.done) {
        info = r.value;
        return;
      }
      yield r.value;
      await turn();
    }
  }
  try {
    await writeAtomically(paced(), file, async () => undefined);
  } finally {
    // An early failure leaves the generator suspended: closing it releases the store's view.
    await chunks.return(undefined as never);
  }
  return info!;
}

/** Why the snapshot `file` cannot be read, from the error of the call that failed. */
function unreadable(file: string, e: unknown): SnapshotError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new SnapshotError(`the snapshot ${file} does not exist; check the path of the file dsm snapshot wrote`, { cause: e });
  if (code === 'EACCES' || code === 'EPERM') return new SnapshotError(`cannot read the snapshot ${file}: permission denied; run as a user who may read it, or copy it somewhere readable`, { cause: e });
  return new SnapshotError(`cannot read the snapshot ${file}: ${(e as Error).message}`, { cause: e });
}

/** Reads a snapshot file front to back, hashing what it reads; every shortfall is a SnapshotError. */
class SnapshotReader {
  private readonly fd: number;
  private readonly buf = Buffer.alloc(CHUNK);
  private start = 0;
  private end = 0;
  private pos = 0;
  readonly size: number;
  readonly hash: Hash = createHash('sha256');

  constructor(private readonly file: string) {
    // Checked before opening: Linux opens a directory for reading, and the first read failed
    // with a bare EISDIR; a FIFO would block the open.
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch (e) {
      throw unreadable(file, e);
    }
    if (st.isDirectory()) throw new SnapshotError(`${file} is a directory, not a snapshot file; give the path of the file dsm snapshot wrote (the file itself, not its directory)`);
    if (!st.isFile()) throw new SnapshotError(`${file} is not a regular file; give the snapshot file that dsm snapshot wrote`);
    try {
      this.fd = fs.openSync(file, 'r');
      this.size = fs.fstatSync(this.fd).size;
    } catch (e) {
      throw unreadable(file, e);
    }
  }

  /** The next `n` bytes (a view valid until the next call), hashed unless `hashed` is false. */
  take(n: number, hashed = true): Buffer {
    if (this.pos + n > this.size) throw this.bad(`it is truncated (${this.size} bytes; more expected at byte ${this.pos})`);
    if (this.end - this.start < n) {
      this.buf.copy(this.buf, 0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
      while (this.end < n) {
        let got: number;
        try {
          got = fs.readSync(this.fd, this.buf, this.end, this.buf.length - this.end, this.pos + this.end);
        } catch (e) {
          throw unreadable(this.file, e);
        }
        if (got === 0) throw this.bad('it is truncated (it shrank while being read)');
        this.end += got;
      }
    }
    const out = this.buf.subarray(this.start, this.start + n);
    this.start += n;
    this.pos += n;
    if (hashed) this.hash.update(out);
    return out;
  }

  get offset(): number {
    return this.pos;
  }

  bad(why: string): SnapshotError {
    return new SnapshotError(`the snapshot ${this.file} cannot be restored: ${why}. Nothing was made; take a new snapshot, or use an intact copy`);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

interface Header {
  geometry: Geometry;
  time: number;
  count: number;
  cluster?: ClusterIdentity;
}

function readHeader(r: SnapshotReader): Header {
  if (r.size < HEADER + TRAILER) throw r.bad(`it is truncated (${r.size} bytes)`);
  const h = r.take(HEADER);
  if (!MAGIC.equals(h.subarray(0, 8))) throw r.bad('it is not a node-dsm snapshot');
  const version = h.readUInt32LE(8);
  if (version !== SNAPSHOT_VERSION && version !== 1) {
    throw r.bad(`it has format version ${version}, and this version of node-dsm reads formats 1 to ${SNAPSHOT_VERSION}; restore it with the node-dsm version that wrote it`);
  }
  const pageSize = h.readUInt32LE(12);
  const regionSize = u64(h, 16);
  const time = u64(h, 24);
  const count = u64(h, 32);
  if (pageSize < 4096 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0 || !Number.isSafeInteger(regionSize) || regionSize <= 0 || regionSize % pageSize !== 0) {
    throw r.bad(`its header is damaged (page size ${pageSize}, region size ${regionSize})`);
  }
  const header: Header = { geometry: { pageSize, regionSize }, time, count };
  if (version === 1) return header;
  const n = r.take(4).readUInt32LE(0);
  if (n === 0) return header;
  if (n > CLUSTER_MAX) throw r.bad(`its header is damaged (a cluster section of ${n} bytes)`);
  const cluster = parseCluster(r.take(n).toString('utf8'));
  if (!cluster) throw r.bad('its header is damaged (the cluster it names is unreadable)');
  return { ...header, cluster };
}

/** The cluster identity in a snapshot's header; undefined when it is not one. */
function parseCluster(text: string): ClusterIdentity | undefined {
  let v: Partial<ClusterIdentity> | null;
  try {
    v = JSON.parse(text) as Partial<ClusterIdentity> | null;
  } catch {
    return undefined;
  }
  if (!v || typeof v.id !== 'string' || !/^[0-9a-f]{1,64}$/.test(v.id) || !Number.isSafeInteger(v.foundedAt) || v.foundedAt! < 0 || typeof v.from !== 'string' || v.from.length > 64) return undefined;
  return { id: v.id, foundedAt: v.foundedAt!, from: v.from };
}

/**
 * Reads every record of the snapshot, checking each and the trailer; `each` gets the records
 * in batches (their data copied). Throws SnapshotError at the first thing out of place.
 */
async function readRecords(r: SnapshotReader, h: Header, each: (batch: ViewPage[]) => Promise<void> | void, progress: (done: number) => void): Promise<void> {
  const { pageSize, regionSize } = h.geometry;
  const numPages = regionSize / pageSize;
  let prev = -1;
  let batch: ViewPage[] = [];
  for (let n = 0; n < h.count; n++) {
    const rec = r.take(RECORD);
    const page = rec.readUInt32LE(0);
    const kind = rec.readUInt32LE(4);
    const version = u64(rec, 8);
    if (page >= numPages || page <= prev) throw r.bad(`record ${n} names page ${page} out of order or outside the region`);
    if (kind > 1) throw r.bad(`record ${n} has an unknown kind ${kind}`);
    if (version < 1 || version > h.time) throw r.bad(`record ${n} (page ${page}) has version ${version}, outside 1..${h.time}`);
    prev = page;
    const data = kind === 0 ? new Uint8Array(r.take(pageSize)) : null;
    batch.push({ page, version, data });
    if (batch.length === BATCH) {
      await each(batch);
      batch = [];
      progress(n + 1);
    }
  }
  if (batch.length) await each(batch);
  const digest = r.hash.digest();
  const t = r.take(TRAILER, false);
  if (!END.equals(t.subarray(0, 8)) || u64(t, 8) !== h.count) throw r.bad('its trailer is missing or damaged (the file is truncated or was cut and joined)');
  if (!digest.equals(t.subarray(16, 48))) throw r.bad('its checksum does not match (the file is damaged)');
  if (r.offset !== r.size) throw r.bad(`${r.size - r.offset} bytes follow its trailer`);
  progress(h.count);
}

/** Checks a snapshot file whole (every record and its checksum) and returns what it holds; throws SnapshotError otherwise. */
export async function checkSnapshot(file: string, onProgress?: (p: SnapshotProgress) => void): Promise<SnapshotInfo> {
  const r = new SnapshotReader(file);
  try {
    const h = readHeader(r);
    await readRecords(r, h, () => turn().then(() => undefined), (done) => onProgress?.({ phase: 'checking', done, total: h.count }));
    return { time: h.time, pages: h.count, geometry: h.geometry, bytes: r.size, ...(h.cluster ? { cluster: h.cluster } : {}) };
  } finally {
    r.close();
  }
}

/**
 * Makes a new page-store directory `dir` from a snapshot file. The file is checked whole first;
 * the store is built in a directory beside `dir` and renamed into place when complete. Throws
 * SnapshotError for a damaged, truncated or other-version file, or a `dir` that is not empty.
 */
export async function restoreSnapshot(file: string, dir: string, onProgress?: (p: SnapshotProgress) => void): Promise<SnapshotInfo> {
  dir = path.resolve(dir);
  const notEmpty = (): boolean => {
    try {
      return fs.readdirSync(dir).length > 0;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw new SnapshotError(`cannot restore into ${dir}: ${(e as Error).message}`, { cause: e });
    }
  };
  const refuseDir = () => new SnapshotError(`cannot restore into ${dir}: it is not empty. Restore into a new or empty directory (nothing was changed)`);
  if (notEmpty()) throw refuseDir();
  const info = await checkSnapshot(file, onProgress);
  const tmp = `${dir}.restore-${process.pid}-${randomBytes(4).toString('hex')}`;
  const r = new SnapshotReader(file);
  let store: PageStore | undefined;
  try {
    const h = readHeader(r);
    store = await PageStore.open(tmp, h.geometry);
    const s = store;
    let pending: ViewPage[] = [];
    // The last batch is written with the time, so the store's time appears with its last page.
    await readRecords(
      r,
      h,
      async (batch) => {
        if (pending.length) await s.load(pending);
        pending = batch;
      },
      (done) => onProgress?.({ phase: 'restoring', done, total: h.count }),
    );
    await s.load(pending, h.time);
    await s.close();
    store = undefined;
    // Members unknown: started alone it founds the cluster again from the store; with peers it joins only a cluster that holds its heap.
    if (h.cluster) ClusterRecord.create(tmp, h.cluster);
    if (notEmpty()) throw refuseDir();
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    fs.renameSync(tmp, dir);
    syncDir(path.dirname(dir));
    return info;
  } catch (e) {
    if (store) await store.close().catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
    if (e instanceof SnapshotError) throw e;
    throw new SnapshotError(`restoring ${file} into ${dir} failed: ${(e as Error).message} (nothing was made)`, { cause: e });
  } finally {
    r.close();
  }
}
