// The connections to members: one authenticated connection per member at a time, a session
// per member that outlives its connections, and the entry point of every frame a member
// sends. Which connections are backlogged (their peer reads slower than we send) is tracked
// here, so senders can slow down to the slowest member instead of queueing without bound.
//
// The session. A connection can end while both members live (a reset on the path, a stall
// past the failure detector that ends before a removal), and what was written to it is then
// partly read and partly gone: a token, a page handed on with its ownership, a barrier
// arrival. So every frame to a member is numbered (implicitly: the n-th frame sent in the
// session) and kept until the member acknowledges it (Msg.Ack, every ACK_MS while frames
// come in). The first frame on every connection bound to a member is Resume, saying how many
// of its frames this node has handled; each side then sends again, in order, whatever the
// other has not handled, and only then what is new. Once a new connection is bound, nothing
// more is read from the old one, so nothing is handled twice and nothing is lost while both
// stay members. A member removed (or this node joining again) ends the session.
import { type Member, Msg } from './protocol';
import type { Connection } from './transport';
import { WireReader, WireWriter } from './wire';
import { debug } from './debug';

type Kept = [type: number, payload: Buffer, onWritten: (() => void) | undefined];

/**
 * Bytes of frames kept for one member we have no connection to. Past this the frames are
 * given up (the member is told to skip them when it comes back) and the member is treated
 * as lost: a member that stays unreachable while commits go on must not grow our memory
 * without bound. It catches up on missed commits by asking.
 */
export const QUEUED_MAX_BYTES = 64 << 20;
/**
 * How often a member is told how many of its frames were handled (while any come in), or
 * sooner, after this many frames or bytes: acknowledgements only let the sender free what
 * it keeps, and each wakes the sender's service thread. Every 20 ms they cost the commit
 * rows about 5% (8 in flight, replicated: 28.4k against 30.5k commits/s, medians of 14 runs
 * each), every 5 ms about 10%; every 100 ms nothing measurable.
 */
const ACK_MS = 100;
const ACK_FRAMES = 4096;
const ACK_BYTES = 8 << 20;

export interface LinkEvents {
  /** A frame from member `from` (the connection it came on says who sent it). */
  message(from: number, type: number, payload: Buffer): void;
  /** The connection to `id` closed (not replaced). */
  lost(id: number, reason: string): void;
  /** A connection to `id` was bound. */
  bound(id: number): void;
  /** Whether `id` is a member frames may be kept for. */
  isMember(id: number): boolean;
  me(): number;
  /** Something worth a warning (frames given up). */
  warn?(message: string): void;
}

class Session {
  /** Frames sent to the member, and how many of them it has acknowledged handling. */
  sent = 0;
  acked = 0;
  /** Frames acked+1..sent, oldest first from `head`. */
  kept: Kept[] = [];
  head = 0;
  keptBytes = 0;
  /** Frames from the member handled here, the count last told to it, and their bytes since. */
  received = 0;
  told = 0;
  untoldBytes = 0;
  /** The current connection heard the member's Resume: frames go out as they are sent. */
  resumed = false;

  /** The member handled frames up to `n`: let go of them. */
  ack(n: number): void {
    while (this.acked < n && this.head < this.kept.length) {
      const k = this.kept[this.head];
      this.kept[this.head++] = undefined as unknown as Kept;
      this.acked++;
      this.keptBytes -= k[1].length;
      k[2]?.();
    }
    this.acked = Math.max(this.acked, n);
    if (this.head > 1024 && this.head * 2 > this.kept.length) {
      this.kept = this.kept.slice(this.head);
      this.head = 0;
    }
  }

  /** Lets go of every kept frame, as if acknowledged (given up, or the session ends). */
  giveUp(): void {
    this.ack(this.sent);
  }
}

const count = (n: number): Buffer => new WireWriter(8).u64(n).done();

function readCount(b: Buffer): number {
  const r = new WireReader(b);
  const n = r.u64();
  r.end();
  return n;
}

export class Links {
  private readonly conns = new Map<number, Connection>();
  private readonly sessions = new Map<number, Session>();
  /** Members whose connection is backlogged. */
  private readonly slow = new Set<number>();
  private readonly drainListeners: Array<() => void> = [];
  private ackTimer?: NodeJS.Timeout;

  constructor(
    private readonly ev: LinkEvents,
    private readonly queuedMax = QUEUED_MAX_BYTES,
  ) {}

  has(id: number): boolean {
    return this.conns.has(id);
  }

  /** Whether member `id` was heard from lately (transport.ts Connection.lively). */
  lively(id: number): boolean {
    return this.conns.get(id)?.lively ?? false;
  }

