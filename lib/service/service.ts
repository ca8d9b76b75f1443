// The service: runs in a worker thread and owns page installation, global time and the
// commit order. The app thread may be blocked inside the fault handler while a fault waits
// here, so nothing in this file may touch the app view (only the native system view).
import { CommitKind, CommitStatus, loadNativeHooks, type NativeAddon } from '../native';
import type { HotPage } from '../conflict_monitor';
import type { Cluster } from './cluster';
import { type MembershipView, PageWatches } from './watches';
import type { BarrierOutcome } from './barriers';
import { LocalTokenGate } from './local_token';
import { type AppRequest, type ServiceConfig, type ServiceReply, type ServiceStats, raiseTo, Status } from './messages';

export class Service {
  private readonly time: BigUint64Array;
  private readonly members: Uint32Array;
  /** Test hook: pages invalidated on purpose, with the byte their reinstalled copy holds. */
  private readonly testPages = new Map<number, number>();
  cluster?: Cluster;
  /** The app's hottest pages as it last published them (conflict_monitor.ts). */
  hotPages: HotPage[] = [];
  /** The app's locks waiting for a commit or a configuration (lib/sync). */
  readonly watches: PageWatches;
  /** Sends a late reply to the app (set by the worker). */
  reply?: (r: ServiceReply) => void;

  constructor(
    private readonly native: NativeAddon,
    private readonly config: ServiceConfig,
    private readonly log: (level: 'warn' | 'error', message: string) => void,
  ) {
    this.time = new BigUint64Array(config.timeBuffer);
    this.members = new Uint32Array(config.members);
    let versions: BigUint64Array | undefined;
    this.watches = new PageWatches(
      () => (versions ??= this.cluster?.table.versions ?? this.native.pageTable().versions),
      () => this.membership(),
    );
  }

  /** The configuration as applied here. */
  membership(): MembershipView {
    const c = this.cluster;
    if (!c) return { epoch: 0, members: [this.nodeId], nextId: this.nodeId + 1 };
    // Page servers run no transactions: never a barrier's party nor a lock's holder.
    return { epoch: c.membership.epoch, members: c.membersList().filter((id) => !c.members.get(id)?.pageServer), nextId: c.membership.nextId };
  }

  start(): void {
    this.native.attachService(() => this.onWake());
    // One node: the token is always here and idle, so the app thread commits on its own.
    if (!this.config.cluster) new LocalTokenGate(this.config.gate).lend(0);
  }

  stop(): void {
    this.watches.flush();
    this.native.detachService();
  }

  get nodeId(): number {
    return this.cluster ? this.cluster.id : this.config.nodeId;
  }

  /** The cluster's state the app checks on every transaction: lost pages, no quorum. */
  publishStatus(lostPages: number, partitioned: boolean): void {
    this.time[Status.lostPages] = BigInt(lostPages);
    this.time[Status.partitioned] = partitioned ? 1n : 0n;
  }

  /** Tells the app thread the members of the configuration just applied (messages.ts ServiceConfig.members). */
  publishMembers(nextId: number, ids: Iterable<number>): void {
    const m = this.members;
    const bits = new Uint32Array(m.length);
    for (const id of ids) bits[1 + (id >>> 5)] |= 1 << (id & 31);
    // Word by word to its final value, never through zero: a member in both configurations
    // never reads as gone (the heap would take its allocator slot). Bits before the next
    // id, so an id below it is never read before its bit.
    for (let i = 1; i < m.length; i++) if (m[i] !== bits[i]) Atomics.store(m, i, bits[i]);
    Atomics.store(m, 0, nextId);
  }

  /** Whether the app's running transaction is discarding `page` (tx.discardLost). */
  discarding(page: number): boolean {
    const p = BigInt(page);
    return p >= this.time[Status.discardFrom] && p < this.time[Status.discardTo];
  }

