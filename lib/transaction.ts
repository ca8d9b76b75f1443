// The transaction runner: one transaction at a time per node, run synchronously on the app
// thread, retried when a remote commit dooms it, committed through the service.
import { AsyncTransactionError, ClosedError, InvalidOptionError, NestedTransactionError, PartitionedError, SystemError, TransactionConflictError } from './errors';
import type { LostPages } from './lost_pages';
import type { Heap } from './alloc/heap';
import { CommitKind, CommitStatus, type NativeAddon, RunStatus } from './native';
import { checkKeys } from './options';
import type { ServiceClient } from './service/client';
import { LOST_OWNER } from './service/protocol';

/** The handle a transaction function receives. */
export class Transaction {
  /** @internal */ readonly afterCommitFns: Array<() => void> = [];
  /** @internal Pages this run accepted as lost (tx.discardLost). */ readonly discarded = new Set<number>();
  /** @internal */
  constructor(
    private readonly native: NativeAddon,
    private readonly heap: Heap,
    /** 0 on the first run, then 1, 2, ... on retries. */
    readonly attempt: number,
    private readonly lost: LostPages,
  ) {}

  /**
   * Accepts the loss of the lost pages under [ptr, ptr + length) (see `dsm.lostPages()`):
   * this transaction writes them as zeros, and once it commits they are ordinary pages
   * again on every node (a sequential or migratory page: owned by this node, zeroed). Pages
   * in the range that are not lost are left alone.
   * @example for (const r of dsm.lostPages()) await dsm.transaction((tx) => tx.discardLost(r.ptr, r.length));
   */
  discardLost(ptr: number, length: number): void {
    this.lost.discard(ptr, length, this.discarded, (page, model) => {
      // Declared only while still lost: a discard elsewhere may have made it new meanwhile
      // (a model change arriving after this dooms the run: native SetModel).
      if (this.native.declareLost(page, model, LOST_OWNER)) this.heap.countRedeclared(page);
    });
  }

  /**
   * Allocates `size` bytes (zeroed) in the shared heap; returns the byte offset into the
   * region. Vanishes if the transaction aborts. Objects over 4 KiB get whole pages; small
   * ones come from this node's own pages. `kind`: 'readMostly' and 'private' objects are
   * kept on pages of their own (Plurix's read-mostly and node-private allocators).
   * `model` (DESIGN.md "Consistency models"; whole pages of their own, 2^k of them):
   * 'transactional' (default); 'sequential': one writer or many readers at a time, a write
   * returns once no other node holds the old contents, writes allowed outside transactions;
   * 'local': pages of this node alone, never sent (another node's touch raises
   * ERR_DSM_LOCAL_PAGE); 'migratory': each page lives on one node at a time and any access
   * moves it there (after a minimum hold time; no lock: it may move between a read and a
   * write, so updates by several nodes at once go under dsm.lock). Inside a transaction, non-transactional pages are neither isolated
   * nor rolled back; their allocation is (an aborted run's allocation vanishes).
   * @example const p = tx.alloc(64); dsm.u32[p >>> 2] = 42; // >>>: addresses reach 4 GiB
   * @example const grid = tx.alloc(8 << 20, { model: 'sequential' });
   */
  alloc(size: number, opts?: { kind?: 'normal' | 'readMostly' | 'private'; model?: 'transactional' | 'local' | 'sequential' | 'migratory' }): number {
    return this.heap.alloc(size, opts);
  }

  /** Frees an allocation (takes effect when the transaction commits). */
  free(ptr: number): void {
    this.heap.free(ptr);
  }

  /**
   * Names a pointer so any node can find it with `dsm.root(name)`.
   * @example tx.setRoot('accounts', tx.alloc(8 * 1000));
   */
  setRoot(name: string, ptr: number): void {
    this.heap.setRoot(name, ptr);
  }

  /**
   * Runs `fn` once, after the transaction has committed (never on a discarded run).
   * Put side effects here: the transaction function itself may run more than once.
   * @example tx.afterCommit(() => console.log('transferred'));
   */
  afterCommit(fn: () => void): void {
    // Refused here: called after the commit, it would reject the promise of a transaction that committed.
    if (typeof fn !== 'function') throw new InvalidOptionError(`tx.afterCommit: the argument must be a function, got ${fn === null ? 'null' : typeof fn}`);
    this.afterCommitFns.push(fn);
  }

  /** Page numbers read so far by this run, sorted. */
  readSet(): number[] {
    return Array.from(this.native.readSet());
  }

  /** Page numbers written so far by this run, sorted. */
  writeSet(): number[] {
    return Array.from(this.native.writeSet());
  }
}

/** A run that committed here: its result, its commit's time, and what runs once it is acknowledged. */
interface Committed<T> {
  done: true;
  value: T;
  time: number;
  writes: number;
  /** The durable epoch when it committed (hooks.durableEpoch). */
  epoch: number;
  after: Array<() => void>;
}

