// The public node object: typed views over the region, transactions, statistics, close.
import { HeapGuard } from './alloc/guard';
import { Heap } from './alloc/heap';
import { ClosedError, fromNative, InvalidOptionError, LocalPageError, NestedTransactionError, PageLostError, PartitionedError, WriteOutsideTransactionError } from './errors';
import { type LostRange, LostPages } from './lost_pages';
import { describePage } from './alloc/page_holds';
import { type AbortEvent, type CommitEvent, NodeEmitter } from './node_events';
import { ConflictMonitor, HOT_PAGES_SHOWN, type HotPage } from './conflict_monitor';
import { Barriers } from './sync/barrier';
import { DIRECTORY_ROOT, SyncDirectory, syncNamesIn } from './sync/directory';
import { Locks } from './sync/lock';
import type { SyncNode } from './sync/sync_host';
import { STATUS_WORDS, Status } from './service/messages';
import { TimeoutError } from './errors';
import { Counter, loadNative, MODEL_HERE, MODEL_MASK, type NativeAddon, type NativeRegion, PageModel, PageState } from './native';
import { checkKeys, type NodeOptions, resolveOptions } from './options';
import { ServiceClient } from './service/client';
import { type Transaction, type TransactionOptions, TransactionRunner } from './transaction';
import type { DsmStats } from './node_stats';

export type { DsmStats } from './node_stats';

/** The typed array classes `dsm.view()` takes. */
export type TypedArrayClass =
  | Int8ArrayConstructor
  | Uint8ArrayConstructor
  | Uint8ClampedArrayConstructor
  | Int16ArrayConstructor
  | Uint16ArrayConstructor
  | Int32ArrayConstructor
  | Uint32ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor;

const VIEW_CLASSES: ReadonlySet<unknown> = new Set([
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array,
]);

/**
 * One DSM node: the shared region and the transactions on it. Created by {@link createNode}.
 *
 * @example
 * const dsm = await createNode({ regionSize: 64 << 20 });
 * const p = await dsm.transaction((tx) => tx.alloc(8));
 * await dsm.transaction(() => { dsm.view(Float64Array, p)[0] += 1; });
 */
export class DsmNode extends NodeEmitter {
  /** Bytes of the region, as typed arrays. Reads work anywhere; writes belong in transactions. */
  readonly u8: Uint8Array;
  readonly i32: Int32Array;
  readonly u32: Uint32Array;
  readonly f64: Float64Array;
  readonly u64: BigUint64Array;
  /**
   * This node's id in the cluster (0 for the founding node and a one-node cluster). A node
   * the cluster removed (cut off or stalled too long) joins again under a new id.
   */
  get nodeId(): number {
    return this.service.nodeId;
  }
  /** host:port peers reach this node at ('' for a node without networking). */
  readonly address: string;
  /** Bytes per DSM page. */
  readonly pageSize: number;
  /** The region's base address, the same on every node. */
  readonly base: number;
  readonly regionSize: number;

  private closed = false;
  private readonly runner: TransactionRunner;
  private readonly lost: LostPages;
  private readonly conflicts = new ConflictMonitor();
  /** A publication of the hot pages to the service is scheduled (networked nodes). */
  private hotPublish?: NodeJS.Immediate;
  /** The native page table's model bytes, read-only. */
  private readonly pageModels: Uint8Array;
  /** @internal */ readonly heap: Heap;
  private readonly barriers: Barriers;
  private readonly locks: Locks;
  private readonly directory: SyncDirectory;

  /**
   * Peer events that came while createNode() ran, when nobody could listen yet: a peer
   * joining through this node while it opened its heap was never told to the program (the
   * two-machine demo's master waited for a 'peer-join' that had come and gone).
   */
  private early: Array<['peer-join' | 'peer-leave', number]> | undefined = [];

