// The app thread's handle on the service worker: starts it, sends requests, matches replies.
import os from 'node:os';
import path from 'node:path';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { ClosedError, CommitUncertainError, DsmError, SystemError } from '../errors';
import type { NativeAddon } from '../native';
import { LocalTokenGate } from './local_token';
import { CommitRing } from './commit_ring';
import { type AppRequest, type ServiceConfig, type ServiceEvent, type ServiceReply, FLUSH_NOW, MEMBER_WORDS, raiseTo, Status } from './messages';

/** The 32-bit word holding the low half of the node-id status word. */
const NODE_ID_WORD = Status.nodeId * 2 + (os.endianness() === 'LE' ? 0 : 1);

type Pending = { resolve: (r: ServiceReply) => void; reject: (e: Error) => void };
// Distributes Omit over the union so each request keeps its own fields.
type Request = AppRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

export class ServiceClient {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private exited = false;
  /** stop() was called: requests failing from now on fail because the node closed. */
  private stopping = false;
  private readonly networked: boolean;
  private readonly time: BigUint64Array;
  /** The same status words as 32-bit halves (node ids fit in one). */
  private readonly time32: Uint32Array;
  private readonly pageSize: number;
  private durableWaiters: Array<{ time: number; resolve: () => void; reject: (e: Error) => void }> = [];
  /** Transactions issued and not yet settled (inFlight). */
  private transactions = 0;
  /** The member table the service publishes (messages.ts ServiceConfig.members). */
  private readonly members: Uint32Array;

  /**
   * Whether node `id` has left the cluster for good: it was given its id (below the next
   * one) and is no member now. False for this node's own id and for ids not yet known here.
   */
  departed(id: number): boolean {
    if (!(id >= 0 && id < Atomics.load(this.members, 0))) return false;
    return (Atomics.load(this.members, 1 + (id >>> 5)) & (1 << (id & 31))) === 0;
  }

  /** The status words shared with the service (messages.ts `Status`). */
  get status(): BigUint64Array {
    return this.time;
  }

  /**
   * This node's id, as the service last published it (it changes when the node joins again).
   * Read as the status word's low half: the allocator asks on every allocation, and a
   * BigInt made and converted each time was a third of a small allocation's cost.
   */
  get nodeId(): number {
    return Atomics.load(this.time32, NODE_ID_WORD);
  }
  address = '';
  onPeer?: (type: 'peer-join' | 'peer-leave', id: number) => void;
  onProgress?: (p: { phase: 'loading' | 'catching-up'; done: number; total: number }) => void;

  private readonly gate: LocalTokenGate;
  private readonly localCommits?: MessagePort;
  private readonly ring?: CommitRing;
  /** Commits wait for backups: wake the service once the app's run of transactions ends (wakeService). */
  private readonly wakeAfterRun: boolean;

  private constructor(config: Omit<ServiceConfig, 'gate' | 'localCommits' | 'commitRing' | 'members'>, onLog: (level: string, message: string) => void) {
    this.time = new BigUint64Array(config.timeBuffer);
    this.time32 = new Uint32Array(config.timeBuffer);
    this.pageSize = config.pageSize;
    this.gate = LocalTokenGate.create();
    const members = new SharedArrayBuffer(MEMBER_WORDS * 4);
    this.members = new Uint32Array(members);
    const full: ServiceConfig = { ...config, gate: this.gate.buffer, members };
    const transfer: MessagePort[] = [];
    if (config.cluster) {
      const ch = new MessageChannel();
      this.localCommits = ch.port1;
      this.localCommits.unref();
      full.localCommits = ch.port2;
      this.ring = CommitRing.create();
      full.commitRing = this.ring.buffer;
      transfer.push(ch.port2);
    }
    this.worker = new Worker(path.join(__dirname, 'worker.js'), { workerData: full, transferList: transfer });
    // A networked node keeps the process alive (it serves its peers) until close(); a
    // one-node cluster must not: in-flight requests ref it.
    if (!config.cluster) this.worker.unref();
    this.networked = config.cluster !== undefined;
    this.wakeAfterRun = config.cluster !== undefined && config.cluster.durability !== 'none';
    this.worker.on('message', (m: ServiceReply | ServiceEvent) => {
      if ('ok' in m) {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (this.pending.size === 0 && !this.networked) this.worker.unref();
        p.resolve(m);
      } else if (m.type === 'log') {
        onLog(m.level, m.message);
      } else if (m.type === 'peer-join' || m.type === 'peer-leave') {
        this.onPeer?.(m.type, m.id);
      } else if (m.type === 'durable') {
        this.flushDurable();
      } else if (m.type === 'uncertain') {
        const ws = this.durableWaiters;
        this.durableWaiters = [];
        this.time[Status.durableWanted] = 0n;
        for (const w of ws) w.reject(new CommitUncertainError());
      } else if (m.type === 'progress') {
        this.onProgress?.({ phase: m.phase, done: m.done, total: m.total });
      } else if (m.type === 'rejoined') {
        onLog('warn', `this node joined the cluster again as node ${m.id}`);
      }
    });
    this.worker.on('error', (e) => {
      // Said even when nothing waits: a request made later only learns that the thread is gone.
      onLog('error', `the service thread failed (a bug): ${e.stack ?? e.message}`);
      this.failAll(new SystemError(`the service thread failed: ${e.message}`, { cause: e }));
    });
    this.worker.on('exit', () => {
      this.exited = true;
      // Requests still waiting when the node closes (a barrier, a lock's watch, a wait for a
      // global time) end because of the close, not because the service failed.
      this.failAll(this.stopping ? new ClosedError() : new SystemError('the service thread exited'));
    });
  }

