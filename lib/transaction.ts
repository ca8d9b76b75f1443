// The transaction runner: one transaction at a time per node, run synchronously on the app
// thread, retried when a remote commit dooms it, committed through the service.
import { AsyncTransactionError, NestedTransactionError, TransactionConflictError } from './errors';
import type { Heap } from './alloc/heap';
import type { NativeAddon } from './native';
import type { ServiceClient } from './service/client';

/** The handle a transaction function receives. */
export class Transaction {
  /** @internal */ readonly afterCommitFns: Array<() => void> = [];
  /** @internal */
  constructor(
    private readonly native: NativeAddon,
    private readonly heap: Heap,
    /** 0 on the first run, then 1, 2, ... on retries. */
    readonly attempt: number,
  ) {}

  /**
   * Allocates `size` bytes in the shared heap; returns the byte offset into the region.
   * Vanishes if the transaction aborts. Objects over 4 KiB get whole pages.
   * @example const p = tx.alloc(64); dsm.u32[p >> 2] = 42;
   */
  alloc(size: number): number {
    return this.heap.alloc(size);
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

export interface TransactionOptions {
  /** Overrides the node's maxRetries for this transaction. */
  maxRetries?: number;
}

export interface RunnerHooks {
  nodeId: () => number;
  checkViolations: () => void;
  onCommit: (time: number, pages: number) => void;
  onAbort: (attempt: number, reason: 'conflict' | 'error') => void;
}

const isThenable = (v: unknown): boolean =>
  v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';

export class TransactionRunner {
  private queue: Promise<unknown> = Promise.resolve();
  private running = false;
  retries = 0;

  constructor(
    private readonly native: NativeAddon,
    private readonly service: ServiceClient,
    private readonly heap: Heap,
    private readonly maxRetries: number,
    private readonly hooks: RunnerHooks,
  ) {}

  get idle(): Promise<unknown> {
    return this.queue;
  }

  run<T>(fn: (tx: Transaction) => T, opts: TransactionOptions = {}): Promise<T> {
    if (this.running) throw new NestedTransactionError();
    const p = this.queue.then(() => this.attempts(fn, opts.maxRetries ?? this.maxRetries));
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async attempts<T>(fn: (tx: Transaction) => T, maxRetries: number): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const out = await this.once(fn, attempt);
      if (out.done) return out.value;
      this.retries++;
      this.hooks.onAbort(attempt, 'conflict');
      if (attempt >= maxRetries) throw new TransactionConflictError(attempt + 1);
      await backoff(attempt);
    }
  }

  private abort(): void {
    this.native.abort();
    this.heap.afterAbort();
  }

  private async once<T>(fn: (tx: Transaction) => T, attempt: number): Promise<{ done: true; value: T } | { done: false }> {
    this.hooks.checkViolations();
    const native = this.native;
    const tx = new Transaction(native, this.heap, attempt);
    let value: T | undefined;
    let error: unknown;
    let threw = false;
    native.begin();
    this.running = true;
    try {
      value = fn(tx);
      if (isThenable(value)) {
        threw = true;
        error = new AsyncTransactionError();
      }
    } catch (e) {
      threw = true;
      error = e;
    } finally {
      this.running = false;
    }
    const writes = native.end();
    // Doomed: whatever it returned or threw was computed from data another node has since
    // replaced, so it means "run again", never "fail".
    if (native.doomed()) {
      this.abort();
      return { done: false };
    }
    if (threw) {
      this.abort();
      this.hooks.onAbort(attempt, 'error');
      throw error;
    }
    let time = this.service.globalTime;
    if (writes > 0) {
      try {
        time = (await this.service.request({ type: 'commit', pages: native.writeSet() })).time!;
      } catch (e) {
        this.abort();
        if ((e as { doomed?: boolean }).doomed) return { done: false };
        throw e;
      }
    }
    native.commit(time, this.hooks.nodeId());
    this.heap.afterCommit();
    this.hooks.onCommit(time, writes);
    let afterError: unknown;
    for (const f of tx.afterCommitFns) {
      try {
        f();
      } catch (e) {
        afterError ??= e;
      }
    }
    // The transaction is committed either way; the first failing callback is reported.
    if (afterError !== undefined) throw afterError;
    return { done: true, value: value as T };
  }
}

/** Randomised exponential back-off so that colliding nodes do not collide again in step. */
function backoff(attempt: number): Promise<void> {
  if (attempt < 2) return new Promise((r) => setImmediate(r));
  const capMs = Math.min(50, 0.25 * 2 ** attempt);
  return new Promise((r) => setTimeout(r, Math.random() * capMs));
}