  /**
   * @internal createNode() hands the node over: the events held since it started follow on
   * the next turn of the event loop, after the caller's `await` has attached its listeners,
   * and in order with any that come meanwhile.
   */
  releaseEarlyEvents(): void {
    setImmediate(() => {
      const held = this.early ?? [];
      this.early = undefined;
      for (const [type, id] of held) this.emit(type, { id });
    });
  }

  /** @internal */
  constructor(
    private readonly native: NativeAddon,
    private readonly region: NativeRegion,
    private readonly service: ServiceClient,
    opts: { base: number; regionSize: number; maxRetries: number; barrierSpinUs: number; replicated: boolean; disk: boolean },
  ) {
    super();
    const b = region.buffer;
    this.u8 = new Uint8Array(b);
    this.i32 = new Int32Array(b);
    this.u32 = new Uint32Array(b);
    this.f64 = new Float64Array(b);
    this.u64 = new BigUint64Array(b);
    this.pageSize = region.pageSize;
    this.address = service.address;
    service.onPeer = (type, id) => (this.early ? this.early.push([type, id]) : this.emit(type, { id }));
    this.base = opts.base;
    this.regionSize = opts.regionSize;
    this.heap = new Heap(
      this,
      region.states,
      (first, count, model) => native.declareModel(first, count, model),
      (first, count) => native.claimFresh(first, count),
      (owner, header) => service.departed(owner) && !this.lost.has(header),
    );
    this.pageModels = native.pageModels();
    this.lost = new LostPages(region, service.status, this.u8, this.pageModels);
    const guard = new HeapGuard(this.heap, this.u8, native, region);
    this.runner = new TransactionRunner(native, service, this.heap, opts.maxRetries, {
      nodeId: () => this.nodeId,
      checkViolations: () => this.checkViolations(),
      checkLost: () => this.checkLost(),
      checkHeapWrites: (pages) => guard.check(pages),
      needsSync: () => this.service.needsSync,
      partitioned: () => this.service.status[Status.partitioned] !== 0n,
      networked: () => this.address !== '',
      holdWhenContended: () => opts.replicated,
      onCommit: (time, pages) => this.listenerCount('commit') && this.emit('commit', { time, pages } satisfies CommitEvent),
      onAbort: (attempt, reason) => this.listenerCount('abort') && this.emit('abort', { attempt, reason } satisfies AbortEvent),
      conflict: (page, node) => this.onConflict(page, node),
      durable: (time, epoch) => (opts.replicated ? this.service.waitDurable(time, epoch) : undefined),
      durableRead: (time, epoch) => (opts.disk ? this.service.waitDurableRead(time, epoch) : undefined),
      durableEpoch: () => this.service.durableEpoch,
    }, this.lost);
    const sync: SyncNode = {
      u32: this.u32,
      versions: region.versions,
      pageSize: this.pageSize,
      nodeId: () => this.nodeId,
      closed: () => this.closed,
      run: (fn) => this.runner.run(fn),
      flush: () => this.service.flushCommits(),
      root: (name) => this.heap.root(name),
      watch: async (pages, since, epoch) => (await this.service.request({ type: 'watch', pages, since, epoch })).view!,
    };
    this.directory = new SyncDirectory(sync);
    this.barriers = new Barriers({
      globalTime: () => this.globalTime,
      wait: async (name, parties, time) => {
        // The release comes within microseconds of the last arrival: the CPU it wakes this
        // node on stays awake meanwhile (idle_poller.h; README, "Barriers keep the CPU awake").
        const spinning = opts.barrierSpinUs > 0 && native.pollIdle(opts.barrierSpinUs);
        try {
          return (await this.service.request({ type: 'barrier', name, parties, time })).barrier!;
        } finally {
          if (spinning) native.stopIdlePoll();
        }
      },
    });
    this.locks = new Locks(sync, this.directory);
  }

