// The heap's own writes to its metadata in the running transaction. Every such write goes
// through here, so that before the transaction commits the guard (guard.ts) can tell them
// from writes the program made to the same pages: replaying the journal over the pages'
// committed copies must give exactly what the pages hold now.

import { PageState } from '../native';

// Word indices are below 2^30 (a region is at most 4 GiB), so the top bits can flag a triple.
/** The triple's word sat on a page this run had not touched: its old value was not read. */
export const UNREAD = 0x80000000;
/** In place of a word index: the triple says the page that follows became the heap's in this run. */
export const FRESH = 0x40000000;

export class Journal {
  /**
   * Triples: u32 word index, the word's value before the heap wrote it, its value after;
   * the index flagged UNREAD (old value 0, unread); or FRESH, a page number, 0.
   */
  private log = new Uint32Array(3 * 512);
  private n = 0;
  private readonly wordsPerPageShift: number;

  constructor(
    private readonly u8: Uint8Array,
    private readonly u32: Uint32Array,
    /** Page states: a page this run has not touched is not mapped (Begin revokes all access). */
    private readonly states: Uint8Array,
    private readonly pageSize: number,
  ) {
    this.wordsPerPageShift = Math.log2(pageSize) - 2;
  }

  /** Writes u32 word `w` of the region. */
  w32(w: number, value: number): void {
    const n = this.n;
    // The same word again (a bump pointer, say), untouched since the heap wrote it: one triple.
    if (n !== 0 && this.log[n - 3] === w && this.u32[w] === this.log[n - 1]) {
      this.u32[w] = value;
      this.log[n - 1] = this.u32[w];
      return;
    }
    if (n === this.log.length) this.grow();
    const log = this.log;
    this.before(n, w);
    this.u32[w] = value;
    log[n + 2] = this.u32[w];
    this.n = n + 3;
  }

  /** Writes byte `b` of the region (journaled as the word that holds it). */
  w8(b: number, value: number): void {
    if (this.n === this.log.length) this.grow();
    const log = this.log;
    const n = this.n;
    const w = b >>> 2;
    this.before(n, w);
    this.u8[b] = value;
    log[n + 2] = this.u32[w];
    this.n = n + 3;
  }

  /**
   * The old value only matters if the program could have written the word in this run,
   * and reading a page the run has not touched would cost a fault: on such a page the
   * word still holds its committed value, which the guard has anyway.
   */
  private before(n: number, w: number): void {
    if (this.states[w >>> this.wordsPerPageShift] >= PageState.read) {
      this.log[n] = w;
      this.log[n + 1] = this.u32[w];
    } else {
      this.log[n] = (w | UNREAD) >>> 0;
      this.log[n + 1] = 0;
    }
  }

  /**
   * Page `page` becomes a header page of the heap's: it is cleared, and from here on must
   * hold zeros but for the heap's journaled writes. (It was free memory, which is zero
   * unless a stray write reached it; clearing it keeps such a write out of the header.)
   */
  fresh(page: number): void {
    this.u8.fill(0, page * this.pageSize, (page + 1) * this.pageSize);
    if (this.n === this.log.length) this.grow();
    this.log[this.n] = FRESH;
    this.log[this.n + 1] = page;
    this.log[this.n + 2] = 0;
    this.n += 3;
  }

  /** Forgets the previous run's writes (a new run starts from the committed heap). */
  reset(): void {
    this.n = 0;
  }

  /** The triples written so far: entries()[0 .. length). */
  get length(): number {
    return this.n;
  }

  entries(): Uint32Array {
    return this.log;
  }

  private grow(): void {
    const bigger = new Uint32Array(this.log.length * 2);
    bigger.set(this.log);
    this.log = bigger;
  }
}