  /** Every commit of this node up to `time` is held by its backups: wake the app if it waits for that. */
  publishDurable(time: number): boolean {
    // A store then a load on each side (client.ts flushDurable): only sequentially consistent
    // accesses keep both threads from reading the other's old value (x86 lets a load pass an
    // earlier store), which left the app waiting forever for a commit already durable.
    Atomics.store(this.time, Status.durable, BigInt(time));
    const wanted = Atomics.load(this.time, Status.durableWanted);
    return wanted !== 0n && wanted <= BigInt(time);
  }

  /** How many transactions the app has issued and not yet seen settle (client.ts inFlight). */
  appInFlight(): number {
    return Number(Atomics.load(this.time, Status.inFlight));
  }

  /** The node left the configuration: commits made before may or may not have survived. */
  removedFromCluster(): void {
    this.time[Status.durableEpoch] += 1n;
  }

  /** Joined again at `time`: the times start over from the cluster's. */
  restartTimes(time: number): void {
    this.publish(time, time, true);
  }

  /** Tells the app thread this node's id (at start, and when it joins again). */
  publishNodeId(): void {
    Atomics.store(this.time, Status.nodeId, BigInt(this.nodeId));
  }

  /**
   * Makes applied/seen times visible to the app thread. Never backwards, since the app thread
   * advances these itself when it commits with the lent token, ahead of what the service has
   * processed; except when `lowered` (this node's own commits were void: it holds no valid
   * token then, so the app is not committing past them).
   */
  publish(applied: number, seen: number, lowered = false): void {
    if (lowered) {
      Atomics.store(this.time, Status.applied, BigInt(applied));
      Atomics.store(this.time, Status.seen, BigInt(seen));
    } else {
      raiseTo(this.time, Status.applied, BigInt(applied));
      raiseTo(this.time, Status.seen, BigInt(seen));
    }
    this.watches.check();
  }

  /** Woken by the native side: faults the handler could not resolve, or a commit request. */
  private onWake(): void {
    // Replies installed by data channels first: a fault on such a page then completes at once.
    if (this.cluster) {
      const data = this.native.takeData();
      if (data.length) this.cluster.dataReceived(data);
    }
    // (ticket, page, flags, request id): flags 1 a write, 2 the faulting thread sent the
    // request itself (native/fault_routes.h), with that id, 4 a transaction's fault.
    const reqs = this.native.takeRequests();
    for (let i = 0; i < reqs.length; i += 4) {
      const slot = reqs[i];
      const page = reqs[i + 1];
      try {
        if (this.testPages.has(page) || !this.cluster) {
          this.resolveLocally(page);
          this.native.completeRequest(slot);
        } else {
          this.cluster.fetch(slot, page, (reqs[i + 2] & 1) !== 0, (reqs[i + 2] & 2) !== 0 ? reqs[i + 3] : 0, (reqs[i + 2] & 4) !== 0);
        }
      } catch (e) {
        this.log('error', `resolving a fault on page ${page} failed: ${(e as Error).message}`);
        this.native.completeRequest(slot);
      }
    }
    const kind = this.native.takeCommitRequest();
    if (kind !== 0) this.commit(kind);
  }

  private resolveLocally(page: number): void {
    const fill = this.testPages.get(page);
    this.testPages.delete(page);
    const data = new Uint8Array(this.config.pageSize);
    if (fill !== undefined) data.fill(fill);
    // An invalid page without a cluster only arises from the test hook; its contents live
    // nowhere else, so it is rebuilt from what the hook recorded.
    this.native.install(page, data, Number(this.time[0]), this.nodeId);
  }

  private commit(kind: number): void {
    const c = this.cluster;
    if (!c) {
      // One node: the token is always here and nothing can doom a finished transaction.
      const t = Number(this.time[0]) + 1;
      if (kind === CommitKind.commit) {
        this.publish(t, t);
        this.native.commit(t, this.nodeId);
        this.native.replyCommit(CommitStatus.committed, t);
      } else {
        this.native.replyCommit(CommitStatus.committed, t - 1);
      }
      return;
    }
    const op =
      kind === CommitKind.commit ? c.commit() : kind === CommitKind.hold ? c.holdForApp() : kind === CommitKind.release ? c.releaseForApp() : c.sync();
    op.then(
      ([status, time]) => this.native.replyCommit(status, time),
      (e: Error) => {
        this.log('error', `commit failed: ${e.message}`);
        this.native.replyCommit(CommitStatus.failed, 0);
      },
    );
  }

