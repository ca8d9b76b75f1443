// Sequential and migratory pages follow the commit lease (lease.ts). A node cut off from
// the majority, or stopped, or stalled, stops committing when its lease runs out, before
// the others can have removed it and taken its place; but its app reads and writes the
// sequential pages it owns or holds copies of with no message at all, so without this it
// went on with them: after the others had decided such a page lost (or taken it over from
// a copy) and written it anew, the cut-off node still read its old contents and wrote
// values that no other node would ever see, each write returning as if it had been made
// (a stall of 3 s: the resumed node's writes all returned for the ~100 ms until it learnt
// it had been removed). Now the pages held here lose their access when the lease runs out
// (native Fence: the contents stay), and every touch of one waits here until the lease is
// back: as a member still (nothing changed meanwhile, and the touch goes on) or, once the
// node has joined again, under the cluster's models and owners (a page taken over is
// fetched, a lost one says so). A fetch of a page not here waits too: no page moves to a
// node that may not be a member. Transactional pages need none of this: a commit checks the
// lease itself.
import type { Cluster } from './cluster';

/** Who waits: a faulting thread's request slot, or a prefetch's callback. */
type Waiter = number | (() => void);

export class LeaseFence {
  private on = false;
  private waiting: Waiter[] = [];

  constructor(
    private readonly n: Cluster,
    private readonly wake: (w: Waiter) => void,
  ) {}

  /**
   * The lease is valid or not (lease.ts, on every recomputation). The native lease alarm
   * (native/lease_alarm.h) may have fenced first, on the app thread, the moment the lease ran
   * out; and, racing a renewal, fenced while the lease was valid after all: that is undone here.
   */
  lease(valid: boolean): void {
    const n = this.n;
    if (valid) {
      if (!this.on && !n.native.modelsFenced()) return;
      this.on = false;
      n.native.fenceModels(false);
      const ws = this.waiting;
      this.waiting = [];
      for (const w of ws) this.wake(w);
      return;
    }
    if (this.on) return;
    this.on = true;
    const pages = n.native.fenceModels(true);
    if (pages > 0) n.ev.log('warn', `this node's lease ran out: ${pages} sequential or migratory page(s) held here wait until a quorum of the cluster answers again`);
  }

  /** A fault on a sequential or migratory page: true when it waits for the lease. */
  hold(w: Waiter): boolean {
    // Fenced by the alarm before this thread saw the lease run out: settle which it is now,
    // rather than answering a fault the native side will only send again.
    if (!this.on && this.n.native.modelsFenced()) this.lease(this.n.lease.valid());
    if (!this.on) return false;
    this.waiting.push(w);
    return true;
  }
}
