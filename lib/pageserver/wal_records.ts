// The commit log's records (the layout at the top of wal.ts): their kinds and sizes, and
// reading a file back, into the store or only through, as log_mark.ts checks it. Writing
// them is wal.ts.
import zlib from 'node:zlib';
import { StoreError } from './errors';
import { type FileScan, LOG_ID_BYTES } from './log_mark';
import { u64 } from './store_dir';
import type { PageStore } from './store';
import type { ReplayInfo } from './wal';

export const HEADER = 8;
export const COMMIT = 1;
export const PAGE = 2;
export const REBASE = 3;
export const END = 4;
export const GROUP = 5;
export const FILE_HEADER = 6;
/** A header record's bytes: where a file's first group goes. */
export const HEADER_BYTES = HEADER + 1 + LOG_ID_BYTES + 8;
/** A header's payload before steps: its id alone. */
const STEPLESS_HEADER = 1 + LOG_ID_BYTES;
/** A group record's bytes: header, kind, u32 length of the group, u64 the file's size as the group was written. */
export const GROUP_BYTES = HEADER + 13;
/** A group record's bytes in files of layouts 1 to 3: no size. */
const SIZELESS_GROUP_BYTES = HEADER + 5;
/** A group record's first bytes, its payload length (u32), in either form. */
const GROUP_LENGTHS = [GROUP_BYTES, SIZELESS_GROUP_BYTES].map((n) => ({ bytes: n, prefix: Buffer.from([n - HEADER, 0, 0, 0]) }));

/** How a file's records ended (at its END record, at the end of the file, or at a torn, damaged or stale record) and where: the offset after its last whole record. */
type FileEnd = { end: 'end' | 'eof' | 'torn'; at: number };

/**
 * Replays one file (`file`, contents `b`) into the store (`seed`: its records' CRC seed, null
 * for the first format), or only reads it through without `info` (what log_mark.ts checks:
 * its header, step, END, records).
 */
export function replayFile(file: string, b: Buffer, seed: number | null, store: PageStore, info: ReplayInfo | undefined): Omit<FileScan, 'seq' | 'name' | 'size'> {
  const ps = store.geometry.pageSize;
  let at = 0;
  let records = 0;
  let id: Buffer | undefined;
  let step: number | undefined;
  let headerless = seed === null;
  // The largest size a group record names: the file was at least that long when it was written.
  let named = 0;
  const scan = (e: FileEnd, next?: Buffer) => ({ ...e, id, step, next, headerless, records, named });
  while (at < b.length) {
    if (at + HEADER > b.length) return scan(torn(file, b, seed, at));
    const len = b.readUInt32LE(at);
    // Nothing was written here (a file's step is holes until written): the records end, unless
    // synced ones follow (torn says so).
    if (len === 0 && b.readUInt32LE(at + 4) === 0 && seed !== null) return scan({ ...torn(file, b, seed, at), end: 'eof' });
    if (len === 0 || at + HEADER + len > b.length) return scan(torn(file, b, seed, at));
    const payload = b.subarray(at + HEADER, at + HEADER + len);
    const crc = seed === null ? zlib.crc32(payload) : zlib.crc32(payload, seed);
    if (crc !== b.readUInt32LE(at + 4)) return scan(torn(file, b, seed, at));
    const kind = payload[0];
    if (at === 0 && seed !== null) {
      // The header, or none: a file of layout 1 starts with its first group.
      if (kind === FILE_HEADER && (len === STEPLESS_HEADER || len === HEADER_BYTES - HEADER)) {
        id = Buffer.from(payload.subarray(1, 1 + LOG_ID_BYTES));
        if (len > STEPLESS_HEADER) step = u64(payload, 1 + LOG_ID_BYTES);
        at += HEADER + len;
        continue;
      }
      headerless = true;
    }
    if (kind === GROUP && seed !== null && (len === GROUP_BYTES - HEADER || len === SIZELESS_GROUP_BYTES - HEADER)) {
      if (len === GROUP_BYTES - HEADER) named = Math.max(named, u64(payload, 5));
      at += HEADER + len;
      continue;
    }
    if (kind === END && seed !== null && (len === 1 || len === 1 + LOG_ID_BYTES)) {
      return scan({ end: 'end', at }, len > 1 ? Buffer.from(payload.subarray(1)) : undefined);
    }
    if (kind === PAGE && payload.length !== 13 + ps) return scan(torn(file, b, seed, at));
    if (kind !== COMMIT && kind !== PAGE && kind !== REBASE) return scan(torn(file, b, seed, at));
    records++;
    at += HEADER + len;
    if (!info) continue;
    info.records++;
    if (kind === COMMIT) {
      const time = u64(payload, 1);
      const n = payload.readUInt32LE(9);
      const pages = new Uint32Array(n);
      for (let i = 0; i < n; i++) pages[i] = payload.readUInt32LE(13 + i * 4);
      if (time > store.appliedTime) store.apply(time, pages, payload.subarray(13 + n * 4));
    } else if (kind === PAGE) {
      const page = payload.readUInt32LE(1);
      if (store.missingVersion(page) !== undefined) store.putPage(page, u64(payload, 5), payload.subarray(13));
    } else {
      const time = u64(payload, 1);
      const n = payload.readUInt32LE(9);
      const written: Array<{ page: number; version: number }> = [];
      for (let i = 0; i < n; i++) written.push({ page: payload.readUInt32LE(13 + i * 12), version: u64(payload, 17 + i * 12) });
      if (time > store.appliedTime) store.rebase(time, written);
    }
  }
  return scan({ end: 'eof', at });
}

/**
 * The replay of `file` (contents `b`) stops at a record at `at` that is not whole: a torn
 * last write, unless a whole group record of this file follows it (the top of wal.ts).
 */
function torn(file: string, b: Buffer, seed: number | null, at: number): FileEnd {
  if (seed !== null) {
    // Searched for, not stepped through: the rest of a file's step (64 MiB of hole) takes 2 ms so.
    for (const { bytes, prefix } of GROUP_LENGTHS) {
      for (let y = b.indexOf(prefix, at + 1); y >= 0 && y + bytes <= b.length; y = b.indexOf(prefix, y + 1)) {
        if (b[y + HEADER] !== GROUP) continue;
        if (zlib.crc32(b.subarray(y + HEADER, y + bytes), seed) !== b.readUInt32LE(y + 4)) continue;
        throw new StoreError(
          `the commit log ${file} is damaged at byte ${at}: records written and synced after it follow, so commits acknowledged as durable are in and after the damage. ` +
            'Restore the store from a snapshot (dsm restore --from FILE --dir DIR)',
        );
      }
    }
  }
  return { end: 'torn' as const, at };
}
