// The commit token (Suzuki–Kasami). A node that wants to commit broadcasts a request with
// its next sequence number; the token carries, per node, the last request it served, a
// FIFO queue of nodes waiting, the global time and the member list. First come, first
// served, and no messages at all while one node keeps committing.
import type { Member, TokenState } from './protocol';
import { now } from './lease';

export interface TokenLinks {
  me(): number;
  sendToken(to: number, t: TokenState): void;
  broadcastRequest(seq: number): void;
  /** Takes the token back from the app thread before the service uses or passes it. */
  reclaim(t: TokenState): void;
  /** The token is here and unused: it may be lent to the app thread. */
  idle(t: TokenState): void;
  /** Whether `id` can be given the token (a member we lost contact with cannot). */
  reachable(id: number): boolean;
  /** Another node asked for the idle token: `pass` hands it on, now or a little later (commits.ts). */
  requested(pass: () => void): void;
}

export class CommitToken {
  /** Highest request sequence number heard from each node. */
  readonly rn = new Map<number, number>();
  /** Present while this node holds the token. */
  token?: TokenState;
  private inUse = false;
  private waiters: Array<() => void> = [];
  /** Raised when the token is regenerated after a failure; older tokens are void. */
  generation = 0;
  /** The last transfer of the token from here, for recovery (is it in flight to a live node?). */
  lastSent = { to: 0xffff, hops: 0 };
  /** During a recovery, tokens of the current generation wait here until its outcome is known. */
  private arrivals: TokenState[] | undefined;

  constructor(private readonly links: TokenLinks) {}

  /** Creates the first token (on the founding node). */
  found(members: Member[]): void {
    this.token = { generation: 0, hops: 0, time: 0, ln: new Map(), queue: [], members };
  }

  get held(): boolean {
    return this.token !== undefined;
  }

  /** A token arrived during a recovery and waits for its outcome here (it counts as held). */
  get heldForRecovery(): boolean {
    return (this.arrivals?.length ?? 0) > 0;
  }

  /** The service is using the token (a commit or an admission in progress). */
  get busy(): boolean {
    return this.inUse;
  }

  /** When this node began waiting for a token that is away (recovery looks for a lost one). */
  waitingSince = 0;

  get waiting(): boolean {
    return this.waiters.length > 0;
  }

  /** Resolves when this node holds the token exclusively; call release() after. */
  acquire(): Promise<TokenState> {
    if (this.token && !this.inUse) {
      this.inUse = true;
      this.links.reclaim(this.token);
      return Promise.resolve(this.token);
    }
    return new Promise((resolve) => {
      const first = this.waiters.length === 0;
      if (first && !this.token) this.waitingSince = now();
      this.waiters.push(() => resolve(this.token!));
      if (first && !this.token) {
        this.request();
        this.armRetry();
      }
    });
  }

  private retryTimer?: NodeJS.Timeout;

  /**
   * Repeats our pending request while we wait: it may have reached the holder just as it
   * died, before recovery. Each repeat takes a new sequence number: a recovery that could
   * not hear from this node (it was stalled) counted its old request as served, and a
   * holder serves a member whose highest request is above what the token says it was
   * given (rn > ln), once, however many requests it sent meanwhile.
   */
  private armRetry(): void {
    if (this.retryTimer) return;
    this.retryTimer = setInterval(() => {
      if (this.token || this.waiters.length === 0) {
        clearInterval(this.retryTimer);
        this.retryTimer = undefined;
        return;
      }
      this.request();
    }, this.retryMs);
    this.retryTimer.unref();
  }

  /** Milliseconds between repeats of an unanswered token request. */
  retryMs = 1000;

  /** Requests for the token this node broadcast (dsm stats). */
  requestsSent = 0;

  /** Asks for the token (again, after a recovery, with the same sequence number). */
  request(again = false): void {
    this.requestsSent++;
    const me = this.links.me();
    const seq = again ? this.rn.get(me) ?? 0 : (this.rn.get(me) ?? 0) + 1;
    this.rn.set(me, seq);
    this.links.broadcastRequest(seq);
  }

  /**
   * Gives the token back (`t`: the one acquired; nothing happens if this node no longer
   * holds that one: it was found void meanwhile, or this node joined again).
   */
  release(t = this.token): void {
    if (!t || t !== this.token) return;
    this.inUse = false;
    const me = this.links.me();
    t.ln.set(me, this.rn.get(me) ?? 0);
    for (const m of t.members) {
      if (m.id !== me && !t.queue.includes(m.id) && this.links.reachable(m.id) && (this.rn.get(m.id) ?? 0) > (t.ln.get(m.id) ?? 0)) {
        t.queue.push(m.id);
      }
    }
    // Nodes that asked first are served first; our own waiters ask again behind them.
    if (t.queue.length > 0) {
      if (this.waiters.length === 0) this.links.requested(() => this.passIfQueued());
      else this.passIfQueued();
      if (this.waiters.length > 0) {
        this.waitingSince = now();
        this.request();
        this.armRetry();
      }
      return;
    }
    const next = this.waiters.shift();
    if (next) {
      this.inUse = true;
      next();
      return;
    }
    this.links.idle(t);
  }

