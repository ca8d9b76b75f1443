// The commits the app thread makes with the lent token (local_token.ts), on their way to
// the service thread, which broadcasts them. A ring in shared memory, written before the
// app gives the token back, so the service always finds every commit when it reclaims the
// token; the service is woken once per batch rather than once per commit.
//
// Layout: Int32 header [0] write counter, [1] read counter (u32 words, wrapping), [2] wake
// requested; then CAPACITY u32 words of records: time low, time high, page count, pages.

const CAPACITY = 1 << 20; // words (4 MiB); a power of two
const HEAD = 4;

export class CommitRing {
  private readonly head: Int32Array;
  private readonly data: Uint32Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.head = new Int32Array(buffer, 0, HEAD);
    this.data = new Uint32Array(buffer, HEAD * 4, CAPACITY);
  }

  static create(): CommitRing {
    return new CommitRing(new SharedArrayBuffer(HEAD * 4 + CAPACITY * 4));
  }

  /** App thread: room for a commit of `pages` pages? */
  fits(pages: number): boolean {
    const used = (Atomics.load(this.head, 0) - Atomics.load(this.head, 1)) >>> 0;
    return used + 3 + pages <= CAPACITY;
  }

  /** App thread: appends a commit; returns true when the service must be woken. */
  push(time: number, pages: Uint32Array): boolean {
    let w = Atomics.load(this.head, 0) >>> 0;
    const put = (v: number) => {
      this.data[w & (CAPACITY - 1)] = v;
      w = (w + 1) >>> 0;
    };
    put(time % 0x1_0000_0000);
    put(Math.floor(time / 0x1_0000_0000));
    put(pages.length);
    for (let i = 0; i < pages.length; i++) put(pages[i]);
    Atomics.store(this.head, 0, w | 0);
    return Atomics.exchange(this.head, 2, 1) === 0;
  }

  /** Service thread: hands every queued commit to `fn`, oldest first. */
  drain(fn: (time: number, pages: Uint32Array) => void): void {
    Atomics.store(this.head, 2, 0); // a push after this wakes us again
    let r = Atomics.load(this.head, 1) >>> 0;
    const w = Atomics.load(this.head, 0) >>> 0;
    const get = () => {
      const v = this.data[r & (CAPACITY - 1)];
      r = (r + 1) >>> 0;
      return v;
    };
    while (r !== w) {
      const time = get() + get() * 0x1_0000_0000;
      const n = get();
      const pages = new Uint32Array(n);
      for (let i = 0; i < n; i++) pages[i] = get();
      fn(time, pages);
    }
    Atomics.store(this.head, 1, r | 0);
  }
}