  /**
   * Waits until `parties` nodes (one party per node) have called `barrier(name, parties)`,
   * then resolves on all of them. Everything a party committed before arriving is visible
   * to every party once this resolves. One message round between the nodes' service threads
   * (no transaction): each party tells a coordinator, which releases them all once the last
   * arrives. Rejects with ERR_DSM_BARRIER_BROKEN on every waiting party
   * when a node that arrived is removed from the cluster (it died, stalled or was cut off),
   * or when a member is removed and fewer remain than `parties`; a later call starts a new
   * round. With fewer members than `parties` and none removed, it waits for the nodes still
   * joining, so every process of an SPMD program may call it as soon as it has started.
   * Rejects with ERR_DSM_PARTITIONED when this node has no quorum (then retry after the heal).
   * @example for (let sweep = 0; sweep < 40; sweep++) { await step(); await dsm.barrier('sweep', 2); }
   */
  barrier(name: string, parties: number): Promise<void> {
    if (this.runner.inside) throw new NestedTransactionError('dsm.barrier()');
    try {
      this.checkOpen();
      return this.barriers.wait(name, parties);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Starts bringing the pages of bytes [ptr, ptr + byteLength) to this node, so that the
   * program's later touches find them here instead of each waiting for a network round trip;
   * resolves once they are all here. Work on something else meanwhile: an SPMD program asks
   * for its neighbours' rows, sweeps its own interior, then its edges. With `write`, pages
   * of 'sequential' and 'migratory' blocks come owned (other copies invalidated), so the
   * first write needs no message; transactional pages get a current read copy. It changes
   * only when data moves, never what a read returns: a touch before it resolves simply waits
   * for the same transfer. Another node's 'local' pages are left alone.
   * @example const edges = dsm.prefetch(haloPtr, rowBytes); sweepInterior(); await edges; sweepEdges();
   */
  prefetch(ptr: number, byteLength: number, options: { write?: boolean } = {}): Promise<void> {
    try {
      this.checkOpen();
      if (!Number.isSafeInteger(ptr) || ptr < 0 || !Number.isSafeInteger(byteLength) || byteLength < 0 || ptr + byteLength > this.regionSize) {
        throw new InvalidOptionError(`dsm.prefetch: bytes [${String(ptr)}, ${String(ptr)} + ${String(byteLength)}) are not whole byte offsets inside the region's ${this.regionSize} bytes`);
      }
      if (byteLength === 0) return Promise.resolve();
      const first = Math.floor(ptr / this.pageSize);
      const count = Math.floor((ptr + byteLength - 1) / this.pageSize) - first + 1;
      const write = options.write === true;
      // Already here as wanted (an SPMD halo pushed at the barrier): no service round trip.
      if (this.here(first, count, write)) return Promise.resolve();
      return this.service.request({ type: 'prefetch', first, count, write }).then(() => undefined);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Whether pages [first, first + count) are here as a prefetch would bring them: a valid
   * copy, and owned where the model needs it (a sequential write, any migratory access).
   * The service looks the same way before it asks anyone (sequential.ts prefetchPage).
   */
  private here(first: number, count: number, write: boolean): boolean {
    const states = this.region.states;
    const models = this.pageModels;
    for (let p = first; p < first + count; p++) {
      const model = models[p] & MODEL_MASK;
      if (model === PageModel.local) continue;
      if (states[p] === PageState.invalid) return false;
      if ((model === PageModel.migratory || (write && model === PageModel.sequential)) && !(models[p] & MODEL_HERE)) return false;
    }
    return true;
  }

  /**
   * Takes the cluster-wide lock `name`, waiting (without polling) while another caller
   * holds it; resolves with the function that releases it. Nodes are served in the order
   * they asked. A holder removed from the cluster (dead, cut off) loses the lock to the
   * next waiter. Calling the unlock function twice throws ERR_DSM_LOCK_NOT_HELD; close()
   * releases the locks still held. Writes inside the lock still belong in transactions.
   * With `timeoutMs`, a lock not taken within that many milliseconds rejects with
   * ERR_DSM_TIMEOUT and its node leaves the queue (0: take it only if it is free now).
   * @example const unlock = await dsm.lock('queue'); try { await take(); } finally { await unlock(); }
   * @example const unlock = await dsm.lock('queue', { timeoutMs: 500 }); // or ERR_DSM_TIMEOUT
   */
  lock(name: string, opts: { timeoutMs?: number } = {}): Promise<() => Promise<void>> {
    if (this.runner.inside) throw new NestedTransactionError('dsm.lock()');
    try {
      this.checkOpen();
      checkKeys('dsm.lock', opts, ['timeoutMs']);
      const { timeoutMs } = opts ?? {};
      if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > 2 ** 31 - 1)) {
        throw new InvalidOptionError(`dsm.lock: timeoutMs must be an integer from 0 to 2147483647 (or left out to wait as long as it takes), got ${String(timeoutMs)}`);
      }
      return this.locks.lock(name, timeoutMs);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * The address ranges whose contents were lost: every node holding their latest version
   * died. Touching them raises ERR_DSM_PAGE_LOST until a transaction accepts the loss with
   * `tx.discardLost(ptr, length)` (a sequential or migratory page: the first touch on each
   * node, which goes on over a zero page of that node's own).
   * @example for (const { ptr, length } of dsm.lostPages()) console.warn('lost', ptr, length);
   */
  lostPages(): LostRange[] {
    this.checkOpen();
    return this.lost.ranges();
  }

  /** The global time this node has applied: the number of write commits it knows of. */
  get globalTime(): number {
    return this.service.globalTime;
  }

  /**
   * Runs `fn` as a transaction: its writes to the region become visible atomically, or not
   * at all if it throws. `fn` must be synchronous and may run more than once (after a
   * conflict); put side effects in `tx.afterCommit()`. Transactions of one node queue.
   *
   * @example
   * const balance = await dsm.transaction(() => { dsm.f64[a] -= 10; dsm.f64[b] += 10; return dsm.f64[a]; });
   */
  transaction<T>(fn: (tx: Transaction) => T, opts?: TransactionOptions): Promise<T> {
    // Thrown, not returned: inside a transaction function the caller is synchronous code,
    // and the error must abort the outer transaction.
    if (this.runner.inside) throw new NestedTransactionError();
    try {
      this.checkOpen();
      this.checkViolations();
      return this.runner.run(fn, opts);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * The pointer (byte offset into the region) named `name` by `tx.setRoot()`, or undefined.
   * @example const accounts = dsm.root('accounts');
   */
  root(name: string): number | undefined {
    this.checkOpen();
    return this.heap.root(name);
  }

  /**
   * A typed array of `length` elements over the object at `ptr` (from `tx.alloc` or
   * `dsm.root`). Reads and writes go to the shared region, like `dsm.u8` and the others.
   * @example await dsm.transaction(() => { dsm.view(Float64Array, ptr, 3)[2] += 1.5; });
   */
  view<C extends TypedArrayClass>(type: C, ptr: number, length = 1): InstanceType<C> {
    this.checkOpen();
    if (!VIEW_CLASSES.has(type)) {
      const got = typeof type === 'function' ? (type as { name?: string }).name || 'an anonymous function' : String(type);
      throw new InvalidOptionError(`dsm.view: the first argument must be a typed array class such as Uint32Array or Float64Array, got ${got}`);
    }
    const size = type.BYTES_PER_ELEMENT;
    if (typeof ptr !== 'number' || !Number.isSafeInteger(ptr) || ptr <= 0) {
      const hint = ptr === undefined ? ' (dsm.root() returns undefined for a name no transaction has set)' : '';
      throw new InvalidOptionError(`dsm.view: the pointer must be a positive byte offset from tx.alloc() or dsm.root(), got ${String(ptr)}${hint}`);
    }
    if (!Number.isSafeInteger(length) || length < 1) throw new InvalidOptionError(`dsm.view: the length must be a positive whole number of elements, got ${String(length)}`);
    if (ptr % size !== 0) {
      throw new InvalidOptionError(`dsm.view: pointer ${ptr} is not a multiple of ${size}, as a ${type.name} needs (tx.alloc returns 16-byte aligned pointers)`);
    }
    if (ptr + length * size > this.regionSize) {
      throw new InvalidOptionError(`dsm.view: ${length} ${type.name} element(s) at ${ptr} end at byte ${ptr + length * size}, past the region's ${this.regionSize} bytes`);
    }
    const g = this.heap.geometry;
    if (g !== undefined && ptr < g.dataStart * g.pageSize) {
      throw new InvalidOptionError(`dsm.view: pointer ${ptr} is inside the heap's own tables (the region's first ${g.dataStart * g.pageSize} bytes); objects come from tx.alloc()`);
    }
    return new (type as Uint8ArrayConstructor)(this.u8.buffer, ptr, length) as InstanceType<C>;
  }

  /**
   * Resolves once this node has applied every commit up to global time `time` (from
   * another node's `globalTime`, say). Read-only transactions commit without asking other
   * nodes, so a node sees another's commit only once it has arrived; this waits for it.
   * Rejects with ERR_DSM_TIMEOUT if the time is not reached within `timeoutMs` (default
   * 30 s): a time no node reached never comes. Other transactions go on meanwhile.
   * @example await dsm.waitForGlobalTime(timeFromOtherNode); const v = dsm.u32[i];
   */
  async waitForGlobalTime(time: number, opts: { timeoutMs?: number } = {}): Promise<void> {
    this.checkOpen();
    if (!Number.isSafeInteger(time) || time < 0) throw new InvalidOptionError(`time must be a non-negative integer, got ${String(time)}`);
    for (const k of Object.keys(opts)) if (k !== 'timeoutMs') throw new InvalidOptionError(`unknown option '${k}' of waitForGlobalTime (known: timeoutMs)`);
    const timeoutMs = opts.timeoutMs ?? 30_000;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > 2 ** 31 - 1) throw new InvalidOptionError(`timeoutMs must be an integer from 0 to 2147483647, got ${String(timeoutMs)}`);
    if (this.globalTime >= time) return;
    if (!this.address) throw new TimeoutError(`global time ${time} is ahead of this node's ${this.globalTime}, and a node without peers reaches it only by its own commits`);
    const reached = (await this.service.request({ type: 'wait-time', time, timeoutMs })).time ?? 0;
    if (reached >= time || this.globalTime >= time) return;
    // The wait ended early because this node closed meanwhile.
    if (this.closed) throw new ClosedError();
    throw new TimeoutError(
      `global time ${time} was not reached within ${timeoutMs} ms (this node has applied ${reached}); ` +
        'pass a time read from dsm.globalTime on a node of this cluster, or raise timeoutMs if the cluster is slow',
    );
  }

  /** Members, remote fetches and times as the service thread sees them. */
  async clusterStats(): Promise<import('./service/messages').ServiceStats> {
    this.checkOpen();
    return (await this.service.request({ type: 'stats' })).stats!;
  }

  /** Counters and page states of this node. */
  stats(): DsmStats {
    this.checkOpen();
    this.checkViolations();
    const c = this.region.stats;
    const n = (k: keyof typeof Counter) => Number(c[Counter[k]]);
    const pages = { invalid: 0, validUnmapped: 0, read: 0, write: 0 };
    const counts = [0, 0, 0, 0];
    const states = this.region.states;
    for (let i = 0; i < states.length; i++) counts[states[i]]++;
    pages.invalid = counts[PageState.invalid];
    pages.validUnmapped = counts[PageState.validUnmapped];
    pages.read = counts[PageState.read];
    pages.write = counts[PageState.write];
    // The native page table's model byte (native/page_table.h PageModel, | 0x80 when owned here).
    const byModel = [0, 0, 0, 0];
    const models = this.pageModels;
    for (let i = 0; i < models.length; i++) byModel[models[i] & MODEL_MASK]++;
    return {
      nodeId: this.nodeId,
      globalTime: this.globalTime,
      faults: { read: n('readFaults'), write: n('writeFaults'), service: n('serviceFaults'), violations: n('violations'), writeAhead: n('writeAhead'), writeAheadUnused: n('writeAheadUnused'), answeredByChannel: n('answeredByChannel'), sentByFault: n('sentByFault'), servedByChannel: n('servedByChannel'), refused: n('refusedFaults') },
      transactions: { begun: n('begins'), committed: n('commits'), aborted: n('aborts'), retried: this.runner.retries, heldFromStart: this.runner.heldFromStart },
      pages,
      models: { transactional: byModel[0], local: byModel[1], sequential: byModel[2], migratory: byModel[3] },
      protectionResets: n('protectionResets'),
      shadowRestores: n('shadowRestores'),
      installs: n('installs'),
      invalidations: n('invalidations'),
      updates: n('updates'),
      leaseAlarms: n('leaseAlarms'),
      hotPages: this.hotPages(),
    };
  }

  /** The monitor's hottest pages, described by the heap. */
  private hotPages(): HotPage[] {
    const dir = this.heap.root(DIRECTORY_ROOT);
    return this.conflicts.top(HOT_PAGES_SHOWN).map(({ page, aborts, byNode }) => {
      const { holds, roots } = describePage(this, this.heap.geometry, page);
      const ptr = page * this.pageSize;
      return {
        page,
        ptr,
        aborts,
        byNode: Object.fromEntries([...byNode].sort((a, b) => b[1] - a[1])),
        holds,
        roots: [...roots, ...syncNamesIn(this.u8, this.u32, dir, ptr, ptr + this.pageSize)],
      };
    });
  }

  /** A run was doomed by `node`'s commit to `page`: count it, and tell the service (for `dsm stats --hot`) once this turn is over. */
  private onConflict(page: number, node: number): void {
    this.conflicts.record(page, node);
    if (!this.address || this.hotPublish || this.closed) return;
    this.hotPublish = setImmediate(() => {
      this.hotPublish = undefined;
      if (this.closed) return;
      void this.service.request({ type: 'hot-pages', pages: this.hotPages() }).catch(() => undefined);
    });
  }

  /**
   * Waits for queued transactions, hands this node's pages over, stops the service thread
   * and unmaps the region. The typed views become empty (length 0) once the queued
   * transactions are done: code still using them meanwhile reads undefined and writes
   * nothing, so stop such code (timers, loops) before closing. Later transactions, locks
   * and barriers reject with ERR_DSM_CLOSED. A second call resolves with the first.
   */
  close(): Promise<void> {
    // A second call waits for the first: a program that exits once its close() resolves
    // must not exit before this node's pages are handed over.
    return (this.closing ??= this.closeOnce());
  }

  private closing?: Promise<void>;

  private async closeOnce(): Promise<void> {
    this.closed = true;
    if (this.hotPublish) clearImmediate(this.hotPublish);
    await this.locks.releaseAll();
    await this.runner.stop();
    // Before the service hands this node's pages over and stops: a page of another model
    // touched outside a transaction meanwhile (a timer still running) faulted with nobody
    // left to fetch it, and the process aborted (taking a migratory page's only copy along).
    this.native.detachAppView();
    await this.service.stop();
    this.native.close();
  }

  /** @internal Test hook: the pointer to the state object of lock `name`. */
  _syncState(what: 'lock', name: string): Promise<number> {
    return this.directory.object(what, name);
  }

  /** @internal Test hook: what this node's service knows of barrier `name` (undefined without networking). */
  async _barrierState(name: string): Promise<import('./service/barriers').BarrierState | undefined> {
    return (await this.service.request({ type: 'barrier-state', name })).barrierState;
  }

  /** @internal Test hook: the service sends member `to` a raw message of type `msg` (a malformed one, say). */
  async _testSend(to: number, msg: number, payload: Uint8Array): Promise<void> {
    await this.service.request({ type: 'test-send', to, msg, payload });
  }

  /** @internal Test hook: the service thread leaves a promise rejection unhandled (it must log it and go on). */
  async _testUnhandledRejection(): Promise<void> {
    await this.service.request({ type: 'test-unhandled-rejection' });
  }

  /** @internal Test hook: makes the service invalidate `page`, then reinstall it filled with `fill` on the next touch. */
  async _testInvalidate(page: number, fill: number): Promise<void> {
    await this.service.request({ type: 'test-invalidate', page, fill });
  }

  /** @internal Test hook: the state of one page here (0 invalid: no copy on this node). */
  _testPageState(page: number): number {
    return this.region.states[page];
  }

  /** @internal Test hook: the service thread reads the app view (which must abort the process). */
  _testServiceTouchAppView(page: number): Promise<unknown> {
    return this.service.request({ type: 'test-touch-app-view', address: this.base + page * this.pageSize });
  }

  private checkOpen(): void {
    if (this.closed) throw new ClosedError();
  }

  private checkViolations(): void {
    const n = this.native.takeViolations();
    if (n > 0) throw new WriteOutsideTransactionError(n);
    this.checkLost();
  }

  private checkLost(): void {
    const lost = this.native.takeLost();
    if (lost >= 0) throw new PageLostError(lost);
    const local = this.native.takeLocalTouched();
    if (local >= 0) throw new LocalPageError(local);
  }

  /** @internal */
  onCommitReply(): void {
    this.runner.onCommitReply();
  }
}

/**
 * Creates this process's DSM node. With no peers it is a one-node cluster.
 *
 * @example
 * const dsm = await createNode({ regionSize: 256 << 20 });
 */
export async function createNode(options: NodeOptions = {}): Promise<DsmNode> {
  const o = resolveOptions(options);
  const native = loadNative();
  let region: NativeRegion;
  let node: DsmNode | undefined;
  try {
    region = native.open({ base: o.base, size: o.regionSize, pageShift: o.pageShift, startInvalid: false }, () =>
      node?.onCommitReply(),
    );
  } catch (e) {
    throw fromNative(e);
  }
  let service: ServiceClient;
  try {
    service = await ServiceClient.start(
      { nodeId: 0, base: o.base, numPages: region.numPages, pageSize: region.pageSize, timeBuffer: new SharedArrayBuffer(STATUS_WORDS * 8), cluster: o.cluster },
      (level, message) => process.emitWarning(message, { code: `DSM_SERVICE_${level.toUpperCase()}` }),
    );
  } catch (e) {
    native.close();
    throw e;
  }
  // Commits wait for an acknowledgement with 'replicated' (backups) and 'disk' (a page server).
  node = new DsmNode(native, region, service, { ...o, replicated: o.cluster !== undefined && o.cluster.durability !== 'none', disk: o.cluster?.durability === 'disk' });
  try {
    // A node that joins while the cluster is recovering from a loss has no quorum until the
    // recovery ends: it waits for it (as long as it waits to reach a peer) instead of failing.
    const until = Date.now() + (o.cluster?.joinTimeoutMs ?? 0);
    for (let wait = 50; ; wait = Math.min(1000, wait * 2)) {
      try {
        await node.heap.open((fn) => node!.transaction(fn));
        break;
      } catch (e) {
        if (!(e instanceof PartitionedError) || Date.now() + wait > until) throw e;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  } catch (e) {
    await node.close();
    throw e;
  }
  node.releaseEarlyEvents();
  return node;
}