  /** The session with `id`, begun if it is a member (or `begin`: a connection is bound to it). */
  private session(id: number, begin = this.ev.isMember(id)): Session | undefined {
    let s = this.sessions.get(id);
    if (!s && begin) this.sessions.set(id, (s = new Session()));
    return s;
  }

  /** Frames `c` delivered before it was bound to member `id` (membership.ts hello), in order. */
  replay(id: number, c: Connection, frames: Array<[number, Buffer]>): void {
    for (const [type, payload] of frames) {
      if (this.conns.get(id) !== c) return;
      this.receive(id, c, type, payload);
    }
  }

  /**
   * Makes `c` the connection to member `id`, replacing any other, and says Resume on it;
   * what the member has not handled goes out once its own Resume arrives.
   */
  bind(id: number, c: Connection): void {
    const old = this.conns.get(id);
    // Replace before closing: the old connection's close must not count as the peer's loss.
    this.conns.set(id, c);
    if (old && old !== c) old.close('replaced');
    c.on('message', (type: number, payload: Buffer) => {
      // A frame that raced the connection's replacement or the member's removal is not
      // the member speaking any more (and is sent again on the new connection if needed).
      if (this.conns.get(id) === c) this.receive(id, c, type, payload);
    });
    c.on('close', (reason: string) => {
      if (this.conns.get(id) === c) {
        this.conns.delete(id);
        this.unslow(id);
        this.ev.lost(id, reason);
      }
    });
    c.on('backlogged', () => {
      if (this.conns.get(id) === c) this.slow.add(id);
    });
    c.on('drain', () => {
      if (this.conns.get(id) === c) this.unslow(id);
    });
    this.unslow(id);
    const s = this.session(id, true)!;
    s.resumed = false;
    c.send(Msg.Resume, count(s.received));
    s.told = s.received;
    s.untoldBytes = 0;
    if (c.backlogged) this.slow.add(id);
    this.ev.bound(id);
  }

  /**
   * A frame of member `id` on its connection `c`. Counts that do not fit this session (a bug,
   * or a peer speaking for another session) close the connection, logged; never thrown, as
   * frames replayed after a joiner's admission are handled outside the transport's guard.
   */
  private receive(id: number, c: Connection, type: number, payload: Buffer): void {
    const s = this.session(id);
    if (!s) return;
    if (type === Msg.Resume || type === Msg.Ack || type === Msg.Skip) {
      let n: number;
      try {
        n = readCount(payload);
      } catch {
        return this.mismatch(c, `node ${id} sent a malformed session frame (type ${type})`);
      }
      if (type === Msg.Resume) return this.resume(id, c, s, n);
      if (type === Msg.Ack) {
        if (n > s.sent) return this.mismatch(c, `node ${id} acknowledged ${n} frames of the ${s.sent} sent to it`);
        s.ack(n);
        return;
      }
      if (n < s.received) return this.mismatch(c, `node ${id} skipped back to frame ${n} (${s.received} handled)`);
      this.ev.warn?.(`node ${id} gave up ${n - s.received} frame(s) it had for this node (more than ${this.queuedMax} bytes waited for a connection)`);
      s.received = n;
      return;
    }
    s.received++;
    s.untoldBytes += payload.length;
    if (s.received - s.told >= ACK_FRAMES || s.untoldBytes >= ACK_BYTES) this.tell(c, s);
    else if (!this.ackTimer) {
      this.ackTimer = setTimeout(() => this.tellReceived(), ACK_MS);
      this.ackTimer.unref();
    }
    this.ev.message(id, type, payload);
  }

  private mismatch(c: Connection, why: string): void {
    this.ev.warn?.(`${why}; closing the connection`);
    c.close('protocol');
  }

  /** The member's Resume on connection `c`: send again what it has not handled, then go on. */
  private resume(id: number, c: Connection, s: Session, handled: number): void {
    if (handled > s.sent) return this.mismatch(c, `node ${id} says it handled ${handled} frames of the ${s.sent} sent to it`);
    if (handled < s.acked) {
      // Given up while it was away (QUEUED_MAX_BYTES): it skips them.
      c.send(Msg.Skip, count(s.acked));
    } else s.ack(handled);
    s.resumed = true;
    for (let i = s.head; i < s.kept.length; i++) {
      const [type, payload] = s.kept[i];
      c.send(type, payload);
    }
  }

  /** Tells each member how many of its frames were handled here (Msg.Ack). */
  private tellReceived(): void {
    this.ackTimer = undefined;
    for (const [id, s] of this.sessions) {
      const c = this.conns.get(id);
      if (c && s.received !== s.told) this.tell(c, s);
    }
  }

  private tell(c: Connection, s: Session): void {
    c.send(Msg.Ack, count(s.received));
    s.told = s.received;
    s.untoldBytes = 0;
  }

