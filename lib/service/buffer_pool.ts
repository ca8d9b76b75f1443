// Reusable buffers for page replies. A reply of 256 pages written into fresh memory cost
// the serving thread the kernel's allocation and zeroing of that memory every time
// (measured: a quarter of its time during a remote scan). Buffers come back once the
// socket has handed their bytes to the kernel; one that never comes back (a connection
// dropped mid-write) is simply replaced.
export class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    readonly size: number,
    private readonly keep: number,
  ) {}

  /** A buffer of `size` bytes (contents undefined). */
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** Returns a buffer taken from this pool. */
  give(b: Buffer): void {
    if (this.free.length < this.keep && b.length === this.size) this.free.push(b);
  }
}
