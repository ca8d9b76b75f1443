// The commit lease. A node may commit (with the token, or with the token lent to its app
// thread) only while it knows that a quorum of the configuration's voters heard from it
// recently: each member answers our pings, and the lease runs LEASE_MS from the send time
// of the newest ping a quorum has answered. A member that takes part in a recovery stops
// answering the pings of the members that recovery lost, and the recovery waits LEASE_MS
// before it regenerates the token, so a
// holder cut off from the majority (or stopped, or stalled) has stopped committing before
// anyone can have taken its place. Times are this process's monotonic clock in ms.
import { performance } from 'node:perf_hooks';
import { decode, encode, Msg } from './protocol';
import { isQuorum } from './membership';
import type { Cluster } from './cluster';

/** How long an answered ping keeps the lease. */
export const LEASE_MS = 1000;
/** Pings go out this often (a few per lease, so one lost or late answer costs nothing). */
const PING_MS = 150;
/**
 * Test hook: this node answers the pings it gets only once it has sent a request for this
 * page, so a member that needs its answer for its lease gets that request without a lease
 * (page_serving.ts serve), and the answers right behind it.
 */
const SILENT_UNTIL_PAGE = process.env.DSM_TEST_PINGS_UNANSWERED_UNTIL_PAGE ? Number(process.env.DSM_TEST_PINGS_UNANSWERED_UNTIL_PAGE) : undefined;

export function now(): number {
  return performance.timeOrigin + performance.now();
}

export class Lease {
  /** Per member: the send time of the newest ping it answered. */
  private readonly echoed = new Map<number, number>();
  private timer?: NodeJS.Timeout;
  /** Recomputes the lease when it runs out, unless answers extend it first. */
  private expiry?: NodeJS.Timeout;
  private expiryAt = 0;
  /** While this node takes part in a recovery it answers no pings from the members the recovery lost. */
  private ignoring: Set<number> | undefined;
  private until = 0;
  /** When the lease last became invalid (undefined while valid). */
  private invalidSince: number | undefined = now();
  /** Invalid for longer than LEASE_MS: this side has no quorum (ERR_DSM_PARTITIONED). */
  partitioned = false;
  private waiters: Array<{ resolve: () => void; reject: () => void }> = [];
  /** The test hook's pings not answered yet (undefined: the hook is off, or over). */
  private unanswered = SILENT_UNTIL_PAGE !== undefined ? new Map<number, Buffer>() : undefined;

