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
//
// A caller that stops waiting (its time-out ran out, or a transaction of its acquisition
// failed) takes its node out of the queue in one more transaction, and passes on a lock
// already handed to it: left in the queue, the node would be handed the lock later with
// nobody on it to release it, and every other node would wait until it is removed.
import { ClosedError, TimeoutError } from '../errors';
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

  /** `timeoutMs`: give up after this long (0: only if free at once); undefined: wait as long as it takes. */
  async lock(name: string, timeoutMs?: number): Promise<() => Promise<void>> {
    const deadline = timeoutMs === undefined ? Infinity : performance.now() + timeoutMs;
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
      if ((await within(prev, deadline)) === TIMED_OUT) throw timedOut(name, timeoutMs!, 'a caller on this node held it or waited before this one');
      held = await this.acquire(name, ptr, deadline, timeoutMs);
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

  private async acquire(name: string, ptr: number, deadline: number, timeoutMs: number | undefined): Promise<Held> {
    const node = this.node;
    const view = new MembershipCache(node);
    await view.refresh();
    const page = Math.floor(ptr / node.pageSize);
    let queued = false;
    try {
      for (;;) {
        // Read each time: a node removed and joined again has a new id (the old one is gone).
        const me = node.nodeId();
        // Past the deadline the run still takes a lock that is free for this node or was
        // handed to it, and otherwise leaves the queue instead of joining it.
        const r = await node.run(() => this.step(ptr, view, me, performance.now() < deadline ? 'join' : 'leave'));
        // The holder hands the lock to the queue it sees: it must see this node in it soon.
        if (r.joined) node.flush();
        queued = r.queued;
        if (r.seq !== 0) return { ptr, seq: r.seq, owner: me, view };
        if (!queued && performance.now() >= deadline) throw timedOut(name, timeoutMs!, 'another node held it');
        // Our own commit (joining the queue) changed the page too: the watch then answers at once, and the next run finds nothing to do.
        await within(view.waitChange(page, r.version), deadline);
      }
    } catch (e) {
      if (queued && !(e instanceof ClosedError)) await this.withdraw(ptr, view).catch(() => undefined);
      throw e;
    }
  }

  /**
   * One look at the lock inside a transaction: clears what removed nodes left, takes the
   * lock if it is this node's turn, and otherwise joins the queue ('join') or leaves it
   * ('leave'; a lock handed to this node meanwhile is taken all the same).
   */
  private step(ptr: number, view: MembershipCache, me: number, mode: 'join' | 'leave') {
    const u32 = this.node.u32;
    const w = ptr >>> 2;
    const version = () => Number(this.node.versions[Math.floor(ptr / this.node.pageSize)]);
    let owner = u32[w + OWNER];
    // Clear what the removed nodes left: their hold, their places in the queue.
    if (owner !== 0 && view.gone(owner - 1)) {
      u32[w + OWNER] = 0;
      owner = 0;
    }
    const q = Array.from(u32.subarray(w + QUEUE, w + QUEUE + u32[w + QLEN]));
    const live = q.filter((id) => !view.gone(id));
    if (owner === me + 1) {
      // Handed over by the last holder's release (it took this node out of the queue):
      // held from that commit on, nothing to write. Ids are never reused, so it is this
      // node's; a caller here whose withdrawal failed left it in the queue, and the next
      // caller takes what was handed to it.
      return { seq: u32[w + SEQ], version: version(), joined: false, queued: false };
    }
    let queue = live;
    let seq = 0;
    if (owner === 0 && (live.length === 0 || live[0] === me)) {
      seq = (u32[w + SEQ] + 1) >>> 0;
      u32[w + OWNER] = me + 1;
      u32[w + SEQ] = seq;
      queue = live.filter((id) => id !== me);
    } else if (mode === 'leave') {
      queue = live.filter((id) => id !== me);
    } else if (!live.includes(me)) {
      queue = [...live, me];
    }
    const joined = seq === 0 && queue.length > q.length;
    if (queue.length !== q.length || queue.some((id, i) => id !== q[i])) writeQueue(u32, w, queue, q.length);
    return { seq, version: version(), joined, queued: seq === 0 && queue.includes(me) };
  }

  /**
   * Takes this node out of the lock's queue after its caller gave up, and passes on a lock
   * handed to it meanwhile (as a release would), so that no node waits on a holder that
   * nobody will release.
   */
  private async withdraw(ptr: number, view: MembershipCache): Promise<void> {
    const me = this.node.nodeId();
    const u32 = this.node.u32;
    const w = ptr >>> 2;
    const handed = await this.node.run(() => {
      if (u32[w + OWNER] === me + 1) return handOn(u32, w, view) === 'handed';
      const q = Array.from(u32.subarray(w + QUEUE, w + QUEUE + u32[w + QLEN]));
      if (q.includes(me)) writeQueue(u32, w, q.filter((id) => id !== me), q.length);
      return false;
    });
    if (handed) this.node.flush();
  }

  private async release(name: string, h: Held): Promise<void> {
    const u32 = this.node.u32;
    const w = h.ptr >>> 2;
    const ok = await this.node.run(() => {
      if (u32[w + OWNER] !== h.owner + 1 || u32[w + SEQ] !== h.seq) return false;
      return handOn(u32, w, h.view);
    });
    // The next holder waits for this commit: send it now.
    if (ok === 'handed') this.node.flush();
    if (!ok) throw new LockNotHeldError(name, `this node lost it: it was removed from the cluster (as node ${h.owner}) while holding it, and another node took it over`);
  }
}

/**
 * Inside a transaction of the holder: hands the lock to the first waiter not known to be
 * gone (a gone one it hands to anyway is cleared by the next acquisition that knows, as a
 * dead holder is), or frees it when nobody waits.
 */
function handOn(u32: Uint32Array, w: number, view: MembershipCache): 'handed' | 'freed' {
  const q = Array.from(u32.subarray(w + QUEUE, w + QUEUE + u32[w + QLEN]));
  const live = q.filter((id) => !view.gone(id));
  if (live.length === 0) {
    u32[w + OWNER] = 0;
    if (q.length) writeQueue(u32, w, [], q.length);
    return 'freed';
  }
  u32[w + OWNER] = live[0] + 1;
  u32[w + SEQ] = (u32[w + SEQ] + 1) >>> 0;
  writeQueue(u32, w, live.slice(1), q.length);
  return 'handed';
}

const TIMED_OUT = Symbol('timed out');

/** `p`, or TIMED_OUT once `deadline` (a performance.now() time) has passed first. */
async function within<T>(p: Promise<T>, deadline: number): Promise<T | typeof TIMED_OUT> {
  if (deadline === Infinity) return p;
  p.catch(() => undefined); // given up on, it may still fail (a close): nobody is left to hear it
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<typeof TIMED_OUT>((r) => (timer = setTimeout(() => r(TIMED_OUT), Math.max(0, deadline - performance.now()))));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

function timedOut(name: string, timeoutMs: number, why: string): TimeoutError {
  return new TimeoutError(
    `dsm.lock("${name}") was not taken within ${timeoutMs} ms (${why}); this caller holds nothing and waits no more. ` +
      'Retry later, or pass a larger timeoutMs (or none) to wait as long as it takes',
  );
}

/** Writes the lock's queue (words [2 ..]), zeroing what is left of the `was` entries before. */
function writeQueue(u32: Uint32Array, w: number, queue: number[], was: number): void {
  u32[w + QLEN] = queue.length;
  for (let i = 0; i < queue.length; i++) u32[w + QUEUE + i] = queue[i];
  for (let i = queue.length; i < was; i++) u32[w + QUEUE + i] = 0;
}
