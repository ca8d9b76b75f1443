// The commits the app thread makes with the lent token (local_token.ts), on their way to
// the service thread, which broadcasts them. A ring in shared memory, written before the
// app gives the token back, so the service always finds every commit when it reclaims the
// token; the service is woken once per batch rather than once per commit.
//
// Layout: Int32 header [0] write counter, [1] read counter (u32 words, wrapping), [2] wake
// requested; then CAPACITY u32 words of records: time low, time high, page count, pages,
// byte length of the changes, the changes (protocol.ts CommitRecord) padded to whole words.

const CAPACITY = 1 << 22; // words (16 MiB); a power of two
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

  /** App thread: room for a commit of `pages` pages whose changes take at most `changeBytes`? */
  fits(pages: number, changeBytes: number): boolean {
    const used = (Atomics.load(this.head, 0) - Atomics.load(this.head, 1)) >>> 0;
    return used + 4 + pages + Math.ceil(changeBytes / 4) <= CAPACITY;
  }

  /** App thread: appends a commit; returns true when the service must be woken. */
  push(time: number, pages: Uint32Array, changes: Uint8Array): boolean {
    let w = Atomics.load(this.head, 0) >>> 0;
    const put = (v: number) => {
      this.data[w & (CAPACITY - 1)] = v;
      w = (w + 1) >>> 0;
    };
    put(time % 0x1_0000_0000);
    put(Math.floor(time / 0x1_0000_0000));
    put(pages.length);
    for (let i = 0; i < pages.length; i++) put(pages[i]);
    put(changes.length);
    const whole = changes.length >> 2;
    const dv = new DataView(changes.buffer, changes.byteOffset, changes.byteLength);
    for (let i = 0; i < whole; i++) put(dv.getUint32(i * 4, true));
    if (changes.length & 3) {
      let last = 0;
      for (let k = whole * 4; k < changes.length; k++) last |= changes[k] << (8 * (k - whole * 4));
      put(last >>> 0);
    }
    Atomics.store(this.head, 0, w | 0);
    return Atomics.exchange(this.head, 2, 1) === 0;
  }

  /** Service thread: hands every queued commit to `fn`, oldest first. */
  drain(fn: (time: number, pages: Uint32Array, changes: Uint8Array) => void): void {
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
      const len = get();
      const changes = new Uint8Array(len);
      const dv = new DataView(changes.buffer);
      const whole = len >> 2;
      for (let i = 0; i < whole; i++) dv.setUint32(i * 4, get(), true);
      if (len & 3) {
        const last = get();
        for (let k = whole * 4; k < len; k++) changes[k] = (last >>> (8 * (k - whole * 4))) & 0xff;
      }
      fn(time, pages, changes);
    }
    Atomics.store(this.head, 1, r | 0);
  }
}
