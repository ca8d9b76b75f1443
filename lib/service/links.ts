// The connections to members: one authenticated connection per member, frames queued for
// a member we are still connecting to, and the entry point of every frame a member sends.
import type { Member } from './protocol';
import type { Connection } from './transport';
import { debug } from './debug';

type Queued = [type: number, payload: Buffer, onWritten: (() => void) | undefined];

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

  constructor(private readonly ev: LinkEvents) {}

  has(id: number): boolean {
    return this.conns.has(id);
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
        this.ev.lost(id, reason);
      }
    });
    const q = this.queued.get(id);
    if (q) {
      this.queued.delete(id);
      for (const [t, p, done] of q) c.send(t, p, done);
    }
    this.ev.bound(id);
  }

  /** Closes and forgets the connection to `id` and anything queued for it. */
  drop(id: number, reason: string): void {
    const c = this.conns.get(id);
    this.conns.delete(id);
    this.queued.delete(id);
    c?.close(reason);
  }

  /** `onWritten`: the payload is no longer needed (sent to the kernel, or dropped). */
  send(to: number, type: number, payload: Buffer, onWritten?: () => void): void {
    if (debug.enabled) debug(`node ${this.ev.me()} -> ${to}: type ${type} (${payload.length} B)${this.conns.has(to) ? '' : ' queued'}`);
    const c = this.conns.get(to);
    if (c) {
      c.send(type, payload, onWritten);
      return;
    }
    if (!this.ev.isMember(to)) {
      onWritten?.();
      return;
    }
    let q = this.queued.get(to);
    if (!q) this.queued.set(to, (q = []));
    q.push([type, payload, onWritten]);
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
