// The cluster as seen from one node's service thread: members and their connections,
// joining, the commit token, commits in global-time order, page fetching and serving,
// and recovery when a member dies. Runs in the service worker; touches the region only
// through the native system view (install, invalidate, copyCommitted).
import { CommitStatus, type NativeAddon } from '../native';
import { CommitLog } from './commit_log';
import {
  type CommitRecord,
  decode,
  encode,
  type Hello,
  type Member,
  Msg,
  NO_NODE,
  type PageRequest,
  PageStatus,
  pageReplySize,
  type RecoverState,
  type TokenState,
} from './protocol';
import type { LocalTokenGate } from './local_token';
import type { CommitRing } from './commit_ring';
import { CommitToken } from './token';
import type { MessagePort } from 'node:worker_threads';
import type { Connection, Transport } from './transport';
import { writeSync } from 'node:fs';
import { WireError } from './wire';
import { BufferPool } from './buffer_pool';

// NODE_DEBUG=dsm traces every cluster message on stderr. Written synchronously: a worker's
// process.stderr goes through the app thread, which may be blocked in a fault.
const debug = Object.assign(
  (m: string) => {
    try {
      writeSync(2, `DSM ${process.pid}: ${m}\n`);
    } catch {
      // stderr is a full non-blocking pipe: drop the trace line rather than the message.
    }
  },
  {
    enabled: /\bdsm\b/.test(process.env.NODE_DEBUG ?? ''),
  },
);

export interface ClusterConfig {
  pageSize: number;
  numPages: number;
  peers: string[];
  /** Seconds to keep trying to reach a peer when joining. */
  joinTimeoutMs: number;
}

export interface ClusterEvents {
  log(level: 'warn' | 'error', message: string): void;
  event(type: 'peer-join' | 'peer-leave', id: number): void;
  /** The app-visible times. */
  publish(applied: number, seen: number): void;
}

interface PendingFetch {
  page: number;
  slots: number[];
  /** Nodes asked in a search that have not answered yet. */
  searching?: Set<number>;
  /** Asks again if no answer comes: a request forwarded to a node as it died is lost. */
  timer?: NodeJS.Timeout;
  /** Pages asked for, from `page` on (read-ahead). */
  count: number;
}

/** A page request unanswered this long is asked of every member instead. */
const FETCH_RETRY_MS = 1000;

/** Most pages one read-ahead request asks for (256 KiB with 4 KiB pages). */
const READ_AHEAD_MAX = 256;
/** How many pages ahead of a sequential scan are kept requested. */
const SCAN_AHEAD = 4 * READ_AHEAD_MAX;
/** A request forwarded more often than this is answered "not here" (stale owner hints). */
const MAX_HOPS = 8;
/** Requests this large (a scan's) open a data channel to their owner. */
const DATA_CHANNEL_MIN = 64;
const NONE_U32 = new Uint32Array(0);
const NONE_F64 = new Float64Array(0);
const NONE_U16 = new Uint16Array(0);

export class Cluster {
  id = NO_NODE;
  readonly members = new Map<number, Member>();
  private readonly conns = new Map<number, Connection>();
  private readonly queued = new Map<number, Array<[number, Buffer, (() => void) | undefined]>>();
  readonly token: CommitToken;
  readonly log: CommitLog;
  private readonly table: { states: Uint8Array; owners: Uint16Array; versions: BigUint64Array };
  private readonly fetches = new Map<number, PendingFetch>();
  /** Requester side: native data channel ids by owner; owner side: members' data connections. */
  private readonly dataChannels = new Map<number, number>();
  private readonly dataOpening = new Set<number>();
  private readonly dataConns = new Map<number, Connection>();
  /** Buffers for full-size page replies (a scan's ranges), reused once written. */
  private readonly replyBuffers: BufferPool;
  /** Per page: the request fetching it, 0 for none (a typed array: a scan sets and clears 256 at a time). */
  private readonly fetchByPage: Uint32Array;
  private nextReq = 1;
  /** The page a sequential scan faults on next, and the current read-ahead window. */
  private nextExpected = -1;
  private window = 1;
  /** The end of the pages a sequential scan has requested ahead, and where it was last seen. */
  private aheadTo = -1;
  private scanAt = -1;
  private recovering?: { generation: number; states: Map<number, Omit<RecoverState, 'generation'>> };
  private closing = false;
  private reclaiming = false;
  private drainTimer?: NodeJS.Timeout;
  /** The token, held on behalf of the app's next run (holdForApp). */
  private heldForApp?: TokenState;
  remoteFetches = 0;
  forwarded = 0;
  address = '';