  stats(): ServiceStats {
    const c = this.cluster;
    return {
      remoteFetches: c?.remoteFetches ?? 0,
      forwardedRequests: c?.forwarded ?? 0,
      members: c ? c.membersList() : [this.nodeId],
      tokenHeld: c ? c.token.held : true,
      appliedTime: Number(this.time[0]),
      seenTime: Number(this.time[1]),
      dataChannels: c ? c.dataChannelOwners() : [],
      sequential: c ? { ...c.sequential.counts } : { readFetches: 0, ownershipMoves: 0, invalidationsSent: 0, forwarded: 0, localRefused: 0, searches: 0, pushed: 0, staleReplies: 0, laterReplies: 0 },
      backupsCatchingUp: c ? c.replication.catchingUp() : [],
      partitioned: this.time[Status.partitioned] !== 0n,
    };
  }

  handle(req: AppRequest): ServiceReply | undefined {
    switch (req.type) {
      case 'test-unhandled-rejection':
        void Promise.reject(new Error('a rejection nobody handles (test hook)'));
        return { id: req.id, ok: true };
      case 'test-invalidate':
        this.testPages.set(req.page, req.fill);
        this.native.invalidate(req.page, Number(this.time[0]), this.nodeId);
        return { id: req.id, ok: true };
      case 'test-touch-app-view':
        loadNativeHooks().readByte(req.address);
        return { id: req.id, ok: true };
      case 'stats':
        return { id: req.id, ok: true, stats: this.stats() };
      case 'watch':
        this.watches.add(req.pages, req.since, req.epoch, (view) => this.reply?.({ id: req.id, ok: true, view }));
        return undefined;
      case 'hot-pages':
        this.hotPages = req.pages;
        return { id: req.id, ok: true };
      case 'wait-time': {
        // Answers with the time applied, reached or not: the app tells a time-out apart.
        if (!this.cluster) return { id: req.id, ok: true, time: Number(this.time[0]) };
        const log = this.cluster.log;
        void log.waitUntil(req.time, req.timeoutMs).then(() => this.reply?.({ id: req.id, ok: true, time: log.applied }));
        return undefined;
      }
      case 'durable-read':
        if (!this.cluster) return { id: req.id, ok: true };
        this.cluster.durableReads.wait(req.time, (uncertain) =>
          this.reply?.(
            uncertain
              ? { id: req.id, ok: false, code: 'ERR_DSM_COMMIT_UNCERTAIN', message: 'this node was cut off or removed from the cluster before the commits a read-only transaction read were on a page server\'s disk: they may not be in the cluster\'s history' }
              : { id: req.id, ok: true },
          ),
        );
        return undefined;
      case 'prefetch':
        // One node: every page is here already.
        if (!this.cluster) return { id: req.id, ok: true };
        this.cluster.prefetch(req.first, req.count, req.write, () => this.reply?.({ id: req.id, ok: true }));
        return undefined;
      case 'barrier': {
        const answer = (barrier: BarrierOutcome) => this.reply?.({ id: req.id, ok: true, barrier });
        // One node: the only member, so the only possible party.
        if (!this.cluster) return { id: req.id, ok: true, barrier: req.parties === 1 ? { outcome: 'released' } : { outcome: 'broken', why: `it has ${req.parties} parties but this node runs alone (no listen or peers), so no other node can ever join it` } };
        this.cluster.barriers.wait(req.name, req.parties, req.time, answer);
        return undefined;
      }
      case 'barrier-state':
        return { id: req.id, ok: true, barrierState: this.cluster?.barriers.state(req.name) };
      case 'test-send':
        this.cluster?.links.send(req.to, req.msg, Buffer.from(req.payload));
        return { id: req.id, ok: true };
      case 'close':
        return undefined;
    }
  }
}