  constructor(private readonly n: Cluster) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), PING_MS);
    this.timer.unref();
    this.changed();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.expiry) clearTimeout(this.expiry);
    this.expiry = undefined;
  }

  private tick(): void {
    const n = this.n;
    const t = now();
    for (const id of n.members.keys()) if (id !== n.id && n.links.has(id)) n.links.send(id, Msg.LeasePing, encode.time(Math.floor(t)));
    this.changed();
    n.membership.checkUnconnected();
    n.recovery.checkToken();
    n.recovery.checkUnreached();
  }

  /** Pings one member at once (a new connection: a joiner needs its lease soon). */
  ping(id: number): void {
    this.n.links.send(id, Msg.LeasePing, encode.time(Math.floor(now())));
  }

  /** LeasePing. */
  onPing(from: number, payload: Buffer): void {
    const t = decode.time(payload);
    const { generation, time } = this.n.recovery.regenerated;
    if (this.unanswered) {
      this.unanswered.set(from, payload);
      return;
    }
    if (!this.ignoring?.has(from)) this.n.links.send(from, Msg.LeaseEcho, encode.leaseEcho({ sent: Math.floor(t), generation, time }));
  }

  /** The test hook above: a request for `page` went out; the pings held are answered now. */
  requestSent(page: number): void {
    const held = this.unanswered;
    if (!held || page !== SILENT_UNTIL_PAGE) return;
    this.unanswered = undefined;
    for (const [from, payload] of held) this.onPing(from, payload);
  }

  /**
   * LeaseEcho. An echo from a member that knows of a newer regeneration of the token than
   * this node does renews nothing before this node has taken that regeneration in: it may
   * hold the token the regeneration replaced (recovery.ts lateRegeneration).
   */
  onEcho(from: number, payload: Buffer): void {
    const e = decode.leaseEcho(payload);
    if (e.generation > this.n.recovery.regenerated.generation) this.n.recovery.lateRegeneration(from, e.generation, e.time);
    if (e.sent > (this.echoed.get(from) ?? 0)) this.echoed.set(from, e.sent);
    this.changed();
  }

  /**
   * Recovery: stop answering pings from the members it lost (undefined: answer everyone
   * again). Only they can hold a token the recovery may regenerate, and their leases must
   * run out; everyone else's go on, so a recovery does not stop the majority's commits.
   */
  hold(lost: Iterable<number> | undefined): void {
    this.ignoring = lost === undefined ? undefined : new Set(lost);
  }

  /** Until when this node may commit (Infinity: it is a quorum alone). */
  get validUntil(): number {
    return this.until;
  }

  valid(at = now()): boolean {
    return at < this.until;
  }

  /** Recomputes the lease (membership or answers changed) and tells the app thread. */
  changed(): void {
    const n = this.n;
    const voters = n.membership.voters();
    let until: number;
    if (isQuorum(voters, (id) => id === n.id)) {
      until = Infinity;
    } else {
      // The newest time t such that the voters that answered a ping sent at t or later,
      // with this node, make a quorum.
      const times = voters.filter((v) => v !== n.id && !n.membership.suspects.has(v)).map((v) => this.echoed.get(v) ?? 0).sort((a, b) => b - a);
      until = 0;
      for (const t of times) {
        if (t === 0) break;
        if (isQuorum(voters, (id) => id === n.id || (this.echoed.get(id) ?? 0) >= t)) {
          until = t + LEASE_MS;
          break;
        }
      }
    }
    this.until = until;
    n.gate.setLease(until);
    const t = now();
    // Data channels' native ends serve pages only while it runs (page_serving.ts serve).
    n.native.setServing({ leaseMs: until - t });
    const valid = this.valid(t);
    if (valid) this.invalidSince = undefined;
    else this.invalidSince ??= t;
    // Sequential and migratory pages held here follow the lease (lease_fence.ts), from the
    // moment it runs out: the pings' interval alone would let a cut-off node touch them
    // for up to PING_MS more, while the others may already be recovering.
    n.sequential.fence.lease(valid);
    if (valid && until !== Infinity && until !== this.expiryAt) {
      this.expiryAt = until;
      if (this.expiry) clearTimeout(this.expiry);
      this.expiry = setTimeout(() => this.changed(), until - t + 1);
      this.expiry.unref();
    }
    const partitioned = !valid && t - this.invalidSince! > LEASE_MS;
    if (partitioned !== this.partitioned) {
      this.partitioned = partitioned;
      n.setPartitioned(partitioned);
      if (partitioned) n.ev.log('warn', `no quorum of configuration ${n.membership.epoch} answers: this node stops committing until it does`);
      else n.ev.log('warn', `a quorum of configuration ${n.membership.epoch} answers again`);
    }
    if (valid || partitioned) {
      const ws = this.waiters;
      this.waiters = [];
      for (const w of ws) (valid ? w.resolve : w.reject)();
    }
  }

  /** Resolves once the lease is valid; rejects if this node is (or becomes) partitioned. */
  whenValid(): Promise<void> {
    if (this.valid()) return Promise.resolve();
    if (this.partitioned) return Promise.reject(new Error('partitioned'));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject: () => reject(new Error('partitioned')) }));
  }

  /** A fresh start (joined, or joined again). */
  reset(): void {
    this.echoed.clear();
    this.ignoring = undefined;
    this.invalidSince = now();
    this.changed();
  }
}