  private unslow(id: number): void {
    if (!this.slow.delete(id) || this.slow.size > 0) return;
    for (const f of this.drainListeners) f();
  }

  /** Whether any member's connection is backlogged: senders should await whenAllDrained(). */
  get backlogged(): boolean {
    return this.slow.size > 0;
  }

  /** `f` runs whenever the last backlogged connection drains (or closes). */
  onAllDrained(f: () => void): void {
    this.drainListeners.push(f);
  }

  /**
   * Resolves once no member's connection is backlogged. Bounded: a member that never reads
   * has its connection closed at the transport's hard limit, or by the failure detector.
   */
  async whenAllDrained(): Promise<void> {
    while (this.slow.size > 0) {
      const waits: Promise<void>[] = [];
      for (const id of this.slow) {
        const c = this.conns.get(id);
        // A connection closed for backpressure says so on the next tick: waiting on it
        // again here would spin in promise jobs and never let that tick come.
        if (c && !c.isClosed) waits.push(c.whenDrained());
      }
      if (waits.length === 0) return;
      await Promise.all(waits);
    }
  }

  /**
   * Resolves once the connection to `id` is no longer backlogged: true, or false if it
   * closed meanwhile (what was sent is kept, and sent again on the next connection). Frames
   * kept for a member we are still connecting to count as sent (they are bounded, see
   * QUEUED_MAX_BYTES).
   */
  async whenDrained(id: number): Promise<boolean> {
    const c = this.conns.get(id);
    if (!c) return (this.sessions.get(id)?.sent ?? 0) > (this.sessions.get(id)?.acked ?? 0);
    await c.whenDrained();
    return !c.isClosed && this.conns.get(id) === c;
  }

  /** Whether the connection to `id` is backlogged (one closed, but not yet said so, is not). */
  isBacklogged(id: number): boolean {
    return this.slow.has(id) && !this.conns.get(id)?.isClosed;
  }

  /** Bytes queued for each member: on its connection, or kept for one. */
  queuedBytes(): Record<number, number> {
    const out: Record<number, number> = {};
    for (const [id, c] of this.conns) out[id] = c.queuedBytes;
    for (const [id, s] of this.sessions) if (!s.resumed && s.keptBytes > 0) out[id] = (out[id] ?? 0) + s.keptBytes;
    return out;
  }

  /** Ends the session with `id`: closes its connection and lets go of what was kept for it. */
  drop(id: number, reason: string): void {
    const c = this.conns.get(id);
    this.conns.delete(id);
    this.unslow(id);
    this.sessions.get(id)?.giveUp();
    this.sessions.delete(id);
    c?.close(reason);
  }

  /** Closes the connection to `id` (a bad frame on it); the session goes on with the next one. */
  close(id: number, reason: string): void {
    this.conns.get(id)?.close(reason);
  }

  /** Ends every session (this node joins again under a new id). */
  dropAll(reason: string): void {
    for (const id of new Set([...this.conns.keys(), ...this.sessions.keys()])) this.drop(id, reason);
  }

  /**
   * `onWritten`: the payload is no longer needed (the member handled it, or it was given
   * up). Returns false when the connection is backlogged (the frame is still sent: slow
   * down) or the frame was dropped.
   */
  send(to: number, type: number, payload: Buffer, onWritten?: () => void): boolean {
    const c = this.conns.get(to);
    const s = this.session(to);
    if (debug.enabled) debug(`node ${this.ev.me()} -> ${to}: type ${type} (${payload.length} B)${c && s?.resumed ? '' : ' kept'}`);
    if (!s) {
      onWritten?.();
      return false;
    }
    s.sent++;
    s.kept.push([type, payload, onWritten]);
    s.keptBytes += payload.length;
    if (c && s.resumed) return c.send(type, payload);
    if (!c && s.keptBytes > this.queuedMax) {
      s.giveUp();
      // Next tick, as the transport's own overflow: a broadcast loop is not re-entered.
      const max = this.queuedMax;
      process.nextTick(() => this.ev.lost(to, `backpressure: more than ${max} bytes waited for a connection to it`));
      return false;
    }
    return true;
  }

  broadcast(type: number, payload: Buffer, members: Iterable<Member>): void {
    const me = this.ev.me();
    for (const m of members) if (m.id !== me) this.send(m.id, type, payload);
  }

  connected(): number[] {
    return [...this.conns.keys()];
  }

  /** Members with frames kept for them and no connection that took them. */
  queuedFor(): number[] {
    return [...this.sessions].filter(([id, s]) => s.sent > s.acked && (!this.conns.has(id) || !s.resumed)).map(([id]) => id);
  }
}