  onRequest(id: number, seq: number): void {
    this.rn.set(id, Math.max(this.rn.get(id) ?? 0, seq));
    const t = this.token;
    if (t && !this.inUse && this.waiters.length === 0 && (this.rn.get(id) ?? 0) > (t.ln.get(id) ?? 0)) {
      if (!t.queue.includes(id)) t.queue.push(id);
      this.links.requested(() => this.passIfQueued());
    }
  }

  /**
   * Hands the idle token to `to`, unasked: this node has no use for it now and `to` is
   * about to ask (commits.ts pushToken). Nothing happens while it is in use, wanted here,
   * or owed to a node that asked. Returns whether it went.
   */
  push(to: number): boolean {
    const t = this.token;
    if (!t || this.inUse || this.waiters.length > 0 || t.queue.length > 0) return false;
    t.queue.push(to);
    this.passIfQueued();
    return this.token === undefined;
  }

  /** A recovery asked about the token: hold tokens that arrive until it is decided. */
  holdArrivals(): void {
    this.arrivals ??= [];
  }

  /** The recovery is decided: regenerated (old tokens are void) or not (deliver them). */
  endHold(newGeneration: number | undefined): void {
    const held = this.arrivals ?? [];
    this.arrivals = undefined;
    if (newGeneration !== undefined) this.generation = Math.max(this.generation, newGeneration);
    for (const t of held) this.onToken(t);
  }

  /** Returns false when the token is void (an older generation than a recovery). */
  onToken(t: TokenState): boolean {
    if (t.generation < this.generation) return false;
    if (this.arrivals) {
      this.arrivals.push(t);
      return true;
    }
    this.generation = t.generation;
    this.token = t;
    this.waitingSince = 0;
    const next = this.waiters.shift();
    if (next) {
      this.inUse = true;
      next();
    } else {
      // Nobody here wants it (a stale request, or regenerated): hand it on or keep it idle.
      this.inUse = false;
      this.release();
    }
    return true;
  }

  /**
   * A recovery regenerated the token under `generation`: a token this node still holds from
   * before is void (it was stalled or cut off while holding it, and came back before the
   * others removed it). Committing with it would give a global time the new token gives
   * too, and one of the two commits would be lost. Drops it and returns it (undefined: this
   * node holds no older token); a commit using it finds it gone and is refused.
   */
  dropVoid(generation: number): TokenState | undefined {
    const t = this.token;
    if (!t || t.generation >= generation) return undefined;
    this.token = undefined;
    this.inUse = false;
    this.generation = Math.max(this.generation, generation);
    if (this.waiters.length > 0) {
      // Its requests count as served in the new token (nobody heard them): ask anew.
      this.waitingSince = now();
      this.request();
      this.armRetry();
    }
    return t;
  }

  /** A member we lost contact with: never pass the token to it (it asks again if it comes back). */
  dropQueued(id: number): void {
    if (this.token) this.token.queue = this.token.queue.filter((q) => q !== id);
  }

  /** Joined again under a new id: nothing of the old membership's token is ours. */
  reset(): void {
    this.token = undefined;
    this.inUse = false;
    this.arrivals = undefined;
    this.rn.clear();
    this.lastSent = { to: 0xffff, hops: 0 };
    // Waiters (commits) were refused as partitioned; a later acquire asks anew.
    this.waiters = [];
  }

  /** Removes a dead node from the token's bookkeeping. */
  forget(id: number): void {
    this.rn.delete(id);
    if (this.token) {
      this.token.queue = this.token.queue.filter((q) => q !== id);
      this.token.members = this.token.members.filter((m) => m.id !== id);
      this.token.ln.delete(id);
      if (!this.inUse) this.passIfQueued();
    }
  }

  private passIfQueued(): void {
    const t = this.token;
    if (!t || this.inUse) return;
    if (t.queue.length === 0) {
      this.links.idle(t);
      return;
    }
    // Never to a member we lost contact with (it asks again if it comes back).
    t.queue = t.queue.filter((id) => this.links.reachable(id));
    if (t.queue.length === 0) {
      this.links.idle(t);
      return;
    }
    this.links.reclaim(t);
    const to = t.queue.shift()!;
    this.token = undefined;
    t.hops += 1;
    this.lastSent = { to, hops: t.hops };
    this.links.sendToken(to, t);
  }
}