export interface TransactionOptions {
  /** Overrides the node's maxRetries for this transaction. */
  maxRetries?: number;
}
const TRANSACTION_OPTIONS = ['maxRetries'];

function checkTransactionOptions(opts: TransactionOptions | undefined): void {
  checkKeys('dsm.transaction', opts, TRANSACTION_OPTIONS);
  const m = opts?.maxRetries;
  if (m !== undefined && !(Number.isSafeInteger(m) && m >= 0)) {
    throw new InvalidOptionError(`dsm.transaction: maxRetries must be a non-negative integer, got ${String(m)}`);
  }
}

export interface RunnerHooks {
  nodeId: () => number;
  checkViolations: () => void;
  /** Throws PageLostError if the service reported a lost page. */
  checkLost: () => void;
  /** This node has no quorum (it may not commit). */
  partitioned: () => boolean;
  /** After a run that wrote `pages` (its write set): throws HeapCorruptionError if it wrote heap metadata itself. */
  checkHeapWrites: (pages: Uint32Array) => void;
  /** True when commits this node has heard of are not applied yet (a read-only commit must wait). */
  needsSync: () => boolean;
  /** The node has peers (a token to hold). */
  networked: () => boolean;
  /**
   * Commits wait for backups ('replicated', 'disk'): for a while after a conflict, start
   * transactions holding the token (with 'none' the token's batching does better).
   */
  holdWhenContended: () => boolean;
  onCommit: (time: number, pages: number) => void;
  /**
   * Resolves once this node's commit `time`, made under `epoch` (durableEpoch), is durable
   * (durability 'replicated'); undefined when there is nothing to wait for.
   */
  durable: (time: number, epoch: number) => Promise<void> | undefined;
  /**
   * Resolves once every commit up to `time` (what a read-only transaction read, under
   * `epoch`) is durable everywhere the node's durability asks (durability 'disk': on a page
   * server's disk); undefined when there is nothing to wait for.
   */
  durableRead: (time: number, epoch: number) => Promise<void> | undefined;
  /** Changes when the node is removed from the cluster (its earlier commits are uncertain). */
  durableEpoch: () => number;
  onAbort: (attempt: number, reason: 'conflict' | 'error') => void;
  /** A run was doomed by `node`'s commit to `page` (the false-sharing monitor). */
  conflict: (page: number, node: number) => void;
}

const isThenable = (v: unknown): boolean =>
  v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';

export class TransactionRunner {
  private queue: Promise<unknown> = Promise.resolve();
  private waiting?: (r: [number, number]) => void;
  private running = false;
  retries = 0;
  /** Transactions that ran holding the token from their first run (contended, see attempts). */
  heldFromStart = 0;
  /** Transactions still to start holding the token because a page keeps dooming runs. */
  private contended = 0;
  /** The page whose commit elsewhere doomed the last doomed run here. */
  private lastConflictPage = -1;
  /** How long the last run of a transaction function took (ms). */
  private lastRunMs = 0;

  constructor(
    private readonly native: NativeAddon,
    private readonly service: ServiceClient,
    private readonly heap: Heap,
    private readonly maxRetries: number,
    private readonly hooks: RunnerHooks,
    private readonly lost: LostPages,
  ) {}

  /** A transaction function is running right now (on this, the app thread). */
  get inside(): boolean {
    return this.running;
  }

  /** Settles once every queued transaction has run and every commit waiting to be durable is. */
  get idle(): Promise<unknown> {
    return this.queue.then(() => Promise.allSettled(this.acknowledging));
  }

  /**
   * The node is closing: transactions asked for from now on are refused, and the promise
   * settles once those queued before have. (A lock's acquisition goes on in transactions
   * after its caller's close(); queued behind a stopped service, its promise never settled.)
   */
  stop(): Promise<unknown> {
    this.stopped = true;
    return this.idle;
  }

  private stopped = false;

  run<T>(fn: (tx: Transaction) => T, opts?: TransactionOptions): Promise<T> {
    if (this.running) throw new NestedTransactionError();
    if (this.stopped) return Promise.reject(new ClosedError());
    if (typeof fn !== 'function') throw new InvalidOptionError(`dsm.transaction: the argument must be a function (tx) => ..., got ${fn === null ? 'null' : typeof fn}`);
    if (opts !== undefined) checkTransactionOptions(opts);
    const p = this.queue.then(() => this.attempts(fn, opts?.maxRetries ?? this.maxRetries));
    // The next transaction runs as soon as this one is committed here; its promise waits
    // for the commit's acknowledgement (pipelined: acknowledgements come in commit order).
    this.queue = p.catch(() => undefined);
    this.service.inFlight(1);
    return p.then((done) => this.acknowledged(done)).finally(() => this.service.inFlight(-1));
  }

