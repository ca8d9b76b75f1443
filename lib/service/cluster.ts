// The cluster as seen from one node's service thread. This file is the wiring: the state
// every part shares (identity, the page table, the token, the commit log) and the one table
// from message type to handler. Each responsibility lives in its own file:
//   links.ts          connections to members, queued frames, send and broadcast
//   admission.ts      Hello routing, joining, admitting joiners under the token
//   membership.ts     the member list, and what a member's loss sets off
//   commits.ts        the commit path (token, lent token, commit ring) and applying commits
//   pager.ts          fetching pages (read-ahead, scans, searches)
//   page_serving.ts   answering page requests
//   data_channels.ts  native page streams for scans
//   recovery.ts       regenerating a token that died with its holder
//   leaving.ts        graceful leave (hand-over of pages and token)
// Runs in the service worker; touches the region only through the native system view.
import type { MessagePort } from 'node:worker_threads';
import type { NativeAddon } from '../native';
import { CommitLog } from './commit_log';
import type { CommitRing } from './commit_ring';
import { debug } from './debug';
import type { LocalTokenGate } from './local_token';
import { encode, Msg, NO_NODE } from './protocol';
import { CommitToken } from './token';
import type { Connection, Transport } from './transport';
import { Admission } from './admission';
import { Commits } from './commits';
import { DataChannels } from './data_channels';
import { Leaving } from './leaving';
import { Links } from './links';
import { Membership } from './membership';
import { Pager } from './pager';
import { PageServing } from './page_serving';
import { Recovery } from './recovery';
import { decode } from './protocol';

export interface ClusterConfig {
  pageSize: number;
  numPages: number;
  peers: string[];
  /** Milliseconds to keep trying to reach a peer when joining. */
  joinTimeoutMs: number;
}

export interface ClusterEvents {
  log(level: 'warn' | 'error', message: string): void;
  event(type: 'peer-join' | 'peer-leave', id: number): void;
  /** The app-visible times. */
  publish(applied: number, seen: number): void;
}

type Handler = (n: Cluster, from: number, payload: Buffer) => void;

/** Every message a member may send, and who handles it. Anything else closes the connection. */
const handlers: Record<number, Handler> = {
  [Msg.TokenRequest]: (n, _from, p) => {
    const r = decode.tokenRequest(p);
    n.token.onRequest(r.id, r.seq);
  },
  [Msg.Token]: (n, from, p) => {
    const t = decode.token(p);
    n.membership.learn(t.members);
    if (!n.token.onToken(t)) n.ev.log('warn', `dropped a void token of generation ${t.generation} from node ${from}`);
  },
  [Msg.Commit]: (n, from, p) => n.commits.onCommit(from, p),
  [Msg.ResendRequest]: (n, from, p) => n.commits.onResendRequest(from, p),
  [Msg.PageRequest]: (n, from, p) => n.serving.onRequest(from, p),
  [Msg.PageReply]: (n, from, p) => n.pager.onReply(from, p),
  [Msg.MemberAdd]: (n, from, p) => n.membership.onMemberAdd(from, p),
  [Msg.MemberRemove]: (n, from, p) => n.membership.onMemberRemove(from, p),
  [Msg.Leave]: (n, from, p) => n.leaving.onLeave(from, p),
  [Msg.Handover]: (n, from, p) => n.leaving.onHandover(from, p),
  [Msg.HandoverDone]: (n, from) => n.leaving.onHandoverDone(from),
  [Msg.HandoverAck]: (n) => n.leaving.onHandoverAck(),
  [Msg.RecoverQuery]: (n, from, p) => n.recovery.onQuery(from, p),
  [Msg.RecoverState]: (n, from, p) => n.recovery.onState(from, p),
  [Msg.Recovered]: (n, from, p) => n.recovery.onRecovered(from, p),
};

