// The connections to members: one authenticated connection per member, frames queued for
// a member we are still connecting to, and the entry point of every frame a member sends.
// Which connections are backlogged (their peer reads slower than we send) is tracked here,
// so senders can slow down to the slowest member instead of queueing without bound.
import type { Member } from './protocol';
import type { Connection } from './transport';
import { debug } from './debug';

type Queued = [type: number, payload: Buffer, onWritten: (() => void) | undefined];

/**
 * Bytes of frames held for one member we have no connection to. Past this the member is
 * treated as lost (its frames dropped): a member that stays unreachable while commits go on
 * must not grow our memory without bound. It catches up on missed commits by asking.
 */
export const QUEUED_MAX_BYTES = 64 << 20;

export interface LinkEvents {
  /** A frame from member `from` (the connection it came on says who sent it). */
  message(from: number, type: number, payload: Buffer): void;
  /** The connection to `id` closed (not replaced). */
  lost(id: number, reason: string): void;
  /** A connection to `id` was bound. */
  bound(id: number): void;
  /** Whether `id` is a member frames may be queued for. */
  isMember(id: number): boolean;
  me(): number;
}

export class Links {
  private readonly conns = new Map<number, Connection>();
  private readonly queued = new Map<number, Queued[]>();
  private readonly queuedSize = new Map<number, number>();
  /** Members whose connection is backlogged. */
  private readonly slow = new Set<number>();
  private readonly drainListeners: Array<() => void> = [];

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

  /** Frames `c` delivered before it was bound to member `id` (membership.ts hello), in order. */
  replay(id: number, c: Connection, frames: Array<[number, Buffer]>): void {
    for (const [type, payload] of frames) {
      if (this.conns.get(id) !== c) return;
      this.ev.message(id, type, payload);
    }
  }

  /** Makes `c` the connection to member `id`, replacing any other, and sends what waited. */
  bind(id: number, c: Connection): void {
    const old = this.conns.get(id);
    // Replace before closing: the old connection's close must not count as the peer's loss.
    this.conns.set(id, c);
    if (old && old !== c) old.close('replaced');
    c.on('message', (type: number, payload: Buffer) => {
      // A frame that raced the connection's replacement or the member's removal is not
      // the member speaking any more.
      if (this.conns.get(id) !== c) return;
      this.ev.message(id, type, payload);
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
    const q = this.queued.get(id);
    if (q) {
      this.queued.delete(id);
      this.queuedSize.delete(id);
      for (const [t, p, done] of q) c.send(t, p, done);
    }
    if (c.backlogged) this.slow.add(id);
    this.ev.bound(id);
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
   * closed meanwhile (what was sent may not have arrived). Frames queued for a member we
   * are still connecting to count as sent (they are bounded, see QUEUED_MAX_BYTES).
   */
  async whenDrained(id: number): Promise<boolean> {
    const c = this.conns.get(id);
    if (!c) return this.queued.has(id);
    await c.whenDrained();
    return !c.isClosed && this.conns.get(id) === c;
  }

  /** Whether the connection to `id` is backlogged (one closed, but not yet said so, is not). */
  isBacklogged(id: number): boolean {
    return this.slow.has(id) && !this.conns.get(id)?.isClosed;
  }

  /** Bytes queued for each member (on its connection, or waiting for one). */
  queuedBytes(): Record<number, number> {
    const out: Record<number, number> = {};
    for (const [id, c] of this.conns) out[id] = c.queuedBytes;
    for (const [id, b] of this.queuedSize) out[id] = (out[id] ?? 0) + b;
    return out;
  }

  /** Closes and forgets the connection to `id` and anything queued for it. */
  drop(id: number, reason: string): void {
    const c = this.conns.get(id);
    this.conns.delete(id);
    this.unslow(id);
    this.dropQueued(id);
    c?.close(reason);
  }

  private dropQueued(id: number): void {
    const q = this.queued.get(id);
    this.queued.delete(id);
    this.queuedSize.delete(id);
    // The payloads are no longer needed: let their owners reuse them.
    if (q) for (const [, , done] of q) done?.();
  }

  /**
   * `onWritten`: the payload is no longer needed (sent to the kernel, or dropped). Returns
   * false when the connection is backlogged (the frame is still sent: slow down) or the
   * frame was dropped.
   */
  send(to: number, type: number, payload: Buffer, onWritten?: () => void): boolean {
    if (debug.enabled) debug(`node ${this.ev.me()} -> ${to}: type ${type} (${payload.length} B)${this.conns.has(to) ? '' : ' queued'}`);
    const c = this.conns.get(to);
    if (c) return c.send(type, payload, onWritten);
    if (!this.ev.isMember(to)) {
      onWritten?.();
      return false;
    }
    const size = (this.queuedSize.get(to) ?? 0) + payload.length;
    if (size > this.queuedMax) {
      this.dropQueued(to);
      onWritten?.();
      // Next tick, as the transport's own overflow: a broadcast loop is not re-entered.
      const max = this.queuedMax;
      process.nextTick(() => this.ev.lost(to, `backpressure: more than ${max} bytes waited for a connection to it`));
      return false;
    }
    let q = this.queued.get(to);
    if (!q) this.queued.set(to, (q = []));
    q.push([type, payload, onWritten]);
    this.queuedSize.set(to, size);
    return true;
  }

  broadcast(type: number, payload: Buffer, members: Iterable<Member>): void {
    const me = this.ev.me();
    for (const m of members) if (m.id !== me) this.send(m.id, type, payload);
  }

  connected(): number[] {
    return [...this.conns.keys()];
  }

  queuedFor(): number[] {
    return [...this.queued.keys()];
  }
}
