// The changes a commit record carries (protocol.ts CommitRecord.changes), as the native
// core makes and applies them: per written page, in page order, u64 the version it
// replaces | u32 length | a diff (native/page_diff.h: runs of changed words, or the whole
// page when the length is the page size). The length NOT_CARRIED (no bytes follow) means
// the change was left out: the receiver invalidates its copy.
//
// Which receivers get what (the adaptive rule of the update protocol): diffs go to every
// member, since applying one costs less than the page fetch it saves; whole pages go only
// to the committer's backups, which must hold them, while other members invalidate and
// fetch the page if they ever read it again (a whole page sent to a node that never reads
// it again costs as much as a fetch, for nothing). A page that goes whole to the backups
// (they may lack the version it replaces) comes from the native commit with its diff
// beside it when the diff is small (WHOLE_AND_DIFF): the backups get the whole page, the
// others the diff.

export const NOT_CARRIED = 0xffffffff;
/** Length of a change made here only: the whole page, u32 a diff's length, the diff (native/dsm.h kWholeAndDiff). */
export const WHOLE_AND_DIFF = 0xfffffffe;

/**
 * What a commit's changes look like on the wire, for its backups and for every other member:
 * the backups get everything, the others everything but whole pages; either is left out
 * entirely (the pages invalidated, fetched when needed) past `limit` bytes, so a huge
 * transaction never makes a frame larger than the transport takes.
 */
export function carried(changes: Uint8Array, pageSize: number, limit: number): { backups: Uint8Array; others: Uint8Array } {
  const split = splitWholeAndDiff(changes, pageSize);
  const full = split?.backups ?? changes;
  const backups = full.length <= limit ? full : noneCarried(full);
  const diffs = split?.others ?? backups;
  let others = withoutWholePages(diffs, pageSize) ?? diffs;
  if (others.length > limit) others = noneCarried(others);
  return { backups, others };
}

/**
 * The native commit's changes (with WHOLE_AND_DIFF entries) as the backups get them (the
 * whole pages) and as the others do (the diffs); undefined when there is no such entry.
 */
export function splitWholeAndDiff(changes: Uint8Array, pageSize: number): { backups: Uint8Array; others: Uint8Array } | undefined {
  const list = entries(changes, pageSize);
  let backupBytes = 0;
  let otherBytes = 0;
  for (const { len, diff } of list) {
    const body = len === WHOLE_AND_DIFF ? pageSize : len === NOT_CARRIED ? 0 : len;
    backupBytes += 12 + body;
    otherBytes += 12 + (len === WHOLE_AND_DIFF ? diff : body);
  }
  if (!list.some((e) => e.len === WHOLE_AND_DIFF)) return undefined;
  const backups = new Uint8Array(backupBytes);
  const others = new Uint8Array(otherBytes);
  const bv = new DataView(backups.buffer);
  const ov = new DataView(others.buffer);
  let b = 0;
  let o = 0;
  for (const { at, len, diff } of list) {
    if (len === WHOLE_AND_DIFF) {
      backups.set(changes.subarray(at, at + 8), b);
      bv.setUint32(b + 8, pageSize, true);
      backups.set(changes.subarray(at + 12, at + 12 + pageSize), b + 12);
      b += 12 + pageSize;
      others.set(changes.subarray(at, at + 8), o);
      ov.setUint32(o + 8, diff, true);
      others.set(changes.subarray(at + 16 + pageSize, at + 16 + pageSize + diff), o + 12);
      o += 12 + diff;
    } else {
      const end = at + 12 + (len === NOT_CARRIED ? 0 : len);
      backups.set(changes.subarray(at, end), b);
      others.set(changes.subarray(at, end), o);
      b += end - at;
      o += end - at;
    }
  }
  return { backups, others };
}

/**
 * Each change's offset and length (NOT_CARRIED: no bytes follow). With `pageSize`, a native
 * commit's WHOLE_AND_DIFF entries too (the page, u32 the diff's length, the diff), with
 * their diff's length.
 */
function entries(changes: Uint8Array, pageSize = 0): Array<{ at: number; len: number; diff: number }> {
  const dv = new DataView(changes.buffer, changes.byteOffset, changes.byteLength);
  const out: Array<{ at: number; len: number; diff: number }> = [];
  for (let at = 0; at + 12 <= changes.length; ) {
    const len = dv.getUint32(at + 8, true);
    if (pageSize > 0 && len === WHOLE_AND_DIFF) {
      const diff = dv.getUint32(at + 12 + pageSize, true);
      out.push({ at, len, diff });
      at += 16 + pageSize + diff;
    } else {
      out.push({ at, len, diff: 0 });
      at += 12 + (len === NOT_CARRIED ? 0 : len);
    }
  }
  return out;
}

/** The version each change replaces, in the commit's page order (native commits included). */
export function replacedVersions(changes: Uint8Array, pageSize: number): number[] {
  const dv = new DataView(changes.buffer, changes.byteOffset, changes.byteLength);
  return entries(changes, pageSize).map(({ at }) => dv.getUint32(at, true) + dv.getUint32(at + 4, true) * 2 ** 32);
}

/** `changes` with the changes `drop` picks left out (the versions they replace kept). */
function leaveOut(changes: Uint8Array, list: Array<{ at: number; len: number }>, drop: (len: number) => boolean): Uint8Array {
  const body = (len: number) => (len === NOT_CARRIED ? 0 : len);
  let size = 0;
  for (const e of list) size += 12 + (drop(e.len) ? 0 : body(e.len));
  const out = new Uint8Array(size);
  const ov = new DataView(out.buffer);
  let o = 0;
  for (const { at, len } of list) {
    if (drop(len)) {
      out.set(changes.subarray(at, at + 8), o);
      ov.setUint32(o + 8, NOT_CARRIED, true);
      o += 12;
    } else {
      out.set(changes.subarray(at, at + 12 + body(len)), o);
      o += 12 + body(len);
    }
  }
  return out;
}

/** `changes` with every change left out (the versions they replace kept). */
function noneCarried(changes: Uint8Array): Uint8Array {
  return leaveOut(changes, entries(changes), () => true);
}

/** `changes` with every whole-page change left out, or undefined when it has none. */
export function withoutWholePages(changes: Uint8Array, pageSize: number): Uint8Array | undefined {
  const list = entries(changes);
  if (!list.some((e) => e.len === pageSize)) return undefined;
  return leaveOut(changes, list, (len) => len === pageSize);
}