  /** Starts the service worker and resolves once it has attached to the region. */
  static start(
    config: Omit<ServiceConfig, 'gate' | 'localCommits' | 'commitRing' | 'members'>,
    onLog: (level: string, message: string) => void,
    onProgress?: (p: { phase: 'loading' | 'catching-up'; done: number; total: number }) => void,
  ): Promise<ServiceClient> {
    const c = new ServiceClient(config, onLog);
    c.onProgress = onProgress;
    return new Promise((resolve, reject) => {
      const onMsg = (m: ServiceEvent) => {
        if (!('type' in m)) return;
        if (m.type === 'ready') {
          c.worker.off('message', onMsg);
          c.worker.off('error', onErr);
          c.address = m.address;
          // Listening for the start ref'd the worker's port again.
          if (!c.networked) c.worker.unref();
          resolve(c);
        } else if (m.type === 'failed') {
          c.worker.off('message', onMsg);
          c.worker.off('error', onErr);
          void c.worker.terminate();
          reject(new DsmError(m.code, m.message));
        }
      };
      const onErr = (e: Error) => reject(new SystemError(`the service thread failed to start: ${e.message}`, { cause: e }));
      c.worker.on('message', onMsg);
      c.worker.once('error', onErr);
    });
  }

  get globalTime(): number {
    return Number(this.time[0]);
  }

  /**
   * Commits the ended transaction on the app thread when the service has lent it the
   * token: returns the new global time, 'doomed', or undefined when the token is not here
   * (the caller then asks the service). `written`: the write set, if the caller has it.
   */
  tryLocalCommit(native: NativeAddon, nodeId: number, written?: Uint32Array): number | 'doomed' | undefined {
    if (!this.gate.enter()) return undefined;
    let time = this.gate.tokenTime;
    try {
      if (native.doomed()) return 'doomed';
      if (!this.ring) {
        time += 1;
        native.commit(time, nodeId);
      } else {
        // The changes are not encoded yet: room for every written page whole with half a
        // page of diff beside it (native/dsm.h kWholeAndDiff), at worst.
        const n = written?.length ?? native.writeSet().length;
        // The service catches up first: the ring is full, or it has not broadcast a commit
        // for longer than a node may hold acknowledged commits alone (commit_ring.ts).
        if (!this.ring.fits(n, n * (16 + 2 * this.pageSize)) || this.ring.behind()) return undefined;
        time += 1;
        const ring = this.ring;
        if (ring.push((words, w) => native.commitToRing(time, nodeId, words, w, ring.room()))) this.wakeService();
      }
      raiseTo(this.time, Status.applied, BigInt(time));
      raiseTo(this.time, Status.seen, BigInt(time));
      return time;
    } finally {
      this.gate.leave(time);
    }
  }

  /**
   * The ring had been drained: wake the service to broadcast what it holds now. With
   * backups the app waits for their acknowledgement either way, so the wake waits until the
   * app's current run of transactions ends (the transactions it has queued run as
   * microtasks, before setImmediate): the service then drains them as one batch, one message
   * to each backup and one acknowledgement back, instead of waking between them and sending
   * one or two at a time while it competes with the app for the CPU. Eight transactions in
   * flight on two nodes, 3 runs each: see the README's design notes. With durability 'none'
   * the service waits a millisecond itself (commits.ts) and this wake goes at once.
   */
  private wakeService(): void {
    if (!this.wakeAfterRun) this.localCommits!.postMessage(null);
    else setImmediate(() => this.localCommits!.postMessage(null));
  }

