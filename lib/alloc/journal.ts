// The heap's own writes to its metadata in the running transaction. Every such write goes
// through here, so that before the transaction commits the guard (guard.ts) can tell them
// from writes the program made to the same pages: replaying the journal over the pages'
// committed copies must give exactly what the pages hold now.

/** In place of a word index: the triple says its page became the heap's in this run. */
export const FRESH = 0xffffffff;

export class Journal {
  /**
   * Triples: u32 word index, the word's value before the heap wrote it, its value after;
   * or FRESH, a page number, 0.
   */
  private log = new Uint32Array(3 * 512);
  private n = 0;

  constructor(
    private readonly u8: Uint8Array,
    private readonly u32: Uint32Array,
  ) {}

  /** Writes u32 word `w` of the region. */
  w32(w: number, value: number): void {
    if (this.n === this.log.length) this.grow();
    const log = this.log;
    const n = this.n;
    log[n] = w;
    log[n + 1] = this.u32[w];
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
    log[n] = w;
    log[n + 1] = this.u32[w];
    this.u8[b] = value;
    log[n + 2] = this.u32[w];
    this.n = n + 3;
  }

  /**
   * Page `page` becomes a header page of the heap's. It was free memory, which is zero
   * (or became free in this run: tx.free zeroes memory as plain data writes), so from here
   * on it must read as zero but for the heap's journaled writes.
   */
  fresh(page: number): void {
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
