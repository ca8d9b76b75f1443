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
// it again costs as much as a fetch, for nothing).

export const NOT_CARRIED = 0xffffffff;

/**
 * What a commit's changes look like on the wire, for its backups and for every other member:
 * the backups get everything, the others everything but whole pages; either is left out
 * entirely (the pages invalidated, fetched when needed) past `limit` bytes, so a huge
 * transaction never makes a frame larger than the transport takes.
 */
export function carried(changes: Uint8Array, pageSize: number, limit: number): { backups: Uint8Array; others: Uint8Array } {
  const backups = changes.length <= limit ? changes : noneCarried(changes);
  let others = withoutWholePages(backups, pageSize) ?? backups;
  if (others.length > limit) others = noneCarried(others);
  return { backups, others };
}

/** Each change's offset and length (NOT_CARRIED: no bytes follow). */
function entries(changes: Uint8Array): Array<{ at: number; len: number }> {
  const dv = new DataView(changes.buffer, changes.byteOffset, changes.byteLength);
  const out: Array<{ at: number; len: number }> = [];
  for (let at = 0; at + 12 <= changes.length; ) {
    const len = dv.getUint32(at + 8, true);
    out.push({ at, len });
    at += 12 + (len === NOT_CARRIED ? 0 : len);
  }
  return out;
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