  /**
   * Another node waits for the commits this app made (a lock's release, lib/sync/lock.ts):
   * the service sends them now instead of after its millisecond of batching (commits.ts),
   * and passes the token on if it kept it for the batch. Nothing to do without a cluster.
   */
  flushCommits(): void {
    this.localCommits?.postMessage(FLUSH_NOW);
  }

  /**
   * Resolves once this node's commit `time` (and every earlier one) is held by its backups
   * (durability 'replicated'); rejects with CommitUncertainError if this node is removed
   * from the cluster first.
   */
  waitDurable(time: number, epoch: number): Promise<void> {
    // Removed from the cluster since it committed (the answer may have crossed the news).
    if (epoch !== this.durableEpoch) return Promise.reject(new CommitUncertainError());
    if (this.time[Status.durable] >= BigInt(time)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      // Own commit times only grow, so the list stays sorted.
      this.durableWaiters.push({ time, resolve, reject });
      if (this.durableWaiters.length === 1) this.flushDurable();
    });
  }

  /**
   * Durability 'disk': a read-only transaction that read at global time `time` (under durable
   * epoch `epoch`) resolves once a page server has every commit up to it on disk
   * (durable_reads.ts); CommitUncertainError if this node was cut off or removed first.
   */
  async waitDurableRead(time: number, epoch: number): Promise<void> {
    const uncertain = () =>
      new CommitUncertainError(
        "this node lost contact with the cluster before what a read-only transaction read was on a page server's disk, so it may not be in the cluster's history; read it again in a new transaction",
      );
    if (epoch !== this.durableEpoch) throw uncertain();
    try {
      await this.request({ type: 'durable-read', time });
    } catch (e) {
      throw (e as { code?: string }).code === 'ERR_DSM_COMMIT_UNCERTAIN' ? uncertain() : e;
    }
  }

  /**
   * The app issued a transaction (+1) or saw one settle (-1): the count, issued and not yet
   * acknowledged, is the service's hint that the app keeps several in flight (commits.ts
   * pushToken).
   */
  inFlight(delta: 1 | -1): void {
    this.transactions += delta;
    Atomics.store(this.time, Status.inFlight, BigInt(this.transactions));
  }

  /** Changes when the node is removed from the cluster (see waitDurable). */
  get durableEpoch(): number {
    return Number(this.time[Status.durableEpoch]);
  }

  /** Resolves the waits the durable time has reached, and tells the service the next one. */
  private flushDurable(): void {
    const ws = this.durableWaiters;
    for (;;) {
      const d = Atomics.load(this.time, Status.durable);
      let k = 0;
      while (k < ws.length && BigInt(ws[k].time) <= d) ws[k++].resolve();
      if (k) ws.splice(0, k);
      // Stored, then the durable time loaded, both sequentially consistent: the service
      // stores the durable time, then loads what we want (service.ts publishDurable). With
      // plain accesses each thread could read the other's old value (a store may wait in
      // the store buffer while a later load goes ahead), and a commit already durable was
      // never woken: two nodes awaiting replicated transfers hung about once in 30 runs.
      Atomics.store(this.time, Status.durableWanted, ws.length ? BigInt(ws[0].time) : 0n);
      // The service may have moved the time on before it saw what we want: look again.
      if (!ws.length || Atomics.load(this.time, Status.durable) < BigInt(ws[0].time)) return;
    }
  }

  /**
   * A read-only transaction must ask the service before it ends: commits were heard of that
   * are not applied yet, or this node's lease has run out. Without a lease a node may have
   * been stalled or cut off while the others replaced its token, and read what it committed
   * with that token, which the cluster never had: the service answers once the lease is
   * back (and such commits are void) or refuses as partitioned.
   */
  get needsSync(): boolean {
    return this.time[1] > this.time[0] || !this.gate.leaseValid();
  }

  /** Sends a request; rejects with the service's DsmError when it answers ok: false. */
  async request(req: Request): Promise<ServiceReply & { ok: true }> {
    if (this.exited) throw this.stopping ? new ClosedError() : new SystemError('the service thread is not running');
    const id = this.nextId++;
    const reply = await new Promise<ServiceReply>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...req, id });
    });
    if (reply.ok) return reply;
    throw new DsmError(reply.code ?? 'ERR_DSM_SYSTEM', reply.message ?? 'the service failed');
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    this.stopping = true;
    await this.request({ type: 'close' }).catch(() => undefined);
    await this.worker.terminate();
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}
