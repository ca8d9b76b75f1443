// A commit's changes (lib/service/changes.ts: per page, in the order of its page list, u64 the
// version it replaces | u32 length | a diff, or the length NOT_CARRIED and no bytes), checked
// whole before the store touches anything: a malformed record from the network is refused,
// never half applied.
import { NOT_CARRIED } from '../service/changes';
import { validDiff } from './diff';
import { StoreError } from './errors';

/**
 * A commit's changes, parsed: page i of its page list replaces version `replaces[i]` with the
 * diff of `len[i]` bytes at `at[i]` in the changes, or `len[i]` is -1 when the commit left the
 * change out. One instance is reused from commit to commit (objects and views per page were
 * a fifth of the store's cost of a one-page commit).
 */
export class ParsedChanges {
  count = 0;
  replaces = new Float64Array(8);
  at = new Int32Array(8);
  len = new Int32Array(8);

  /** Room for `n` pages. */
  reset(n: number): void {
    this.count = n;
    if (this.len.length >= n) return;
    this.replaces = new Float64Array(n);
    this.at = new Int32Array(n);
    this.len = new Int32Array(n);
  }
}

const u32 = (b: Uint8Array, at: number): number => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;

const refuse = (time: number, why: string): StoreError =>
  new StoreError(`the commit at time ${time} is malformed (${why}); it was refused and nothing of it applied. Its sender sends bad records: check that every node runs the same version`);

/**
 * The changes of the commit at `time` into `out`, validated against a region of `numPages`
 * pages of `pageSize` bytes. Empty `changes` with pages listed means none carried (the
 * native rule). Throws StoreError when anything is out of place.
 */
export function parseChanges(time: number, pages: Uint32Array, changes: Uint8Array, pageSize: number, numPages: number, out = new ParsedChanges()): ParsedChanges {
  let prev = -1;
  let sorted = true;
  for (let i = 0; i < pages.length; i++) {
    const page = pages[i];
    if (page >= numPages) throw refuse(time, `page ${page} is outside the region of ${numPages} pages`);
    if (page <= prev) sorted = false;
    prev = page;
  }
  if (!sorted && new Set(pages).size !== pages.length) throw refuse(time, 'a page is listed twice');
  out.reset(pages.length);
  if (changes.length === 0) {
    out.replaces.fill(0, 0, pages.length);
    out.len.fill(-1, 0, pages.length);
    return out;
  }
  let at = 0;
  for (let i = 0; i < pages.length; i++) {
    const page = pages[i];
    if (changes.length - at < 12) throw refuse(time, `the change of page ${page} is cut short`);
    out.replaces[i] = u32(changes, at) + u32(changes, at + 4) * 2 ** 32;
    const len = u32(changes, at + 8);
    at += 12;
    if (len === NOT_CARRIED) {
      out.len[i] = -1;
      continue;
    }
    if (changes.length - at < len) throw refuse(time, `the diff of page ${page} is cut short`);
    if (!validDiff(changes, pageSize, at, len)) throw refuse(time, `the diff of page ${page} is not a valid diff`);
    out.at[i] = at;
    out.len[i] = len;
    at += len;
  }
  if (at !== changes.length) throw refuse(time, `${changes.length - at} bytes follow the last change`);
  return out;
}
