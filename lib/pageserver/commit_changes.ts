// A commit's changes (lib/service/changes.ts: per page, in the order of its page list, u64 the
// version it replaces | u32 length | a diff, or the length NOT_CARRIED and no bytes), checked
// whole before the store touches anything: a malformed record from the network is refused,
// never half applied.
import { NOT_CARRIED } from '../service/changes';
import { validDiff } from './diff';
import { StoreError } from './errors';

/** One page's change: `diff` is undefined when the commit left the change out. */
export interface PageChange {
  page: number;
  /** The version of the page the change applies to. */
  replaces: number;
  diff: Uint8Array | undefined;
}

const refuse = (time: number, why: string): StoreError =>
  new StoreError(`the commit at time ${time} is malformed (${why}); it was refused and nothing of it applied. Its sender sends bad records: check that every node runs the same version`);

/**
 * The changes of the commit at `time`, validated against a region of `numPages` pages of
 * `pageSize` bytes. Empty `changes` with pages listed means none carried (the native rule).
 * Throws StoreError when anything is out of place.
 */
export function parseChanges(time: number, pages: Uint32Array, changes: Uint8Array, pageSize: number, numPages: number): PageChange[] {
  const out: PageChange[] = [];
  const dv = new DataView(changes.buffer, changes.byteOffset, changes.byteLength);
  let prev = -1;
  let sorted = true;
  for (let i = 0; i < pages.length; i++) {
    const page = pages[i];
    if (page >= numPages) throw refuse(time, `page ${page} is outside the region of ${numPages} pages`);
    if (page <= prev) sorted = false;
    prev = page;
  }
  if (!sorted && new Set(pages).size !== pages.length) throw refuse(time, 'a page is listed twice');
  if (changes.length === 0) {
    for (const page of pages) out.push({ page, replaces: 0, diff: undefined });
    return out;
  }
  let at = 0;
  for (const page of pages) {
    if (changes.length - at < 12) throw refuse(time, `the change of page ${page} is cut short`);
    const replaces = dv.getUint32(at, true) + dv.getUint32(at + 4, true) * 2 ** 32;
    const len = dv.getUint32(at + 8, true);
    at += 12;
    if (len === NOT_CARRIED) {
      out.push({ page, replaces, diff: undefined });
      continue;
    }
    if (changes.length - at < len) throw refuse(time, `the diff of page ${page} is cut short`);
    const diff = changes.subarray(at, at + len);
    if (!validDiff(diff, pageSize)) throw refuse(time, `the diff of page ${page} is not a valid diff`);
    out.push({ page, replaces, diff });
    at += len;
  }
  if (at !== changes.length) throw refuse(time, `${changes.length - at} bytes follow the last change`);
  return out;
}
