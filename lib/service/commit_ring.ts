// The commits the app thread makes with the lent token (local_token.ts), on their way to
// the service thread, which broadcasts them. A ring in shared memory, written before the
// app gives the token back, so the service always finds every commit when it reclaims the
// token; the service is woken once per batch rather than once per commit.
//
// How far the app may run ahead of the broadcast is bounded in time, not only in bytes: a
// commit acknowledged with durability 'none' is held by this node alone until the service
// drains it, so a node killed or stalled then takes it along. The service drains a
// millisecond after the first commit of a batch; on a loaded machine its thread can be
// kept off the CPU far longer, and the app went on committing meanwhile: a node stalled in
// a fault run took 40 acknowledged commits along. Past AHEAD_MS the app commits through
// the service instead (client.ts), which drains first, so what a node can take along is
// what it committed in the last AHEAD_MS.
//
// Layout: Int32 header [0] write counter, [1] read counter (u32 words, wrapping), [2] wake
// requested, [3] unused; Float64 at byte 16: when the app pushed onto an empty ring last
// (performance.timeOrigin + performance.now()); then CAPACITY u32 words of records: time
// low, time high, page count, pages, byte length of the changes, the changes (protocol.ts
// CommitRecord) padded to whole words. The app's records are written by the addon
// (native/commit_record.h, commitToRing), straight from the commit's encoding.
import { performance } from 'node:perf_hooks';

const CAPACITY = 1 << 22; // words (16 MiB); a power of two
const HEAD = 6; // words: 4 Int32 and one Float64

/** The oldest commit waiting in the ring may be this old before the app stops adding to it. */
export const AHEAD_MS = 2;

export class CommitRing {
  private readonly head: Int32Array;
  private readonly data: Uint32Array;
  private readonly since: Float64Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.head = new Int32Array(buffer, 0, 4);
    this.since = new Float64Array(buffer, 16, 1);
    this.data = new Uint32Array(buffer, HEAD * 4, CAPACITY);
  }

  static create(): CommitRing {
    return new CommitRing(new SharedArrayBuffer(HEAD * 4 + CAPACITY * 4));
  }

  /** App thread: room for a commit of `pages` pages whose changes take at most `changeBytes`? */
  fits(pages: number, changeBytes: number): boolean {
    return 4 + pages + Math.ceil(changeBytes / 4) <= this.room();
  }

  /**
   * App thread: has the oldest commit waiting here been waiting longer than AHEAD_MS? The
   * stamp is only written by the app, when it pushes onto an empty ring; a drain that
   * crosses a push leaves an older stamp, which errs towards draining.
   */
  behind(at = performance.timeOrigin + performance.now()): boolean {
    return Atomics.load(this.head, 0) !== Atomics.load(this.head, 1) && at - this.since[0] > AHEAD_MS;
  }

  /**
   * App thread: appends the commit record `write` puts into the ring's words at word `w`,
   * returning the word after it (the addon's commitToRing, native/commit_record.h, after
   * fits()); returns true when the service must be woken.
   */
  push(write: (words: Uint32Array, w: number) => number): boolean {
    const w = Atomics.load(this.head, 0) >>> 0;
    if (w === Atomics.load(this.head, 1) >>> 0) this.since[0] = performance.timeOrigin + performance.now();
    const end = write(this.data, w);
    Atomics.store(this.head, 0, end | 0);
    return Atomics.exchange(this.head, 2, 1) === 0;
  }

  /** Words free for the next records (see push). */
  room(): number {
    return CAPACITY - ((Atomics.load(this.head, 0) - Atomics.load(this.head, 1)) >>> 0);
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
