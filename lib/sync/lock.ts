// Locks for SPMD programs, built on transactions. The state of lock `name` is one page of
// the shared heap (directory.ts), u32 words:
//   [0] 1 + the holding node's id (0: free)  [1] sequence, +1 per acquisition
//   [2] nodes waiting  [3 ..] their ids, first come first
// Acquiring is a transaction: a free lock goes to the first waiting node (or to a caller
// when nobody waits), otherwise the caller's node joins the queue and waits for the commit
// that changes the lock (a page watch, no polling). Releasing hands the lock straight to
// the first node in the queue, in the same commit: the waiter, woken by it, finds itself
// the holder and takes it without a commit of its own (a read-only transaction). Before,
// the release only freed the lock and the waiter took it in a second commit, which needed
// the commit token back from the releaser: two nodes taking turns on a lock, ~5
// transactions and ~4 ms per turn (see the README). Both commits that another node waits
// for (joining the queue, the release) are sent at once rather than with the next batch of
// this node's commits (SyncNode.flush). Nodes are served in arrival order, and callers on
// one node in call order, so no caller starves.
//
// A holder or waiter removed from the configuration is gone for good (its id never comes
// back): the next transaction that sees the lock clears it, so a dead holder's lock passes
// to the next waiter once the configuration removing it is applied.
import { ClosedError } from '../errors';
import { LockNotHeldError } from './errors';
import { SyncDirectory } from './directory';
import { MembershipCache, type SyncNode } from './sync_host';

const OWNER = 0;
const SEQ = 1;
const QLEN = 2;
const QUEUE = 3;

interface Held {
  ptr: number;
  seq: number;
  owner: number;
  /** The configuration as the acquisition last knew it: the release skips waiters it says are gone. */
  view: MembershipCache;
}

export class Locks {
  /** Per lock name: settles when this node's last caller in line has released it. */
  private readonly tails = new Map<string, Promise<void>>();
  /** Locks held by callers on this node, and how each is released. */
  private readonly held = new Map<string, () => Promise<void>>();

  constructor(
    private readonly node: SyncNode,
    private readonly directory: SyncDirectory,
  ) {}

  async lock(name: string): Promise<() => Promise<void>> {
    const ptr = await this.directory.object('lock', name);
    // Callers on this node queue here first: one of them at a time takes part in the shared queue.
    const prev = this.tails.get(name) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((r) => (done = r));
    const tail = prev.then(() => mine);
    this.tails.set(name, tail);
    const leave = () => {
      done();
      if (this.tails.get(name) === tail) this.tails.delete(name);
    };
    let held: Held;
    try {
      await prev;
      held = await this.acquire(ptr);
    } catch (e) {
      leave();
      throw e;
    }
    if (this.node.closed()) {
      // Taken while the node closes: the caller's writes under it would go to views close()
      // empties, and count for nothing. Given back (or freed by this node's removal).
      await this.release(name, held).catch(() => undefined);
      leave();
      throw new ClosedError();
    }
    let released = false;
    const release = (): Promise<void> => {
      released = true;
      this.held.delete(name);
      return this.release(name, held).finally(leave);
    };
    this.held.set(name, release);
    return () => {
      // close() released it: say so, not that the caller unlocked twice.
      if (released && this.node.closed()) throw new ClosedError();
      if (released) throw new LockNotHeldError(name, 'unlock() was already called for this acquisition; each lock() returns one unlock');
      return release();
    };
  }

  /** Releases every lock held on this node (close). */
  async releaseAll(): Promise<void> {
    await Promise.allSettled([...this.held.values()].map((r) => r()));
  }

  private async acquire(ptr: number): Promise<Held> {
    const node = this.node;
    const view = new MembershipCache(node);
    await view.refresh();
    const w = ptr >>> 2;
    const page = Math.floor(ptr / node.pageSize);
    const u32 = node.u32;
    for (;;) {
      // Read each time: a node removed and joined again has a new id (the old one is gone).
      const me = node.nodeId();
      const r = await node.run(() => {
        let owner = u32[w + OWNER];
        // Clear what the removed nodes left: their hold, their places in the queue.
        if (owner !== 0 && view.gone(owner - 1)) {
          u32[w + OWNER] = 0;
          owner = 0;
        }
        const q = Array.from(u32.subarray(w + QUEUE, w + QUEUE + u32[w + QLEN]));
        const live = q.filter((id) => !view.gone(id));
        let queue = live;
        let seq = 0;
        if (owner === me + 1) {
          // Handed over by the last holder's release (it took this node out of the queue):
          // held from that commit on, nothing to write. Ids are never reused, so it is this
          // node's; a caller here that gave up waiting left it in the queue, and the next
          // caller takes what was handed to it.
          return { seq: u32[w + SEQ], version: Number(node.versions[page]), joined: false };
        }
        if (owner === 0 && (live.length === 0 || live[0] === me)) {
          seq = (u32[w + SEQ] + 1) >>> 0;
          u32[w + OWNER] = me + 1;
          u32[w + SEQ] = seq;
          queue = live.filter((id) => id !== me);
        } else if (!live.includes(me)) {
          queue = [...live, me];
        }
        const joined = seq === 0 && queue.length > q.length;
        if (queue.length !== q.length || queue.some((id, i) => id !== q[i])) writeQueue(u32, w, queue, q.length);
        return { seq, version: Number(node.versions[page]), joined };
      });
      // The holder hands the lock to the queue it sees: it must see this node in it soon.
      if (r.joined) node.flush();
      if (r.seq !== 0) return { ptr, seq: r.seq, owner: me, view };
      // Our own commit (joining the queue) changed the page too: the watch then answers at once, and the next run finds nothing to do.
      await view.waitChange(page, r.version);
    }
  }

  private async release(name: string, h: Held): Promise<void> {
    const u32 = this.node.u32;
    const w = h.ptr >>> 2;
    const ok = await this.node.run(() => {
      if (u32[w + OWNER] !== h.owner + 1 || u32[w + SEQ] !== h.seq) return false;
      // To the first waiter not known to be gone (a gone one it hands to anyway is cleared
      // by the next acquisition that knows, as a dead holder is); nobody waiting: free.
      const q = Array.from(u32.subarray(w + QUEUE, w + QUEUE + u32[w + QLEN]));
      const live = q.filter((id) => !h.view.gone(id));
      if (live.length === 0) {
        u32[w + OWNER] = 0;
        if (q.length) writeQueue(u32, w, [], q.length);
        return 'freed';
      }
      u32[w + OWNER] = live[0] + 1;
      u32[w + SEQ] = (u32[w + SEQ] + 1) >>> 0;
      writeQueue(u32, w, live.slice(1), q.length);
      return 'handed';
    });
    // The next holder waits for this commit: send it now.
    if (ok === 'handed') this.node.flush();
    if (!ok) throw new LockNotHeldError(name, `this node lost it: it was removed from the cluster (as node ${h.owner}) while holding it, and another node took it over`);
  }
}

/** Writes the lock's queue (words [2 ..]), zeroing what is left of the `was` entries before. */
function writeQueue(u32: Uint32Array, w: number, queue: number[], was: number): void {
  u32[w + QLEN] = queue.length;
  for (let i = 0; i < queue.length; i++) u32[w + QUEUE + i] = queue[i];
  for (let i = queue.length; i < was; i++) u32[w + QUEUE + i] = 0;
}
