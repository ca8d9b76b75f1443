// A page's diff as commits carry it (native/page_diff.h), decoded in TypeScript for the page
// server, which holds pages in its store rather than in a mapped region. The rules are the
// native ones, byte for byte:
//   a whole page:  exactly pageSize bytes, the new contents
//   runs:          fewer than pageSize bytes, a sequence of
//                    u16 first word | u16 word count (>= 1) | count x 4 bytes
//                  little-endian, in increasing order, not overlapping; empty: nothing changed

const RUN_HEADER = 4;
// Unchanged words between two changed runs that are cheaper to send than a new header.
const MERGE_GAP = 1;

const u16 = (b: Uint8Array, at: number): number => b[at] | (b[at + 1] << 8);

/**
 * True when the diff in `bytes` (`len` bytes from `from`: all of it unless given) is well
 * formed for a page of `pageSize` bytes (checked before anything is applied).
 */
export function validDiff(bytes: Uint8Array, pageSize: number, from = 0, len = bytes.length - from): boolean {
  if (len === pageSize) return true;
  if (len > pageSize) return false;
  const words = pageSize / 4;
  const end = from + len;
  let at = from;
  let next = 0; // the first word a run may start at
  while (at < end) {
    if (end - at < RUN_HEADER) return false;
    const first = u16(bytes, at);
    const count = u16(bytes, at + 2);
    if (count === 0 || first < next || first + count > words) return false;
    if (end - at - RUN_HEADER < count * 4) return false;
    at += RUN_HEADER + count * 4;
    next = first + count;
  }
  return true;
}

/** Applies a diff that `validDiff` accepted (`len` bytes of `bytes` from `from`) to `page` (pageSize bytes), in place. */
export function applyDiff(page: Uint8Array, bytes: Uint8Array, from = 0, len = bytes.length - from): void {
  if (len === page.length) {
    page.set(from === 0 && len === bytes.length ? bytes : bytes.subarray(from, from + len));
    return;
  }
  const end = from + len;
  let at = from;
  while (at < end) {
    const first = u16(bytes, at);
    const count = u16(bytes, at + 2);
    const to = first * 4;
    const src = at + RUN_HEADER;
    // Short runs (a word or two, the usual) byte by byte: a view per run costs more.
    if (count <= 4) for (let i = 0; i < count * 4; i++) page[to + i] = bytes[src + i];
    else page.set(bytes.subarray(src, src + count * 4), to);
    at += RUN_HEADER + count * 4;
  }
}

const asWords = (b: Uint8Array): Uint32Array =>
  b.byteOffset % 4 === 0 ? new Uint32Array(b.buffer, b.byteOffset, b.length >> 2) : new Uint32Array(b.slice().buffer);

/**
 * The diff from `before` to `after` (pageSize bytes each), as the native encoder makes it
 * (runs of changed words, runs one unchanged word apart merged; the whole page once the runs
 * would take as much). For writers of commits outside the native core: tests, benchmarks, tools.
 */
export function encodeDiff(before: Uint8Array, after: Uint8Array): Uint8Array {
  const pageSize = after.length;
  const b = asWords(before);
  const a = asWords(after);
  const words = pageSize / 4;
  const out = new Uint8Array(pageSize);
  const ov = new DataView(out.buffer);
  let len = 0;
  let w = 0;
  while (w < words) {
    while (w < words && b[w] === a[w]) w++;
    if (w === words) break;
    const first = w;
    let last = w; // last changed word of this run
    for (let k = w + 1; k < words; k++) {
      if (b[k] !== a[k]) last = k;
      else if (k - last > MERGE_GAP) break;
    }
    const count = last - first + 1;
    if (len + RUN_HEADER + count * 4 >= pageSize) return after.slice();
    ov.setUint16(len, first, true);
    ov.setUint16(len + 2, count, true);
    out.set(after.subarray(first * 4, (last + 1) * 4), len + RUN_HEADER);
    len += RUN_HEADER + count * 4;
    w = last + 1;
  }
  return out.slice(0, len);
}