  /** Commits waiting for their acknowledgement. */
  private readonly acknowledging = new Set<Promise<unknown>>();

  /** This node's latest write commit, and the durable epoch it was made under. */
  private lastWrite = { time: 0, epoch: 0 };

  private async acknowledged<T>(done: Committed<T>): Promise<T> {
    // A read-only transaction may have read this node's own commits that no backup holds
    // yet (were the node to die, they would die with it): it waits for them too.
    // Once the node was removed and joined again its copies were rebuilt from the cluster's,
    // so no later read depends on its earlier commits (which were told they are uncertain).
    // With 'disk' it waits for every commit it could have read, other nodes' too: those reach
    // this node before a page server's disk has them, and a crash of every process would
    // leave the cluster without what the program was told it read (durable_reads.ts).
    if (done.writes > 0) this.lastWrite = { time: done.time, epoch: done.epoch };
    const wait =
      done.writes > 0
        ? this.hooks.durable(done.time, done.epoch)
        : (this.hooks.durableRead(done.time, done.epoch) ??
          (this.lastWrite.time > 0 && this.lastWrite.epoch === this.hooks.durableEpoch() ? this.hooks.durable(this.lastWrite.time, this.lastWrite.epoch) : undefined));
    if (wait) {
      this.acknowledging.add(wait);
      try {
        await wait;
      } finally {
        this.acknowledging.delete(wait);
      }
    }
    let afterError: unknown;
    for (const f of done.after) {
      try {
        f();
      } catch (e) {
        afterError ??= e;
      }
    }
    // The transaction is committed either way; the first failing callback is reported.
    if (afterError !== undefined) throw afterError;
    return done.value;
  }

  private async attempts<T>(fn: (tx: Transaction) => T, maxRetries: number): Promise<Committed<T>> {
    for (let attempt = 0; ; attempt++) {
      if (this.hooks.partitioned()) throw new PartitionedError();
      // After two conflicts, run holding the token: no other node can commit meanwhile, so
      // this run cannot be doomed, and a slow node is not starved by a fast one. With
      // backups, also start the next CONTENDED_RUNS transactions so once one page doomed
      // two runs in a row: where two nodes write one page back to back, a run that waits
      // for the token at its commit (and, before it, for its previous commit's
      // acknowledgement) is doomed by the other node's commit most of the time.
      const contended = attempt === 0 && this.contended > 0 && this.hooks.holdWhenContended();
      const holding = (attempt >= 2 || contended) && this.hooks.networked();
      if (contended) {
        this.contended--;
        this.heldFromStart++;
      }
      if (holding) {
        const [st] = await this.post(CommitKind.hold);
        if (st === CommitStatus.partitioned) throw new PartitionedError();
      }
      let out: Awaited<ReturnType<typeof this.once<T>>>;
      try {
        out = await this.once(fn, attempt, holding);
      } catch (e) {
        if (holding) await this.post(CommitKind.release);
        throw e;
      }
      if (out.done) return out;
      this.retries++;
      this.hooks.onAbort(attempt, 'conflict');
      if (attempt >= maxRetries) throw new TransactionConflictError(attempt + 1);
      await backoff(attempt);
    }
  }

  /** A run another node's commit doomed: undo it and run again (unless a page was lost). */
  private doomedRun(): { done: false } {
    this.countConflict(true);
    this.abort();
    this.hooks.checkLost();
    return { done: false };
  }

  /** Before aborting a doomed run: which page, committed by which node, doomed it. */
  private countConflict(atCommit = false): void {
    const c = this.native.doomCause();
    if (!c) return;
    this.hooks.conflict(c[0], c[1]);
    // A page that doomed two short runs in a row while they waited to commit is contended
    // (see attempts). Not a run doomed while it ran: one that spins until another node's
    // commit dooms it would spin forever holding the token (that commit could not happen).
    if (atCommit && c[0] === this.lastConflictPage && this.lastRunMs <= SHORT_RUN_MS) this.contended = CONTENDED_RUNS;
    this.lastConflictPage = c[0];
  }

  private abort(): void {
    this.native.abort();
    this.heap.afterAbort();
  }