  constructor(
    private readonly native: NativeAddon,
    private readonly transport: Transport,
    private readonly config: ClusterConfig,
    private readonly ev: ClusterEvents,
    private readonly gate: LocalTokenGate,
    private readonly localCommits: MessagePort,
    private readonly ring: CommitRing,
  ) {
    this.table = native.pageTable();
    this.fetchByPage = new Uint32Array(this.table.states.length);
    this.replyBuffers = new BufferPool(pageReplySize(READ_AHEAD_MAX, config.pageSize), SCAN_AHEAD / READ_AHEAD_MAX + 2);
    this.token = new CommitToken({
      me: () => this.id,
      sendToken: (to, t) => this.send(to, Msg.Token, encode.token(t)),
      broadcastRequest: (seq) => this.broadcast(Msg.TokenRequest, encode.tokenRequest(this.id, seq)),
      reclaim: (t) => this.reclaim(t),
      idle: () => this.maybeLend(),
    });
    // Woken by the app's first lent-token commit after a drain: wait a millisecond so a run
    // of commits goes out as one batch (one wake-up instead of one per commit). Reclaiming
    // the token and serving a page drain at once, so nothing depends on this delay.
    localCommits.on('message', () => {
      if (this.drainTimer) return;
      this.drainTimer = setTimeout(() => {
        this.drainTimer = undefined;
        this.drainLocal();
      }, 1);
    });
    this.log = new CommitLog({
      apply: (rec) => this.applyRemote(rec),
      requestResend: (from, after, upTo) => {
        const payload = encode.resendRequest(after, upTo);
        if (from >= 0 && from !== this.id && this.members.has(from)) this.send(from, Msg.ResendRequest, payload);
        else this.broadcast(Msg.ResendRequest, payload);
      },
      publish: (a, s) => {
        ev.publish(a, s);
        this.maybeLend();
      },
    });
    transport.on('connection', (c: Connection) => this.adopt(c));
  }

  // ---- start ----

  /** Founds a new cluster (no peers) or joins one through the first peer that answers. */
  async start(): Promise<void> {
    this.address = await this.transport.listen();
    if (this.config.peers.length === 0) {
      this.id = 0;
      this.members.set(0, { id: 0, address: this.address });
      this.token.found([{ id: 0, address: this.address }]);
      return;
    }
    await this.join();
  }