export class Cluster {
  id = NO_NODE;
  address = '';
  closing = false;
  readonly table: { states: Uint8Array; owners: Uint16Array; versions: BigUint64Array };
  readonly token: CommitToken;
  readonly log: CommitLog;
  readonly links: Links;
  readonly membership: Membership;
  readonly admission: Admission;
  readonly commits: Commits;
  readonly pager: Pager;
  readonly serving: PageServing;
  readonly data: DataChannels;
  readonly recovery: Recovery;
  readonly leaving: Leaving;
  /** For `dsm stats`. */
  statsForClient?: () => unknown;

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
      isMember: (id) => this.members.has(id),
      me: () => this.id,
    });
    this.commits = new Commits(this);
    this.pager = new Pager(this);
    this.serving = new PageServing(this);
    this.data = new DataChannels(this);
    this.recovery = new Recovery(this);
    this.leaving = new Leaving(this);
    this.admission = new Admission(this);
    this.token = new CommitToken({
      me: () => this.id,
      sendToken: (to, t) => this.links.send(to, Msg.Token, encode.token(t)),
      broadcastRequest: (seq) => this.links.broadcast(Msg.TokenRequest, encode.tokenRequest(this.id, seq), this.members.values()),
      reclaim: (t) => this.commits.reclaim(t),
      idle: () => this.commits.maybeLend(),
    });
    this.log = new CommitLog({
      apply: (rec) => this.commits.applyRemote(rec),
      requestResend: (from, after, upTo) => {
        const payload = encode.resendRequest(after, upTo);
        if (from >= 0 && from !== this.id && this.members.has(from)) this.links.send(from, Msg.ResendRequest, payload);
        else this.links.broadcast(Msg.ResendRequest, payload, this.members.values());
      },
      publish: (a, s) => {
        ev.publish(a, s);
        this.commits.maybeLend();
      },
    });
    transport.on('connection', (c: Connection) => this.admission.adopt(c));
  }

  get members(): Map<number, import('./protocol').Member> {
    return this.membership.members;
  }

  /** Founds a new cluster (no peers) or joins one through the first peer that answers. */
  async start(): Promise<void> {
    this.address = await this.transport.listen();
    if (this.config.peers.length === 0) {
      this.id = 0;
      this.members.set(0, { id: 0, address: this.address });
      this.token.found([{ id: 0, address: this.address }]);
      return;
    }
    await this.admission.join();
  }

  private dispatch(from: number, type: number, payload: Buffer): void {
    if (debug.enabled) debug(`node ${this.id} <- ${from}: type ${type} (${payload.length} B) applied ${this.log.applied} token ${this.token.held ? (this.token.busy ? 'busy' : 'idle') : 'away'}`);
    const handle = handlers[type];
    try {
      if (!handle) throw new Error(`unknown message type ${type}`);
      handle(this, from, payload);
    } catch (e) {
      this.ev.log('warn', `bad message of type ${type} from node ${from}: ${(e as Error).message}; closing the connection`);
      this.links.drop(from, 'protocol');
      this.membership.lost(from, 'protocol');
    }
  }

  // ---- the app's requests (service.ts) ----

  fetch(slot: number, page: number): void {
    this.pager.fetch(slot, page);
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
    });
  }

  /** Leaves the cluster (see leaving.ts) and closes every connection. */
  async close(): Promise<void> {
    await this.leaving.leave();
    this.log.close();
    await this.transport.close();
  }

  get remoteFetches(): number {
    return this.pager.remoteFetches;
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
      rn: Object.fromEntries(this.token.rn),
      applied: this.log.applied,
      seen: this.log.seen,
      fetches: this.pager.debugState(),
      pages: (process.env.DSM_DEBUG_PAGES ?? '').split(',').filter(Boolean).map((p) => ({ page: Number(p), ...this.pageInfo(Number(p)) })),
      connections: this.links.connected(),
      queuedFor: this.links.queuedFor(),
      dataChannels: this.data.owners(),
      dataConnections: this.data.requesters(),
    };
  }

  pageInfo(p: number): { state: number; version: number; owner: number } {
    return { state: this.table.states[p], version: Number(this.table.versions[p]), owner: this.table.owners[p] };
  }
}
