// Bounds-checked binary reading and writing for protocol payloads. A peer's bytes are
// untrusted: every read checks its length and throws a ProtocolError, never a RangeError
// from deep inside a Buffer method, so the connection is dropped and the node goes on.
import { DsmError } from '../errors';

export class WireError extends DsmError {
  constructor(message: string) {
    super('ERR_DSM_PROTOCOL', message);
  }
}

export class WireWriter {
  private buf: Buffer;
  private n = 0;
  /** `initial`: a starting size, or a buffer to write into (replaced only if outgrown). */
  constructor(initial: number | Buffer = 64) {
    this.buf = typeof initial === 'number' ? Buffer.allocUnsafe(initial) : initial;
  }
  private room(k: number): void {
    if (this.n + k <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.n + k));
    this.buf.copy(next, 0, 0, this.n);
    this.buf = next;
  }
  u8(v: number): this {
    this.room(1);
    this.buf[this.n++] = v;
    return this;
  }
  u16(v: number): this {
    this.room(2);
    this.buf.writeUInt16LE(v, this.n);
    this.n += 2;
    return this;
  }
  u32(v: number): this {
    this.room(4);
    this.buf.writeUInt32LE(v >>> 0, this.n);
    this.n += 4;
    return this;
  }
  /** Global times and versions: 64-bit on the wire, safe integers in JavaScript. */
  u64(v: number): this {
    this.room(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.n);
    this.n += 8;
    return this;
  }
  bytes(b: Uint8Array): this {
    this.u32(b.length);
    this.room(b.length);
    this.buf.set(b, this.n);
    this.n += b.length;
    return this;
  }
  /** `len` bytes at the current position, for the caller to fill in place (no length prefix). */
  reserve(len: number): Uint8Array {
    this.room(len);
    const view = this.buf.subarray(this.n, this.n + len);
    this.n += len;
    return view;
  }
  str(s: string): this {
    return this.bytes(Buffer.from(s, 'utf8'));
  }
  u32s(a: ArrayLike<number>): this {
    this.u32(a.length);
    this.room(a.length * 4);
    for (let i = 0; i < a.length; i++) {
      this.buf.writeUInt32LE(a[i] >>> 0, this.n);
      this.n += 4;
    }
    return this;
  }
  done(): Buffer {
    return this.buf.subarray(0, this.n);
  }
}

export class WireReader {
  private n = 0;
  constructor(private readonly buf: Buffer) {}
  private need(k: number, what: string): void {
    if (this.n + k > this.buf.length) throw new WireError(`truncated message: ${what} needs ${k} byte(s) at ${this.n} of ${this.buf.length}`);
  }
  u8(): number {
    this.need(1, 'u8');
    return this.buf[this.n++];
  }
  u16(): number {
    this.need(2, 'u16');
    const v = this.buf.readUInt16LE(this.n);
    this.n += 2;
    return v;
  }
  u32(): number {
    this.need(4, 'u32');
    const v = this.buf.readUInt32LE(this.n);
    this.n += 4;
    return v;
  }
  u64(): number {
    this.need(8, 'u64');
    const v = this.buf.readBigUInt64LE(this.n);
    this.n += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new WireError('a 64-bit field exceeds 2^53');
    return Number(v);
  }
  bytes(max = this.buf.length): Buffer {
    const len = this.u32();
    if (len > max) throw new WireError(`a field of ${len} bytes exceeds its limit of ${max}`);
    this.need(len, 'bytes');
    const b = this.buf.subarray(this.n, this.n + len);
    this.n += len;
    return b;
  }
  /** Exactly `len` bytes (no length prefix), as a view of the message. */
  raw(len: number): Buffer {
    this.need(len, 'raw bytes');
    const b = this.buf.subarray(this.n, this.n + len);
    this.n += len;
    return b;
  }
  str(max = 1024): string {
    return this.bytes(max).toString('utf8');
  }
  u32s(max = 1 << 24): Uint32Array {
    const len = this.u32();
    if (len > max) throw new WireError(`a list of ${len} entries exceeds its limit of ${max}`);
    this.need(len * 4, 'u32 list');
    const out = new Uint32Array(len);
    for (let i = 0; i < len; i++) out[i] = this.buf.readUInt32LE(this.n + i * 4);
    this.n += len * 4;
    return out;
  }
  /** Bytes not read yet (optional trailing sections). */
  get remaining(): number {
    return this.buf.length - this.n;
  }
  end(): void {
    if (this.n !== this.buf.length) throw new WireError(`${this.buf.length - this.n} unexpected trailing byte(s)`);
  }
}