  private async join(): Promise<void> {
    const deadline = Date.now() + this.config.joinTimeoutMs;
    let lastError: unknown;
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      for (const peer of this.config.peers) {
        let c: Connection;
        try {
          c = await this.transport.connect(peer);
        } catch (e) {
          lastError = e;
          if ((e as { code?: string }).code === 'ERR_DSM_AUTH_FAILED') throw e;
          continue;
        }
        const accepted = new Promise<Buffer>((resolve, reject) => {
          const onMsg = (type: number, payload: Buffer) => {
            if (type === Msg.JoinAccept) {
              c.off('message', onMsg);
              c.off('close', onClose);
              resolve(payload);
            }
          };
          const onClose = (reason: string) => reject(new Error(`the peer closed the connection while admitting us (${reason})`));
          c.on('message', onMsg);
          c.on('close', onClose);
        });
        c.send(Msg.Hello, encode.hello({ id: NO_NODE, address: this.address, joining: true, client: false }));
        try {
          const ja = decode.joinAccept(await accepted);
          this.admitted(ja, c);
          return;
        } catch (e) {
          lastError = e;
          c.close('join failed');
        }
      }
      await new Promise((r) => setTimeout(r, Math.min(1000, 100 * 2 ** attempt)));
    }
    throw Object.assign(new Error(`could not join the cluster through ${this.config.peers.join(', ')}: ${(lastError as Error)?.message ?? 'no answer'}`), {
      code: 'ERR_DSM_JOIN_FAILED',
    });
  }

  private admitted(ja: ReturnType<typeof decode.joinAccept>, via: Connection): void {
    this.id = ja.id;
    for (const m of ja.members) this.members.set(m.id, m);
    for (const [k, v] of ja.rn) this.token.rn.set(k, v);
    // Every page written before we joined is elsewhere; never-written pages stay valid zeros.
    for (const p of ja.pages) this.native.invalidate(p.page, p.version, p.owner);
    this.log.reset(ja.time);
    this.bindMember(ja.admitter, via);
    // Higher ids connect to lower ones: we are the highest, so we connect to everyone.
    for (const m of ja.members) {
      if (m.id !== this.id && !this.conns.has(m.id)) void this.connectTo(m);
    }
  }

  private async connectTo(m: Member): Promise<void> {
    for (let attempt = 0; attempt < 20 && !this.closing && this.members.has(m.id) && !this.conns.has(m.id); attempt++) {
      try {
        const c = await this.transport.connect(m.address);
        c.send(Msg.Hello, encode.hello({ id: this.id, address: this.address, joining: false, client: false }));
        this.bindMember(m.id, c);
        return;
      } catch (e) {
        this.ev.log('warn', `connecting to node ${m.id} at ${m.address} failed: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
      }
    }
  }

  // ---- connections ----

  /** A new authenticated connection: it must say Hello first. */
  private adopt(c: Connection): void {
    const onFirst = (type: number, payload: Buffer) => {
      c.off('message', onFirst);
      if (type !== Msg.Hello) {
        this.ev.log('warn', `a peer at ${c.remoteAddress} spoke before saying hello (type ${type}); closing`);
        c.close('protocol');
        return;
      }
      let h: Hello;
      try {
        h = decode.hello(payload);
      } catch (e) {
        this.ev.log('warn', `bad hello from ${c.remoteAddress}: ${(e as Error).message}`);
        c.close('protocol');
        return;
      }
      if (h.client) this.serveClient(c);
      else if (h.data) this.acceptDataChannel(c, h.id);
      else if (h.joining) void this.admit(c, h);
      else {
        if (!this.members.has(h.id)) {
          this.members.set(h.id, { id: h.id, address: h.address });
          this.ev.event('peer-join', h.id);
        }
        this.bindMember(h.id, c);
      }
    };
    c.on('message', onFirst);
  }

  // ---- data channels ----
  // A requester scanning another node's pages opens a second connection to it, takes the
  // socket over natively and asks for replies on it (see native/data_channel.h): the pages
  // then go from the socket straight into the region, off this thread.

  /** Owner side: a member's data channel. Replies go out on it; nothing comes in but heartbeats. */
  private acceptDataChannel(c: Connection, id: number): void {
    if (!this.members.has(id) || this.closing) {
      c.close('protocol');
      return;
    }
    this.dataConns.get(id)?.close('replaced');
    this.dataConns.set(id, c);
    c.on('close', () => {
      if (this.dataConns.get(id) === c) this.dataConns.delete(id);
    });
    c.send(Msg.DataReady, Buffer.alloc(0));
  }

  /** Requester side: opens a data channel to `owner` (in the background; requests go the usual way meanwhile). */
  private async openDataChannel(owner: number): Promise<void> {
    const m = this.members.get(owner);
    if (!m || this.dataChannels.has(owner) || this.dataOpening.has(owner) || this.closing) return;
    this.dataOpening.add(owner);
    let c: Connection | undefined;
    try {
      c = await this.transport.connect(m.address);
      const conn = c;
      const ready = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5000);
        conn.on('message', (type: number) => {
          if (type !== Msg.DataReady) return;
          clearTimeout(timer);
          resolve();
        });
        conn.on('close', (reason: string) => {
          clearTimeout(timer);
          reject(new Error(`closed (${reason})`));
        });
      });
      conn.send(Msg.Hello, encode.hello({ id: this.id, address: this.address, joining: false, client: false, data: true }));
      await ready;
      if (this.closing || !this.members.has(owner) || conn.fd < 0) throw new Error('no longer needed');
      const ch = this.native.openDataChannel(conn.fd, { ...this.transport.wire, replyType: Msg.PageReply });
      conn.release();
      this.dataChannels.set(owner, ch);
    } catch (e) {
      c?.close('local');
      this.ev.log('warn', `no data channel to node ${owner} (${(e as Error).message}); its pages come over the main connection`);
    } finally {
      this.dataOpening.delete(owner);
    }
  }

  /** Members whose replies come over a data channel. */
  dataChannelOwners(): number[] {
    return [...this.dataChannels.keys()];
  }

  /** Replies received on data channels (and channels that closed), from the native readers. */
  dataReceived(done: Float64Array): void {
    for (let i = 0; i < done.length; i += 3) {
      const ch = done[i];
      const reqId = done[i + 1];
      if (reqId === 0xffffffff) {
        for (const [owner, id] of this.dataChannels) {
          if (id !== ch) continue;
          this.dataChannels.delete(owner);
          if (this.members.has(owner)) this.ev.log('warn', `the data channel to node ${owner} closed (a bad frame or a lost connection); its pages come over the main connection`);
        }
        // Requests it was to answer are asked again by their retry timers.
        this.native.closeDataChannel(ch);
        continue;
      }
      this.log.hear(done[i + 2]);
      // Installed, or refused because a newer commit crossed the reply: either way the
      // faulting thread looks again and, if needed, asks the new owner.
      this.finish(reqId);
    }
    this.followScan();
  }

  private bindMember(id: number, c: Connection): void {
    const old = this.conns.get(id);
    // Replace before closing: the old connection's close must not count as the peer's loss.
    this.conns.set(id, c);
    if (old && old !== c) old.close('replaced');
    c.on('message', (type: number, payload: Buffer) => {
      try {
        this.dispatch(id, type, payload);
      } catch (e) {
        this.ev.log('warn', `bad message of type ${type} from node ${id}: ${(e as Error).message}; closing the connection`);
        c.close('protocol');
      }
    });
    c.on('close', (reason: string) => {
      if (this.conns.get(id) === c) {
        this.conns.delete(id);
        this.lost(id, reason);
      }
    });
    const q = this.queued.get(id);
    if (q) {
      this.queued.delete(id);
      for (const [t, p, done] of q) c.send(t, p, done);
    }
  }

  /** `onWritten`: the payload is no longer needed (sent to the kernel, or dropped). */
  send(to: number, type: number, payload: Buffer, onWritten?: () => void): void {
    if (debug.enabled) debug(`node ${this.id} -> ${to}: type ${type} (${payload.length} B)${this.conns.has(to) ? '' : ' queued'}`);
    const c = this.conns.get(to);
    if (c) {
      c.send(type, payload, onWritten);
      return;
    }
    if (!this.members.has(to)) {
      onWritten?.();
      return;
    }
    let q = this.queued.get(to);
    if (!q) this.queued.set(to, (q = []));
    q.push([type, payload, onWritten]);
  }

  broadcast(type: number, payload: Buffer, members: Iterable<Member> = this.members.values()): void {
    for (const m of members) if (m.id !== this.id) this.send(m.id, type, payload);
  }

  private dispatch(from: number, type: number, payload: Buffer): void {
    if (debug.enabled) debug(`node ${this.id} <- ${from}: type ${type} (${payload.length} B) applied ${this.log.applied} token ${this.token.held ? (this.token.busy ? 'busy' : 'idle') : 'away'}`);
    switch (type) {
      case Msg.TokenRequest: {
        const r = decode.tokenRequest(payload);
        this.token.onRequest(r.id, r.seq);
        return;
      }
      case Msg.Token: {
        const t = decode.token(payload);
        this.learnMembers(t.members);
        if (!this.token.onToken(t)) this.ev.log('warn', `dropped a void token of generation ${t.generation} from node ${from}`);
        return;
      }
      case Msg.Commit:
        this.log.receive(decode.commit(payload));
        return;
      case Msg.PageRequest:
        this.servePage(decode.pageRequest(payload));
        return;
      case Msg.PageReply:
        this.onPageReply(from, decode.pageReply(payload, this.config.pageSize));
        return;
      case Msg.MemberAdd: {
        const m = decode.member(payload);
        if (!this.members.has(m.id)) {
          this.members.set(m.id, m);
          this.ev.event('peer-join', m.id);
        }
        return;
      }
      case Msg.MemberRemove:
        this.removeMember(decode.memberRemove(payload));
        return;
      case Msg.Leave: {
        const successor = payload.length ? decode.memberRemove(payload) : NO_NODE;
        if (successor !== NO_NODE) {
          // The leaver handed its pages and the token to `successor`: ask it from now on.
          const owners = this.table.owners;
          for (let p = 0; p < owners.length; p++) if (owners[p] === from && this.table.versions[p] !== 0n) owners[p] = successor;
        }
        this.removeMember(from, successor !== NO_NODE);
        return;
      }
      case Msg.Handover: {
        const r = decode.pageReply(payload, this.config.pageSize);
        if (r.pages.some((p) => p >= this.config.numPages)) throw new WireError('a handed-over page is outside the region');
        r.owners.fill(this.id);
        this.native.installPages(r.pages, r.versions, r.owners, r.data);
        for (const p of r.pages) this.table.owners[p] = this.id;
        return;
      }
      case Msg.HandoverDone:
        this.send(from, Msg.HandoverAck, Buffer.alloc(0));
        return;
      case Msg.HandoverAck:
        this.handoverAcked?.();
        return;
      case Msg.ResendRequest: {
        const r = decode.resendRequest(payload);
        for (const rec of this.log.since(r.from, r.to)) this.send(from, Msg.Commit, encode.commit(rec));
        return;
      }
      case Msg.RecoverQuery: {
        const q = decode.recover(payload);
        if (q.generation <= this.token.generation) return; // stale query
        this.token.holdArrivals();
        this.send(from, Msg.RecoverState, encode.recoverState({ generation: q.generation, ...this.tokenReport() }));
        return;
      }
      case Msg.RecoverState:
        this.onRecoverState(from, decode.recoverState(payload));
        return;
      case Msg.Recovered: {
        const r = decode.recover(payload);
        this.token.endHold(r.regenerated ? r.generation : undefined);
        if (r.time > this.log.applied) {
          this.log.hear(r.time);
          this.send(r.source, Msg.ResendRequest, encode.resendRequest(this.log.applied, r.time));
        }
        if (this.token.waiting && !this.token.held) this.token.request(true);
        return;
      }
      default:
        throw new Error(`unknown message type ${type}`);
    }
  }

  private learnMembers(ms: Member[]): void {
    for (const m of ms) {
      if (m.id !== this.id && !this.members.has(m.id)) {
        this.members.set(m.id, m);
        this.ev.event('peer-join', m.id);
      }
    }
  }

  // ---- joining ----

  /** Admits a joining node, ordered with commits by holding the token. */
  private async admit(c: Connection, h: Hello): Promise<void> {
    let closed = false;
    c.once('close', () => (closed = true));
    const t = await this.token.acquire();
    try {
      await this.log.waitApplied(t.time);
      if (closed) return;
      const id = Math.max(...t.members.map((m) => m.id), ...this.members.keys()) + 1;
      const m = { id, address: h.address };
      t.members.push(m);
      this.members.set(id, m);
      const pages = [];
      const v = this.table.versions;
      const owners = this.table.owners;
      for (let p = 0; p < v.length; p++) {
        if (v[p] !== 0n) pages.push({ page: p, version: Number(v[p]), owner: owners[p] });
      }
      c.send(Msg.JoinAccept, encode.joinAccept({ id, admitter: this.id, time: t.time, members: t.members, pages, rn: this.token.rn }));
      this.bindMember(id, c);
      this.broadcast(Msg.MemberAdd, encode.member(m), t.members.filter((x) => x.id !== id));
      this.ev.event('peer-join', id);
    } finally {
      this.token.release();
    }
  }

  // ---- commits ----

  /**
   * Takes the token for the app's next run of a transaction that keeps losing to other
   * nodes' commits: while we hold it nobody else commits, so that run cannot be doomed.
   */
  async holdForApp(): Promise<[number, number]> {
    if (!this.heldForApp) {
      const t = await this.token.acquire();
      await this.log.waitApplied(t.time);
      this.heldForApp = t;
    }
    return [CommitStatus.committed, this.heldForApp.time];
  }

  /** The held run committed nothing: give the token back. */
  async releaseForApp(): Promise<[number, number]> {
    if (this.heldForApp) {
      this.heldForApp = undefined;
      this.token.release();
    }
    return [CommitStatus.committed, this.log.applied];
  }

  /** Commits the app's ended transaction (its write set is in the native layer). */
  async commit(): Promise<[number, number]> {
    const pages = this.native.writeSet();
    const held = this.heldForApp;
    this.heldForApp = undefined;
    const t = held ?? (await this.token.acquire());
    try {
      await this.log.waitApplied(t.time);
      if (this.native.doomed()) return [CommitStatus.doomed, 0];
      const time = t.time + 1;
      t.time = time;
      const rec: CommitRecord = { time, node: this.id, pages };
      const payload = encode.commit(rec);
      this.broadcast(Msg.Commit, payload, t.members);
      this.native.commit(time, this.id);
      this.log.receive(rec);
      return [CommitStatus.committed, time];
    } finally {
      this.token.release();
    }
  }

  /** Lends the token to the app thread when nothing can doom its commits (local_token.ts). */
  private maybeLend(): void {
    const t = this.token.token;
    if (!t || this.token.busy || this.gate.lent || this.reclaiming) return;
    if (this.log.applied !== t.time || this.log.seen !== t.time) return;
    this.gate.lend(t.time);
  }

  /** Takes the token back from the app thread and broadcasts what it committed meanwhile. */
  private reclaim(t: TokenState): void {
    if (!this.gate.lent) return;
    // Draining applies commits, which would offer the token again (maybeLend) halfway
    // through, at a time the app already used.
    this.reclaiming = true;
    try {
      t.time = Math.max(t.time, this.gate.reclaim());
      this.drainLocal();
    } finally {
      this.reclaiming = false;
    }
  }

  /** Commits the app thread made with the lent token: tell everyone. */
  private drainLocal(): void {
    this.ring.drain((time, pages) => this.applyLocal(time, pages));
  }

  private applyLocal(time: number, pages: Uint32Array): void {
    if (time <= this.log.applied) return;
    const t = this.token.token;
    if (t) t.time = Math.max(t.time, time);
    const rec: CommitRecord = { time, node: this.id, pages };
    this.broadcast(Msg.Commit, encode.commit(rec), t?.members ?? this.members.values());
    this.log.receive(rec);
  }

  /** Waits until every commit this node has heard of is applied (read-only commits). */
  async sync(): Promise<[number, number]> {
    await this.log.waitApplied(this.log.seen);
    return [this.native.doomed() ? CommitStatus.doomed : CommitStatus.committed, this.log.applied];
  }

  private applyRemote(rec: CommitRecord): void {
    if (debug.enabled) debug(`node ${this.id} apply commit ${rec.time} by ${rec.node}: pages ${Array.from(rec.pages).join(',')}`);
    if (rec.node === this.id) return; // our own, applied when made
    let doomed = false;
    for (const p of rec.pages) {
      if (p >= this.config.numPages) continue;
      if (this.native.invalidate(p, rec.time, rec.node)) doomed = true;
    }
    if (doomed) this.native.interruptApp();
  }

  // ---- pages ----

  /** A fault on a page that is not valid here: fetch it from its owner. */
  fetch(slot: number, page: number): void {
    if (this.table.states[page] !== 0) {
      // Installed while this request waited in the ring (a reply was handled first).
      this.native.completeRequest(slot);
      if (this.window === READ_AHEAD_MAX) this.keepAhead(page);
      return;
    }
    const existing = this.fetchByPage[page];
    if (existing !== 0) {
      this.fetches.get(existing)!.slots.push(slot);
      // The scan reached what was fetched ahead: keep the pages after it coming.
      if (this.window === READ_AHEAD_MAX) this.keepAhead(page);
      return;
    }
    const version = Number(this.table.versions[page]);
    const owner = this.table.owners[page];
    if (version === 0) {
      this.native.install(page, null, 0, owner);
      this.native.completeRequest(slot);
      return;
    }
    // Sequential faults double the read-ahead window; anything else resets it.
    this.window = page === this.nextExpected ? Math.min(READ_AHEAD_MAX, this.window * 2) : 1;
    const count = this.request(page, [slot], this.window);
    this.nextExpected = page + count;
    this.aheadTo = page + count;
    this.scanAt = page;
    if (this.window === READ_AHEAD_MAX) this.keepAhead(page);
  }

  /**
   * A sequential scan is at `page`: keep the next SCAN_AHEAD pages requested, in ranges of
   * READ_AHEAD_MAX, so several replies are on the wire while the scan reads (one range in
   * flight at a time leaves the link idle for a round trip per range).
   */
  private keepAhead(page: number): void {
    this.scanAt = page;
    const end = Math.min(this.config.numPages, page + SCAN_AHEAD);
    let p = Math.max(this.aheadTo, page + 1);
    while (p < end) {
      if (this.fetchByPage[p] !== 0 || this.table.states[p] !== 0 || this.table.versions[p] === 0n) p++;
      else p += this.request(p, [], READ_AHEAD_MAX);
    }
    this.aheadTo = Math.max(this.aheadTo, p);
    this.nextExpected = this.aheadTo;
  }

  /** Sends one page request for up to `window` pages from `page`; returns how many it covers. */
  private request(page: number, slots: number[], window: number): number {
    const owner = this.table.owners[page];
    let count = 1;
    // Read ahead over pages that are invalid here and owned by the same node.
    while (count < window && page + count < this.config.numPages && this.table.states[page + count] === 0 &&
      this.table.owners[page + count] === owner && this.fetchByPage[page + count] === 0) count++;
    const reqId = this.nextReq;
    this.nextReq = (this.nextReq + 1) >>> 0 || 1; // u32 on the wire; 0 means none
    this.fetches.set(reqId, { page, slots, count });
    this.fetchByPage.fill(reqId, page, page + count);
    this.remoteFetches++;
    if (owner === this.id || !this.members.has(owner)) {
      this.search(reqId);
      return count;
    }
    this.armRetry(reqId);
    const viaData = this.dataChannels.has(owner);
    if (!viaData && count >= DATA_CHANNEL_MIN) void this.openDataChannel(owner);
    this.send(owner, Msg.PageRequest, encode.pageRequest({ reqId, page, count, requester: this.id, time: this.log.applied, hops: 0, search: false, viaData }));
    return count;
  }

  /** The owner is gone: ask every member whether it holds the page's latest version. */
  private search(reqId: number): void {
    const f = this.fetches.get(reqId)!;
    const others = [...this.members.keys()].filter((id) => id !== this.id);
    f.searching = new Set(others);
    if (others.length === 0) {
      this.lostPage(reqId);
      return;
    }
    this.armRetry(reqId);
    for (const id of others) {
      this.send(id, Msg.PageRequest, encode.pageRequest({ reqId, page: f.page, count: 1, requester: this.id, time: this.log.applied, hops: 0, search: true }));
    }
  }

  private lostPage(reqId: number): void {
    const f = this.fetches.get(reqId)!;
    this.ev.log('error', `page ${f.page} is lost: no live node holds version ${this.table.versions[f.page]}`);
    this.native.markLost(f.page);
    // The faulting thread must be able to go on (to see the error): it gets a zero page,
    // with the loss reported by the next DSM call and the transaction doomed.
    this.native.install(f.page, null, Number(this.table.versions[f.page]), this.id);
    this.finish(reqId);
  }

  private armRetry(reqId: number): void {
    const f = this.fetches.get(reqId);
    if (!f) return;
    if (f.timer) clearTimeout(f.timer);
    f.timer = setTimeout(() => {
      if (!this.fetches.has(reqId) || this.closing) return;
      this.ev.log('warn', `no answer for page ${f.page} within ${FETCH_RETRY_MS} ms; asking every member`);
      this.search(reqId);
    }, FETCH_RETRY_MS);
    f.timer.unref();
  }

  private finish(reqId: number): void {
    const f = this.fetches.get(reqId);
    if (!f) return;
    if (f.timer) clearTimeout(f.timer);
    this.fetches.delete(reqId);
    for (let i = 0; i < f.count; i++) if (this.fetchByPage[f.page + i] === reqId) this.fetchByPage[f.page + i] = 0;
    for (const s of f.slots) this.native.completeRequest(s);
  }

  private onPageReply(from: number, r: ReturnType<typeof decode.pageReply>): void {
    const f = this.fetches.get(r.reqId);
    if (!f) return;
    if (r.status !== PageStatus.ok) {
      if (f.searching) {
        f.searching.delete(from);
        if (f.searching.size === 0) this.lostPage(r.reqId);
      } else {
        this.search(r.reqId);
      }
      return;
    }
    if (r.pages.some((p) => p >= this.config.numPages)) throw new WireError('a page reply names a page outside the region');
    if (debug.enabled) debug(`node ${this.id} got pages ${Array.from(r.pages).join(',')} versions ${Array.from(r.versions).join(',')}`);
    this.native.installPages(r.pages, r.versions, r.owners, r.data);
    let newest = 0;
    for (const v of r.versions) newest = Math.max(newest, v);
    this.log.hear(newest);
    // Installed, or refused because a newer commit crossed the reply: either way the
    // faulting thread looks again and, if needed, asks the new owner.
    this.finish(r.reqId);
    this.followScan();
  }

  /**
   * A scan reads installed pages without faulting, but trips on one page in every 64 (left
   * unmapped): keep the read-ahead going from where it has got to.
   */
  private followScan(): void {
    if (this.window !== READ_AHEAD_MAX) return;
    const at = this.native.lastReadFault();
    if (at > this.scanAt && at < this.aheadTo) this.keepAhead(at);
  }

  private servePage(req: PageRequest): void {
    if (debug.enabled) debug(`node ${this.id} serve page ${req.page} to ${req.requester}: owner ${this.table.owners[req.page]} state ${this.table.states[req.page]} version ${this.table.versions[req.page]}`);
    if (req.page >= this.config.numPages) throw new Error(`page ${req.page} is outside the region`);
    // Broadcast the app's lent-token commits first, so the commit reaches the requester
    // before the page it made (same connection, in order).
    this.drainLocal();
    const owner = this.table.owners[req.page];
    const here = this.table.states[req.page] !== 0;
    if (!req.search && owner !== this.id && this.members.has(owner) && req.hops < MAX_HOPS && owner !== req.requester) {
      this.forwarded++;
      this.send(owner, Msg.PageRequest, encode.pageRequest({ ...req, hops: req.hops + 1 }));
      return;
    }
    if (!here) {
      this.send(req.requester, Msg.PageReply, encode.pageReply({ reqId: req.reqId, page: req.page, status: PageStatus.notHere, pages: NONE_U32, versions: NONE_F64, owners: NONE_U16 }, this.config.pageSize));
      return;
    }
    const max = Math.min(req.count, READ_AHEAD_MAX, this.config.numPages - req.page);
    let count = 1;
    // Read-ahead pages: only those this node owns and holds, so every copy sent is current.
    while (count < max) {
      const p = req.page + count;
      if (this.table.states[p] === 0 || this.table.owners[p] !== this.id || this.table.versions[p] === 0n) break;
      count++;
    }
    const pages = new Uint32Array(count);
    const versions = new Float64Array(count);
    const owners = new Uint16Array(count);
    for (let i = 0; i < count; i++) {
      const p = req.page + i;
      pages[i] = p;
      versions[i] = Number(this.table.versions[p]);
      owners[i] = this.table.owners[p];
    }
    const pooled = count === READ_AHEAD_MAX ? this.replyBuffers.take() : undefined;
    const reply = encode.pageReply(
      { reqId: req.reqId, page: req.page, status: PageStatus.ok, pages, versions, owners },
      this.config.pageSize,
      (data) => this.native.copyCommittedPages(pages, data),
      pooled,
    );
    const done = pooled && (() => this.replyBuffers.give(pooled));
    const data = req.viaData ? this.dataConns.get(req.requester) : undefined;
    if (data && !data.isClosed) data.send(Msg.PageReply, reply, done);
    else this.send(req.requester, Msg.PageReply, reply, done);
  }

  // ---- failures ----

  private lost(id: number, reason: string): void {
    if (this.closing || !this.members.has(id)) return;
    this.ev.log('warn', `lost node ${id} (${reason})`);
    this.removeMember(id);
  }

  /** `graceful`: the member left and passed the token on; no recovery is needed. */
  private removeMember(id: number, graceful = false): void {
    if (!this.members.delete(id)) return;
    this.conns.get(id)?.close('removed');
    this.conns.delete(id);
    this.dataConns.get(id)?.close('removed');
    const ch = this.dataChannels.get(id);
    if (ch !== undefined) {
      this.dataChannels.delete(id);
      this.native.closeDataChannel(ch);
    }
    this.queued.delete(id);
    this.token.forget(id);
    this.ev.event('peer-leave', id);
    // Fetches waiting on the dead node: look for another holder.
    for (const [reqId, f] of this.fetches) {
      if (f.searching) {
        f.searching.delete(id);
        if (f.searching.size === 0) this.lostPage(reqId);
      } else if (this.table.owners[f.page] === id) {
        this.search(reqId);
      }
    }
    // The lowest live node checks whether the token died with it.
    if (!graceful && Math.min(...this.members.keys()) === this.id) this.startRecovery();
  }

  /**
   * Run by the lowest live node after a member died: did the token die with it? Every
   * survivor reports whether it holds the token and where it last sent it; tokens arriving
   * meanwhile are held. No holder, and the latest transfer went to a dead node: the token
   * is regenerated at the highest applied time, with a new generation that voids the old.
   */
  private startRecovery(): void {
    const generation = Math.max(this.token.generation, this.recovering?.generation ?? 0) + 1;
    this.recovering = { generation, states: new Map() };
    this.token.holdArrivals();
    this.recovering.states.set(this.id, this.tokenReport());
    this.broadcast(Msg.RecoverQuery, encode.recover({ generation, time: this.log.applied, source: this.id, regenerated: false }));
    this.maybeFinishRecovery();
  }

  /** What this node tells a recovery about the token. */
  private tokenReport(): Omit<RecoverState, 'generation'> {
    return {
      applied: this.log.applied,
      hasToken: this.token.held,
      waiting: this.token.waiting,
      seq: this.token.rn.get(this.id) ?? 0,
      sentTo: this.token.lastSent.to,
      sentHops: this.token.lastSent.hops,
    };
  }

  private onRecoverState(from: number, s: RecoverState): void {
    if (!this.recovering || s.generation !== this.recovering.generation) return;
    this.recovering.states.set(from, s);
    this.maybeFinishRecovery();
  }

  private maybeFinishRecovery(): void {
    const r = this.recovering;
    if (!r) return;
    for (const id of this.members.keys()) if (!r.states.has(id)) return;
    this.recovering = undefined;
    let best = this.id;
    let time = this.log.applied;
    let held = false;
    let latest = { to: NO_NODE, hops: -1 };
    for (const [id, s] of r.states) {
      if (s.applied > time) {
        time = s.applied;
        best = id;
      }
      if (s.hasToken) held = true;
      if (s.sentTo !== NO_NODE && s.sentHops > latest.hops) latest = { to: s.sentTo, hops: s.sentHops };
    }
    // In flight to a live member: it will arrive (and be released from the hold).
    const inFlight = latest.hops >= 0 && this.members.has(latest.to) && !r.states.get(latest.to)?.hasToken;
    const regenerate = !held && !inFlight;
    if (regenerate) {
      const ln = new Map<number, number>();
      const queue: number[] = [];
      for (const [id, s] of r.states) {
        ln.set(id, s.waiting ? s.seq - 1 : s.seq);
        this.token.rn.set(id, Math.max(this.token.rn.get(id) ?? 0, s.seq));
        if (s.waiting && id !== this.id) queue.push(id);
      }
      const members = [...this.members.values()];
      this.ev.log('warn', `regenerated the commit token at time ${time} (generation ${r.generation})`);
      // Catch up first if another survivor applied more.
      if (time > this.log.applied) this.send(best, Msg.ResendRequest, encode.resendRequest(this.log.applied, time));
      this.token.endHold(r.generation);
      this.token.onToken({ generation: r.generation, hops: latest.hops + 1, time, ln, queue, members });
    } else {
      this.token.endHold(undefined);
    }
    this.broadcast(Msg.Recovered, encode.recover({ generation: r.generation, time, source: best, regenerated: regenerate }));
  }

  // ---- clients (dsm stats) ----

  private serveClient(c: Connection): void {
    c.on('message', (type: number) => {
      if (type === Msg.StatsRequest) c.send(Msg.StatsReply, encode.json(this.statsForClient?.() ?? {}));
    });
  }

  statsForClient?: () => unknown;

  // ---- leaving ----

  /**
   * Leaves the cluster. With other members left, the lowest takes over: under the token
   * (no commit can interleave), it receives every page this node owns, acknowledges them,
   * gets the token, and everyone is told to ask it for those pages from now on.
   */
  async close(): Promise<void> {
    const others = [...this.members.keys()].filter((id) => id !== this.id);
    let successor = NO_NODE;
    if (others.length > 0 && !this.closing) {
      try {
        successor = Math.min(...others);
        await this.handOver(successor);
      } catch (e) {
        this.ev.log('warn', `handing this node's pages over to node ${successor} failed: ${(e as Error).message}; they may be lost`);
        successor = NO_NODE;
      }
    }
    this.closing = true;
    if (this.drainTimer) clearTimeout(this.drainTimer);
    if (this.token.token) this.reclaim(this.token.token);
    this.localCommits.close();
    this.broadcast(Msg.Leave, encode.memberRemove(successor));
    this.log.close();
    await this.transport.close();
  }

  private handoverAcked?: () => void;

  private async handOver(successor: number): Promise<void> {
    const t = await this.token.acquire();
    await this.log.waitApplied(t.time);
    const mine: number[] = [];
    const { owners, versions } = this.table;
    for (let p = 0; p < owners.length; p++) if (owners[p] === this.id && versions[p] !== 0n) mine.push(p);
    for (let i = 0; i < mine.length; i += READ_AHEAD_MAX) {
      const pages = Uint32Array.from(mine.slice(i, i + READ_AHEAD_MAX));
      const batch = { reqId: 0, page: pages[0], status: PageStatus.ok, pages, versions: Float64Array.from(pages, (p) => Number(versions[p])), owners: new Uint16Array(pages.length).fill(successor) };
      this.send(successor, Msg.Handover, encode.pageReply(batch, this.config.pageSize, (data) => this.native.copyCommittedPages(pages, data)));
    }
    const acked = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no acknowledgement within 30 s')), 30_000);
      this.handoverAcked = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.send(successor, Msg.HandoverDone, Buffer.alloc(0));
    await acked;
    // The token goes to the successor, without us in it.
    t.members = t.members.filter((m) => m.id !== this.id);
    t.queue = [successor, ...t.queue.filter((q) => q !== successor && q !== this.id)];
    this.token.release();
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
      fetches: [...this.fetches.values()].map((f) => ({
        page: f.page,
        slots: f.slots.length,
        searching: f.searching ? [...f.searching] : undefined,
        ...this.pageInfo(f.page),
      })),
      pages: (process.env.DSM_DEBUG_PAGES ?? '').split(',').filter(Boolean).map((p) => ({ page: Number(p), ...this.pageInfo(Number(p)) })),
      connections: [...this.conns.keys()],
      queuedFor: [...this.queued.keys()],
      dataChannels: [...this.dataChannels.keys()],
      dataConnections: [...this.dataConns.keys()],
    };
  }

  private pageInfo(p: number): { state: number; version: number; owner: number } {
    return { state: this.table.states[p], version: Number(this.table.versions[p]), owner: this.table.owners[p] };
  }

  membersList(): number[] {
    return [...this.members.keys()].sort((a, b) => a - b);
  }
}
