// Frames on the wire between nodes:
//
//   offset  size  field
//   0       4     length of everything after this field (6 + payload), u32 LE
//   4       1     protocol version (PROTOCOL_VERSION)
//   5       4     cluster id, u32 LE (derived from the secret unless configured)
//   9       1     message type: 0-15 transport (below), 16+ cluster protocol (protocol.ts)
//   10      n     payload
//
// The decoder checks the length before buffering the body, so a peer cannot make a node
// allocate more than its current limit, and it never copies a chunk more than once. The
// limit can change between frames: before the handshake completes it is a few KiB.
import { ProtocolError, ProtocolVersionError } from './transport_errors';

// 7: lease echoes, recovery queries and reports carry the latest regeneration of the token,
// and commits the generation of the token they were made with.
// 13: SeqLost; JoinAccept carries the cluster's identity; ClusterRequest/ClusterReply.
// 14: ModelSet carries its commit's time, SeqLost the generation of the page it names.
// 15: LeaveIntent/LeaveIntentAck before a leaver lists its sequential and migratory pages.
// 16: a commit carries its model changes (ModelSet, sent ahead of it, is gone).
// 17: DurableQuery and DurableAt.
// 18: SeqReply, SeqInvalidate and SeqPush carry the generation of the pages they name.
// 19: ResendGone.
// 20: member sessions (Resume, Ack, Skip: frames sent again on a new connection), Hello naming
// the member dialled, Gone.
export const PROTOCOL_VERSION = 20;
export const HEADER = 10;
export const FrameType = {
  heartbeat: 0,
  nonce: 1,
  proof: 2,
  authFailed: 3,
  authOk: 4,
  /** First type the transport hands to its user. */
  firstUser: 16,
} as const;

/**
 * Largest payload accepted before the handshake completes: its frames are 32-byte nonces
 * and proofs, so a stranger cannot make a node buffer more than this per connection.
 */
export const PRE_AUTH_MAX_FRAME = 4 << 10;

export function encodeHeader(clusterId: number, type: number, payloadLength: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER);
  h.writeUInt32LE(6 + payloadLength, 0);
  h[4] = PROTOCOL_VERSION;
  h.writeUInt32LE(clusterId >>> 0, 5);
  h[9] = type;
  return h;
}

export interface Frame {
  type: number;
  payload: Buffer;
}

export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** `maxFrame`: the largest payload accepted; may be changed between frames. */
  constructor(
    private readonly clusterId: number,
    public maxFrame: number,
  ) {}

  /** Adds bytes; returns the complete frames. Throws ProtocolError on a bad frame. */
  push(chunk: Buffer): Frame[] {
    this.feed(chunk);
    const out: Frame[] = [];
    for (let f = this.next(); f; f = this.next()) out.push(f);
    return out;
  }

  /** Adds bytes without decoding them; take the frames with next(). */
  feed(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /**
   * The next complete frame, or undefined until more bytes arrive. One at a time, so a
   * caller can change maxFrame after a frame (the end of a handshake) and have it apply
   * to the very next header. Throws ProtocolError on a bad header, before its body is buffered.
   */
  next(): Frame | undefined {
    if (this.buffered < HEADER) return undefined;
    const head = this.peek(HEADER);
    const len = head.readUInt32LE(0);
    if (len < 6) throw new ProtocolError(`frame length ${len} is too small to hold a header`);
    if (len - 6 > this.maxFrame) throw new ProtocolError(`frame length ${len} exceeds the limit of ${this.maxFrame} bytes`);
    if (head[4] !== PROTOCOL_VERSION) throw new ProtocolVersionError(head[4], PROTOCOL_VERSION);
    const cid = head.readUInt32LE(5);
    if (cid !== this.clusterId) throw new ProtocolError(`cluster id ${cid.toString(16)} is not this cluster's (${this.clusterId.toString(16)})`);
    if (this.buffered < 4 + len) return undefined;
    const whole = this.take(4 + len);
    return { type: whole[9], payload: whole.subarray(HEADER) };
  }

  private peek(n: number): Buffer {
    if (this.chunks[0].length >= n) return this.chunks[0];
    // A header split across chunks: join just enough of them.
    let k = 1;
    for (let len = this.chunks[0].length; len < n; k++) len += this.chunks[k].length;
    this.chunks.splice(0, k, Buffer.concat(this.chunks.slice(0, k)));
    return this.chunks[0];
  }

  private take(n: number): Buffer {
    let out: Buffer;
    if (this.chunks[0].length >= n) {
      out = this.chunks[0].subarray(0, n);
      const rest = this.chunks[0].subarray(n);
      if (rest.length) this.chunks[0] = rest;
      else this.chunks.shift();
    } else {
      // Copy exactly this frame's bytes; what follows stays in its chunk, uncopied.
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0];
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return out;
  }
}
