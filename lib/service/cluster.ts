// The cluster as seen from one node's service thread. This file is the wiring: the state
// every part shares (identity, the page table, the token, the commit log) and the one table
// from message type to handler. Each responsibility lives in its own file:
//   links.ts          connections to members, queued frames, send and broadcast
//   admission.ts      Hello routing, joining, admitting joiners under the token
//   redial.ts         dialling members again: a connection that ended, a suspect
//   membership.ts     the numbered configuration (members, lost pages) and the quorum rule
//   lease.ts          the commit lease: no quorum hears us, no commits
//   commits.ts        the commit path (token, lent token, commit ring) and applying commits
//   replication.ts    durability: backups of each commit, acknowledgements
//   durable_reads.ts  'disk': read-only transactions wait for a page server's disk too
//   pager.ts          fetching pages (read-ahead, scans, searches)
//   page_serving.ts   answering page requests
//   data_channels.ts  native page streams: replies installed, faults sent and answered off JavaScript
//   recovery.ts       after a loss: the token (regenerated if it died) and a configuration without the lost
//   regenerations.ts  the token's regenerations a node knows of, and which commits they made void
//   leaving.ts        graceful leave (hand-over of pages and token)
//   barriers.ts       dsm.barrier: arrivals, releases, the coordinator
// Runs in the service worker; touches the region only through the native system view.
import type { MessagePort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { Counter, type NativeAddon } from '../native';
import { CommitLog } from './commit_log';
import type { CommitRing } from './commit_ring';
import { debug } from './debug';
import type { LocalTokenGate } from './local_token';
import { encode, LOST_OWNER, type Member, Msg, NO_NODE } from './protocol';
import { CommitToken } from './token';
import type { Connection, Transport } from './transport';
import { Admission } from './admission';
import { Redial } from './redial';
import { Barriers } from './barriers';
import { Commits, Partitioned } from './commits';
import { DataChannels } from './data_channels';
import { Leaving } from './leaving';
import { Lease } from './lease';
import { Links } from './links';
import { Membership } from './membership';
import { Pager } from './pager';
import { PageServing } from './page_serving';
import { Sequential } from './sequential';
import { Recovery } from './recovery';
import { type Durability, Replication } from './replication';
import { DurableReads } from './durable_reads';
import { decode } from './protocol';
import type { StoreFeed } from '../pageserver/feed';
import { type ClusterIdentity, newIdentity } from './cluster_identity';

export interface ClusterConfig {
  /** The region's address: a joiner whose region differs in address, size or page size is refused. */
  base: number;
  pageSize: number;
  numPages: number;
  peers: string[];
  /** Milliseconds to keep trying to reach a peer when joining. */
  joinTimeoutMs: number;
  durability: Durability;
  /** Backups of each commit (durability 'replicated'). */
  replicas: number;
  /** How long a committing node keeps the token after a request (durability 'none'; 0: not at all). */
  tokenBatchMs: number;
  /**
   * This node is a page server storing every commit in this directory (lib/pageserver).
   * `found`: without peers, found the cluster again from the store even if members of its
   * cluster answer at the addresses it recorded (lib/pageserver/live_cluster.ts).
   */
  pageServer?: { dir: string; found?: boolean };
}

export interface ClusterEvents {
  log(level: 'warn' | 'error', message: string): void;
  event(type: 'peer-join' | 'peer-leave', id: number): void;
  /** The app-visible times (commit_log.ts CommitLogLinks.publish: only raised unless `lowered`). */
  publish(applied: number, seen: number, lowered?: boolean): void;
  /** The app-visible state of the cluster: pages decided lost, and whether this node has no quorum. */
  status(lostPages: number, partitioned: boolean): void;
  /** Whether the app is discarding `page` (tx.discardLost): its fault gets a zero page, not an error. */
  discarding(page: number): boolean;
  /** This node was removed and joined again as `id`, at global time `time`. */
  rejoined(id: number, time: number): void;
  /** Every commit of this node up to `time` is held by its backups. */
  durable(time: number): void;
  /** How many transactions the app has issued and not yet seen settle (client.ts inFlight). */
  appInFlight(): number;
  /**
   * This node's commits not yet held by backups may or may not be in the cluster's history;
   * `removed`: the node left the configuration (its times start over).
   */
  uncertain(removed: boolean): void;
  /** The configuration this node applied: its members and the id the next joiner gets. */
  members(nextId: number, ids: Iterable<number>): void;
  /** Long work in progress (a page server loading its store or catching up). */
  progress(phase: 'loading' | 'catching-up', done: number, total: number): void;
}

type Handler = (n: Cluster, from: number, payload: Buffer) => void;

/** Every message a member may send, and who handles it. Anything else closes the connection. */
const handlers: Record<number, Handler> = {
  [Msg.TokenRequest]: (n, from, p) => {
    const r = decode.tokenRequest(p);
    // A request is from the member whose connection it came on, whatever id it names.
    if (r.id !== from) throw new Error(`a token request naming node ${r.id} came from node ${from}`);
    n.token.onRequest(from, r.seq);
  },
  [Msg.Token]: (n, from, p) => {
    const t = decode.token(p);
    if (!n.token.onToken(t)) n.ev.log('warn', `dropped a void token of generation ${t.generation} from node ${from}`);
    else n.recovery.tokenArrived();
  },
  [Msg.Commit]: (n, from, p) => n.commits.onCommit(from, p),
  [Msg.CommitAck]: (n, from, p) => n.replication.onAck(from, p),
  [Msg.DurableQuery]: (n, from, p) => {
    const time = decode.time(p);
    if (!n.store) throw new Error(`node ${from} asked a node that is no page server what its disk holds`);
    n.store.onDurableQuery(from, time);
  },
  [Msg.DurableAt]: (n, from, p) => n.durableReads.onDurableAt(from, p),
  [Msg.BackupRequest]: (n, from, p) => n.replication.onBackupRequest(from, p),
  [Msg.ResendRequest]: (n, from, p) => n.commits.onResendRequest(from, p),
  [Msg.ResendGone]: (n, from, p) => n.commits.onResendGone(from, p),
  [Msg.PageRequest]: (n, from, p) => n.serving.onRequest(from, p),
  [Msg.PageReply]: (n, from, p) => n.pager.onReply(from, p),
  [Msg.SeqRequest]: (n, from, p) => n.sequential.onRequest(from, p),
  [Msg.SeqReply]: (n, from, p) => n.sequential.onReply(from, p),
  [Msg.SeqInvalidate]: (n, from, p) => n.sequential.invalidations.onInvalidate(from, p),
  [Msg.SeqInvalidateAck]: (n, from, p) => n.sequential.invalidations.onAck(from, p),
  [Msg.SeqPush]: (n, from, p) => n.sequential.pushes.onPush(from, p),
  [Msg.LeasePing]: (n, from, p) => n.lease.onPing(from, p),
  [Msg.LeaseEcho]: (n, from, p) => n.lease.onEcho(from, p),
  [Msg.Removed]: (n, from, p) => n.membership.onRemoved(from, p),
  [Msg.Gone]: (n, from, p) => n.membership.onGone(from, p),
  [Msg.Leave]: (n, from, p) => n.leaving.onLeave(from, p),
  [Msg.Handover]: (n, from, p) => n.leaving.onHandover(from, p),
  [Msg.HandoverDone]: (n, from) => n.leaving.onHandoverDone(from),
  [Msg.HandoverAck]: (n) => n.leaving.onHandoverAck(),
  [Msg.SeqTakeOver]: (n, from, p) => n.leaving.onSeqTakeOver(from, p),
  [Msg.SeqAdopt]: (n, from, p) => n.sequential.search.onAdopt(from, p),
  [Msg.SeqLost]: (n, from, p) => n.sequential.loss.onLost(from, p),
  [Msg.SeqTakenOver]: (n, _from, p) => n.leaving.onSeqTakenOver(p),
  [Msg.LeaveIntent]: (n, from, p) => n.leaving.intent.onIntent(from, p),
  [Msg.LeaveIntentAck]: (n, from, p) => n.leaving.intent.onAck(from, p),
  [Msg.RecoverQuery]: (n, from, p) => n.recovery.onQuery(from, p),
  [Msg.RecoverState]: (n, from, p) => n.recovery.onState(from, p),
  [Msg.Recovered]: (n, from, p) => n.recovery.onRecovered(from, p),
  [Msg.BarrierArrive]: (n, from, p) => n.barriers.onArrive(from, p),
  [Msg.BarrierAnswer]: (n, from, p) => n.barriers.onAnswer(from, p),
};

export class Cluster {
  id = NO_NODE;
  address = '';
  /** Which cluster this is (cluster_identity.ts): made by the founder, learnt at joining. */
  identity: ClusterIdentity = { id: '', foundedAt: 0, from: '' };
  closing = false;
  readonly table: { states: Uint8Array; owners: Uint16Array; versions: BigUint64Array };
  readonly token: CommitToken;
  readonly log: CommitLog;
  readonly links: Links;
  readonly membership: Membership;
  readonly admission: Admission;
  readonly redial: Redial;
  readonly commits: Commits;
  readonly replication: Replication;
  readonly durableReads: DurableReads;
  readonly pager: Pager;
  readonly serving: PageServing;
  readonly sequential: Sequential;
  readonly data: DataChannels;
  readonly recovery: Recovery;
  readonly leaving: Leaving;
  readonly lease: Lease;
  readonly barriers: Barriers;
  /** Waits for the token that a lost quorum (or a rejoin) must end (unlessPartitioned). */
  private partitionWaiters = new Set<(e: Error) => void>();
  private rejoining = false;
  /**
   * Nothing can be fetched for a transaction (no quorum, or joining again): a transaction's
   * faults are not left waiting until the cut heals (native/dsm.h RefuseRunFaults). Its
   * commit would be refused anyway.
   */
  private refusingFaults = false;
  /** For `dsm stats`. */
  statsForClient?: () => unknown;
  /** A page server's store of every commit (lib/pageserver/feed.ts); absent on other nodes. */
  store?: StoreFeed;

  constructor(
    readonly native: NativeAddon,
    readonly transport: Transport,
    readonly config: ClusterConfig,
    readonly ev: ClusterEvents,
    readonly gate: LocalTokenGate,
    readonly localCommits: MessagePort,
    readonly ring: CommitRing,
  ) {
    this.table = native.pageTable();
    this.membership = new Membership(this);
    this.links = new Links({
      message: (from, type, payload) => this.dispatch(from, type, payload),
      lost: (id, reason) => this.membership.lost(id, reason),
      bound: (id) => {
        this.lease.ping(id);
        this.sequential.linkBound(id);
        this.barriers.linkBound(id);
      },
      isMember: (id) => this.members.has(id),
      me: () => this.id,
      warn: (m) => ev.log('warn', m),
    });
    this.lease = new Lease(this);
    this.commits = new Commits(this);
    this.replication = new Replication(this, config.durability, config.replicas);
    this.durableReads = new DurableReads(this);
    this.pager = new Pager(this);
    this.serving = new PageServing(this);
    this.sequential = new Sequential(this);
    this.data = new DataChannels(this);
    this.recovery = new Recovery(this);
    this.leaving = new Leaving(this);
    this.admission = new Admission(this);
    this.redial = new Redial(this);
    this.barriers = new Barriers(this);
    this.token = new CommitToken({
      me: () => this.id,
      sendToken: (to, t) => this.links.send(to, Msg.Token, encode.token(t)),
      broadcastRequest: (seq) => this.links.broadcast(Msg.TokenRequest, encode.tokenRequest(this.id, seq), this.members.values()),
      reclaim: (t) => this.commits.reclaim(t),
      idle: () => this.commits.maybeLend(),
      reachable: (id) => this.members.has(id) && !this.membership.suspects.has(id),
      requested: (pass) => this.commits.passSoon(pass),
    });
    this.log = new CommitLog({
      apply: (rec) => this.commits.applyRemote(rec),
      isVoid: (rec) => this.recovery.isVoid(rec),
      droppedVoid: (rec) => ev.log('warn', `dropped commit ${rec.time} of node ${rec.node} waiting to be applied: made with a token a recovery replaced before that time`),
      requestResend: (from, after, upTo) => {
        const payload = encode.resendRequest(after, upTo);
        if (from >= 0 && from !== this.id && this.members.has(from)) this.links.send(from, Msg.ResendRequest, payload);
        else this.links.broadcast(Msg.ResendRequest, payload, this.members.values());
      },
      publish: (a, s, lowered) => {
        ev.publish(a, s, lowered);
        // Pages of commits up to `a` have gone out: data channels may serve them natively.
        native.setServing({ servable: a });
        this.commits.maybeLend();
      },
    });
    transport.on('connection', (c: Connection) => this.admission.adopt(c));
  }

  get members(): Map<number, import('./protocol').Member> {
    return this.membership.members;
  }

  /**
   * Founds a new cluster (no peers) or joins one through the first peer that answers. A page
   * server given no peers first asks the members its store recorded whether its cluster
   * still runs, and joins it if so (lib/pageserver/live_cluster.ts).
   */
  async start(): Promise<void> {
    this.address = await this.transport.listen();
    const peers = this.config.peers.length === 0 && this.store && !this.config.pageServer?.found ? await this.store.liveCluster() : this.config.peers;
    if (peers.length === 0) {
      this.id = 0;
      const me: Member = this.config.pageServer ? { id: 0, address: this.address, pageServer: true } : { id: 0, address: this.address };
      this.membership.found(me);
      this.token.found([me]);
      this.identity = this.store ? this.store.founding() : newIdentity();
      if (this.store && this.store.store.appliedTime > 0) this.store.foundFromStore();
    } else {
      await this.admission.join(peers);
    }
    this.lease.start();
  }

  /** This node has (or no longer has) a quorum: tell the app, and fail commits waiting for the token. */
  setPartitioned(on: boolean): void {
    this.publishStatus();
    if (!on) return;
    this.replication.partitioned();
    this.barriers.partitioned();
    this.failPartitionWaiters();
  }

  /**
   * `p`, unless this node loses its quorum (or joins again) first: then `Partitioned`. The
   * wait is withdrawn once `p` settles: a signal left behind by every token wait kept each
   * one's closures and token state alive (a node committing for a minute grew by hundreds
   * of MiB).
   */
  unlessPartitioned<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.partitionWaiters.add(reject);
      p.then(
        (v) => {
          this.partitionWaiters.delete(reject);
          resolve(v);
        },
        (e: unknown) => {
          this.partitionWaiters.delete(reject);
          reject(e);
        },
      );
    });
  }

  private failPartitionWaiters(): void {
    const ws = [...this.partitionWaiters];
    this.partitionWaiters.clear();
    for (const w of ws) w(new Partitioned());
  }

  /** Tells the app thread how many pages are lost and whether it may commit (messages.ts `Status`). */
  publishStatus(): void {
    const refusing = this.lease.partitioned || this.rejoining;
    this.ev.status(this.membership.lostPages.size, refusing);
    // Published first: a run woken from its fault ends doomed, and its next attempt reads
    // the status and rejects with ERR_DSM_PARTITIONED.
    if (refusing !== this.refusingFaults) {
      this.refusingFaults = refusing;
      this.native.refuseRunFaults(refusing);
    }
  }

  /**
   * The cluster went on without this node (it was cut off or stalled, and a configuration
   * removed it). Its old id is gone for good: it joins again as a new member, through the
   * members it knew and its configured peers, and catches up like any joiner. Until then
   * every transaction is refused with ERR_DSM_PARTITIONED.
   */
  rejoin(reason: string): void {
    if (this.rejoining || this.closing) return;
    this.rejoining = true;
    this.ev.log('warn', `${reason}: joining again as a new member`);
    this.publishStatus();
    const peers = [...new Set([...[...this.members.values()].filter((m) => m.id !== this.id).map((m) => m.address), ...this.config.peers])];
    this.commits.stop();
    if (this.token.token) this.commits.reclaim(this.token.token);
    this.token.reset();
    // Commits waiting for the old configuration's token get no answer from it: refuse them.
    this.failPartitionWaiters();
    this.recovery.reset();
    this.replication.reset();
    this.barriers.removed();
    // Frames queued for members we were not connected to go too: they speak under the old
    // id, and a member that is one again after the join would read them as lies.
    this.links.dropAll('rejoining');
    for (const id of this.members.keys()) this.data.drop(id);
    this.membership.adopt(0, 0, []);
    const attempt = (): void => {
      if (this.closing) return;
      this.admission.join(peers).then(
        () => {
          this.rejoining = false;
          this.commits.restart();
          this.lease.reset();
          this.publishStatus();
          this.ev.rejoined(this.id, this.log.applied);
        },
        (e: Error) => {
          this.ev.log('warn', `joining again failed (${e.message}); trying again`);
          setTimeout(attempt, 1000).unref();
        },
      );
    };
    attempt();
  }

  private dispatch(from: number, type: number, payload: Buffer): void {
    if (debug.enabled) debug(`node ${this.id} <- ${from}: type ${type} (${payload.length} B) applied ${this.log.applied} token ${this.token.held ? (this.token.busy ? 'busy' : 'idle') : 'away'}`);
    const handle = handlers[type];
    try {
      if (!handle) throw new Error(`unknown message type ${type}`);
      handle(this, from, payload);
    } catch (e) {
      this.ev.log('warn', `bad message of type ${type} from node ${from}: ${(e as Error).message}; closing the connection`);
      this.links.close(from, 'protocol');
      this.membership.lost(from, 'protocol');
    }
  }

  // ---- the app's requests (service.ts) ----

  /** `sent`: the id of the request the faulting thread sent itself (0: none); `inRun`: the fault is a transaction's. */
  fetch(slot: number, page: number, write: boolean, sent = 0, inRun = false): void {
    // Posted as the refusal began: dooms the run (again) and wakes this fault with the rest.
    if (inRun && this.refusingFaults) this.native.refuseRunFaults(true);
    else if (this.sequential.handles(page)) this.sequential.fault(slot, page, write);
    else this.pager.fetch(slot, page, sent);
  }

  /**
   * dsm.prefetch: brings pages [first, first + count) here ahead of the app's touches (owned,
   * for `write` on sequential pages), then calls `done`. Transactional pages get a valid copy.
   */
  prefetch(first: number, count: number, write: boolean, done: () => void): void {
    let left = 1;
    const one = () => {
      if (--left === 0) done();
    };
    // Runs of one kind: sequential pages travel by their model's protocol, the others by the pager.
    for (let p = first; p < first + count; ) {
      const seq = this.sequential.handles(p);
      let end = p + 1;
      while (end < first + count && this.sequential.handles(end) === seq) end++;
      if (seq) {
        left++;
        this.sequential.prefetch(p, end - p, write, one);
      } else {
        for (let q = p; q < end; q++) {
          left++;
          this.pager.fetchFor(q, one, true);
        }
      }
      p = end;
    }
    one();
  }

  dataReceived(done: Float64Array): void {
    this.data.received(done);
  }

  commit(): Promise<[number, number]> {
    return this.commits.commit();
  }

  sync(): Promise<[number, number]> {
    return this.commits.sync();
  }

  holdForApp(): Promise<[number, number]> {
    return this.commits.holdForApp();
  }

  releaseForApp(): Promise<[number, number]> {
    return this.commits.releaseForApp();
  }

  // ---- clients (dsm stats) ----

  serveClient(c: Connection): void {
    c.on('message', (type: number) => {
      if (type === Msg.StatsRequest) c.send(Msg.StatsReply, encode.json(this.statsForClient?.() ?? {}));
      else if (type === Msg.ClusterRequest) {
        // A member (not one joining, or joining again) answers for its cluster.
        const member = this.members.has(this.id) && !this.rejoining && !this.closing;
        const starting = member ? undefined : this.store?.starting;
        c.send(Msg.ClusterReply, encode.json({ member, identity: this.identity, time: this.log.applied, members: [...this.members.values()].map((m) => m.address), starting }));
      }
      else if (type === Msg.SnapshotRequest) {
        if (!this.store) {
          c.send(Msg.SnapshotEnd, encode.json({ error: `node ${this.id} is not a page server: connect dsm snapshot to the page server` }));
          return;
        }
        // Loaded only on page servers, where the store is.
        const { serveSnapshot } = require('../pageserver/snapshot_serving') as typeof import('../pageserver/snapshot_serving');
        void serveSnapshot(this.store, c, (m) => this.ev.log('warn', m));
      }
    });
  }

  /** Leaves the cluster (see leaving.ts) and closes every connection. */
  async close(): Promise<void> {
    await this.leaving.leave();
    await this.store?.close();
    this.lease.stop();
    this.recovery.stop();
    this.replication.stop();
    this.durableReads.stop();
    this.log.close();
    await this.transport.close();
  }

  /** Page requests sent: by the service, and by faulting threads themselves (native/fault_routes.h). */
  get remoteFetches(): number {
    return this.pager.remoteFetches + this.native.counters()[Counter.sentByFault];
  }

  get forwarded(): number {
    return this.serving.forwarded;
  }

  dataChannelOwners(): number[] {
    return this.data.owners();
  }

  membersList(): number[] {
    return this.membership.list();
  }

  /** The protocol state, for `dsm stats` and for diagnosing a stuck cluster. */
  debugState(): Record<string, unknown> {
    const t = this.token.token;
    return {
      token: t ? { time: t.time, busy: this.token.busy, lent: this.gate.lent, queue: t.queue, ln: Object.fromEntries(t.ln) } : 'away',
      tokenWaiters: this.token.waiting,
      // Token waits that a lost quorum would end: 0 whenever nothing waits (each withdraws).
      quorumWatches: this.partitionWaiters.size,
      tokenRequestsSent: this.token.requestsSent,
      tokenPushes: this.commits.tokenPushes,
      rn: Object.fromEntries(this.token.rn),
      applied: this.log.applied,
      seen: this.log.seen,
      fetches: this.pager.debugState(),
      pages: (process.env.DSM_DEBUG_PAGES ?? '').split(',').filter(Boolean).map((p) => ({ page: Number(p), ...this.pageInfo(Number(p)) })),
      epoch: this.membership.epoch,
      suspects: [...this.membership.suspects],
      recovery: this.recovery.debugState(),
      lostPages: this.membership.lostPages.size,
      partitioned: this.lease.partitioned,
      leaseMs: this.lease.validUntil === Infinity ? 'forever' : Math.round(this.lease.validUntil - (performance.timeOrigin + performance.now())),
      connections: this.links.connected(),
      queuedFor: this.links.queuedFor(),
      queuedBytes: this.links.queuedBytes(),
      backlogged: this.links.backlogged,
      commitsWaitingForDrain: this.commits.waitingForDrain,
      resendRequests: this.commits.resendRequests,
      durability: this.config.durability,
      durableTime: this.replication.durable,
      commitsWaitingForBackups: this.replication.waiting,
      waitingForBackups: this.replication.debugState(),
      pageServers: this.replication.pageServers(),
      store: this.store?.debugState(),
      backupFetches: this.replication.backupFetches,
      heldPageRequests: this.serving.heldCount,
      heldPageRequestsTotal: this.serving.heldTotal,
      droppedPageRequests: this.serving.heldDropped,
      pageRequestsWithoutLease: this.serving.withoutLease,
      pageRequestsHeldForLease: this.serving.leaseHeldTotal,
      dataChannels: this.data.owners(),
      dataConnections: this.data.requesters(),
      sequential: this.sequential.debugState(),
    };
  }

  /** Whether a configuration decided `page` lost. */
  isLost(page: number): boolean {
    return this.table.owners[page] === LOST_OWNER;
  }

  pageInfo(p: number): { state: number; version: number; owner: number } {
    return { state: this.table.states[p], version: Number(this.table.versions[p]), owner: this.table.owners[p] };
  }
}
