// Diffs the page store keeps for pages it has not made yet (store.ts, "Pending diffs"), back
// to back in one growing buffer: a typed array of its own per diff cost more than the rest of
// a commit's apply (~400 ns of ~1 us per one-page commit here, with the objects around it).
// Each kept diff is u32 (offset of the same page's previous diff + 1, 0 for its first) |
// u32 length | the diff; a page's entry keeps the offset of its last one.
import { applyDiff } from './diff';

/** The arena's size to start with, and to go back to after a burst grew it past KEEP_MAX. */
const INITIAL = 1 << 16;
const KEEP_MAX = 8 << 20;

export class DiffArena {
  private buf = new Uint8Array(INITIAL);
  private view = new DataView(this.buf.buffer);
  private used = 0;
  private chain = new Int32Array(64);

  /** Bytes kept now. */
  get bytes(): number {
    return this.used;
  }

  /** Keeps a copy of the diff of `len` bytes at `from` in `src` after the page's diff at `prev` (-1: its first); returns where it is. */
  keep(src: Uint8Array, from: number, len: number, prev: number): number {
    const at = this.used;
    const need = at + 8 + len;
    if (need > this.buf.length) {
      const grown = new Uint8Array(Math.max(need, this.buf.length * 2));
      grown.set(this.buf.subarray(0, at));
      this.buf = grown;
      this.view = new DataView(grown.buffer);
    }
    this.view.setUint32(at, prev + 1, true);
    this.view.setUint32(at + 4, len, true);
    // Short diffs (a run of a word or two, the usual) byte by byte: a view costs more.
    if (len <= 32) for (let i = 0; i < len; i++) this.buf[at + 8 + i] = src[from + i];
    else this.buf.set(src.subarray(from, from + len), at + 8);
    this.used = need;
    return at;
  }

  /** Applies the `count` diffs whose last is at `last` to `page`, oldest first. */
  applyTo(page: Uint8Array, last: number, count: number): void {
    if (this.chain.length < count) this.chain = new Int32Array(count);
    for (let i = count - 1, at = last; i >= 0; i--) {
      this.chain[i] = at;
      at = this.view.getUint32(at, true) - 1;
    }
    for (let i = 0; i < count; i++) {
      const at = this.chain[i];
      applyDiff(page, this.buf, at + 8, this.view.getUint32(at + 4, true));
    }
  }

  /** Forgets every diff kept (no entry refers to one any more). */
  reset(): void {
    this.used = 0;
    if (this.buf.length > KEEP_MAX) {
      this.buf = new Uint8Array(INITIAL);
      this.view = new DataView(this.buf.buffer);
    }
  }
}