  private async once<T>(fn: (tx: Transaction) => T, attempt: number, holding = false): Promise<Committed<T> | { done: false }> {
    this.hooks.checkViolations();
    const native = this.native;
    const tx = new Transaction(native, this.heap, attempt, this.lost);
    this.heap.beginRun();
    this.running = true;
    let status: number, value: unknown, writes: number;
    const start = performance.now();
    try {
      [status, value, writes] = native.runTransaction(fn as (tx: unknown) => unknown, tx);
    } finally {
      this.running = false;
      this.lastRunMs = performance.now() - start;
    }
    // A long run holding the token holds up every other node's commits: stop starting so.
    if (holding && this.lastRunMs > SHORT_RUN_MS) this.contended = 0;
    if (status === RunStatus.returned && isThenable(value)) {
      status = RunStatus.threw;
      // Its rejection (an async function that threw) is this error's story now: left
      // unhandled, it ended the process after the caller had caught ours.
      (value as PromiseLike<unknown>).then(undefined, () => undefined);
      value = new AsyncTransactionError();
    }
    // Stray writes over the heap's tables fail the run like a throw: rolled back, not retried,
    // unless the run was doomed anyway (then they may come from data since replaced).
    let written: Uint32Array | undefined;
    if (status === RunStatus.returned && writes > 0) {
      written = native.writeSet();
      try {
        this.hooks.checkHeapWrites(written);
      } catch (e) {
        status = RunStatus.threw;
        value = e;
      }
    }
    // Doomed: whatever it returned or threw was computed from data another node has since
    // replaced, so it means "run again", never "fail". (Terminated implies doomed.)
    if (status === RunStatus.terminated || native.doomed()) {
      this.countConflict();
      this.abort();
      if (holding) await this.post(CommitKind.release);
      this.hooks.checkLost();
      return { done: false };
    }
    if (status === RunStatus.threw) {
      this.abort();
      this.hooks.onAbort(attempt, 'error');
      throw value;
    }
    // A lost page read or written (its zero copy was already here, so no fault said so), or
    // a node cut off from the quorum: nothing of this run may commit.
    try {
      if (this.lost.any) {
        this.lost.check(native.readSet(), tx.discarded);
        this.lost.check(written ?? native.writeSet(), tx.discarded);
      }
      if (this.hooks.partitioned()) throw new PartitionedError();
    } catch (e) {
      this.abort();
      throw e; // (a held token is given back by the caller)
    }
    let time: number;
    // Read before committing: a removal after this makes the commit uncertain.
    const epoch = this.hooks.durableEpoch();
    if (holding && writes === 0) await this.post(CommitKind.release);
    const local = writes > 0 && !holding ? this.service.tryLocalCommit(native, this.hooks.nodeId(), written) : undefined;
    if (local === 'doomed') return this.doomedRun();
    if (local !== undefined) {
      time = local;
    } else if (writes > 0 || this.hooks.needsSync()) {
      const [st, t] = await this.post(writes > 0 ? CommitKind.commit : CommitKind.sync);
      if (st === CommitStatus.doomed) return this.doomedRun();
      if (st === CommitStatus.partitioned) {
        this.abort();
        throw new PartitionedError();
      }
      if (st !== CommitStatus.committed) {
        this.abort();
        throw new SystemError('the service thread could not commit the transaction (see the logged warning)');
      }
      time = t;
      // The service finalised a write commit (versions stamped) before answering.
      if (writes === 0) native.commit(time, this.hooks.nodeId());
    } else {
      time = this.service.globalTime;
      native.commit(time, this.hooks.nodeId());
    }
    this.heap.afterCommit();
    this.hooks.onCommit(time, writes);
    return { done: true, value: value as T, time, writes, epoch, after: tx.afterCommitFns };
  }

  /** Called on the app thread when the service answered a posted commit. */
  onCommitReply(): void {
    const r = this.native.takeCommitReply();
    if (!r || !this.waiting) return;
    const w = this.waiting;
    this.waiting = undefined;
    w(r);
  }

  private post(kind: number): Promise<[number, number]> {
    return new Promise((resolve, reject) => {
      this.waiting = resolve;
      if (!this.native.postCommit(kind)) {
        this.waiting = undefined;
        reject(new SystemError('the service thread is not running'));
      }
    });
  }
}

/**
 * How many transactions after a conflict start holding the token (durability with backups).
 * Two nodes running replicated bank transfers, 3 runs each: all accounts on one page
 * 3.9k-4.1k transfers/s without, 5.4k-5.8k with 32 (4.8k-4.9k with 8 and any conflict
 * counting, not only a page's second in a row); one account per page unchanged (6.0k-7.2k
 * without, 6.7k-7.4k with; counting any conflict it cost 3-11%: each start holding the
 * token costs a service round trip even where nothing would conflict).
 */
const CONTENDED_RUNS = 32;
/**
 * Only runs this short start holding the token: while one runs, no other node commits. A
 * transaction that computes for long, or waits inside for another node's commit, is left
 * to the optimistic path.
 */
const SHORT_RUN_MS = 1;

/** Randomised exponential back-off so that colliding nodes do not collide again in step. */
function backoff(attempt: number): Promise<void> {
  if (attempt < 2) return new Promise((r) => setImmediate(r));
  const capMs = Math.min(50, 0.25 * 2 ** attempt);
  return new Promise((r) => setTimeout(r, Math.random() * capMs));
}
