/**
 * Errors thrown by node-dsm. Every error is a `DsmError` with a stable `code`
 * (`ERR_DSM_*`); match on the code, not on the message.
 *
 * @example
 * try { await dsm.transaction(fn); } catch (e) { if (e instanceof DsmError && e.code === 'ERR_DSM_TRANSACTION_CONFLICT') retryLater(); }
 */
export class DsmError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** An option passed to `createNode` (or another call) is missing, mistyped or out of range. */
export class InvalidOptionError extends DsmError {
  constructor(message: string) {
    super('ERR_DSM_INVALID_OPTION', message);
  }
}

/** The region's base address is already mapped in this process. */
export class BaseInUseError extends DsmError {
  constructor(message: string) {
    super('ERR_DSM_BASE_IN_USE', message);
  }
}

/** A second node was created in a process that already has one open. */
export class AlreadyOpenError extends DsmError {
  constructor(message: string) {
    super('ERR_DSM_ALREADY_OPEN', message);
  }
}

/** The node was closed; create a new one. */
export class ClosedError extends DsmError {
  constructor(message = 'the DSM node is closed; create a new one with createNode()') {
    super('ERR_DSM_CLOSED', message);
  }
}

/** The program wrote to the region outside `dsm.transaction()`; the write was rolled back. */
export class WriteOutsideTransactionError extends DsmError {
  constructor(pages: number) {
    super(
      'ERR_DSM_WRITE_OUTSIDE_TRANSACTION',
      `${pages} page(s) of the region were written outside a transaction; the writes were rolled back. ` +
        'Wrap writes in dsm.transaction(() => { ... }).',
    );
  }
}

/** A transaction kept colliding with other nodes' commits and ran out of retries. */
export class TransactionConflictError extends DsmError {
  constructor(attempts: number) {
    super(
      'ERR_DSM_TRANSACTION_CONFLICT',
      `the transaction conflicted with other commits ${attempts} times and gave up; ` +
        'raise maxRetries, or make transactions smaller so they collide less',
    );
  }
}

/** A transaction function returned a promise: transactions must be synchronous. */
export class AsyncTransactionError extends DsmError {
  constructor() {
    super(
      'ERR_DSM_ASYNC_TRANSACTION',
      'the transaction function returned a promise; transaction functions must be synchronous ' +
        '(do the asynchronous work before, or in tx.afterCommit())',
    );
  }
}

/** `dsm.transaction()` was called from inside a running transaction. */
export class NestedTransactionError extends DsmError {
  /** `call`: what was called inside the transaction when it was not dsm.transaction() (it waits for other nodes). */
  constructor(call?: string) {
    super(
      'ERR_DSM_NESTED_TRANSACTION',
      call
        ? `${call} was called inside a transaction; it waits for other nodes, which a transaction never does: call it between transactions`
        : 'dsm.transaction() was called inside a transaction; call the inner function directly instead',
    );
  }
}

/** A page's only up-to-date copy was on nodes that died; its contents are gone. */
export class PageLostError extends DsmError {
  readonly page: number;
  constructor(page: number) {
    super(
      'ERR_DSM_PAGE_LOST',
      `page ${page} was lost: every node holding its latest version died. ` +
        'dsm.lostPages() lists what is gone; accept the loss with tx.discardLost(ptr, length) (the pages start from zero).',
    );
    this.page = page;
  }
}

/** A page another node allocated with the 'local' model was touched here: it never leaves its node. */
export class LocalPageError extends DsmError {
  readonly page: number;
  constructor(page: number) {
    super(
      'ERR_DSM_LOCAL_PAGE',
      `page ${page} belongs to another node's 'local' allocation and is never sent to this one (this node read zeros). ` +
        "Touch it only on the node that allocated it, or allocate it with model 'sequential' or 'transactional' to share it.",
    );
    this.page = page;
  }
}

/** This node cannot reach a quorum of the cluster: it may not commit until it can. */
export class PartitionedError extends DsmError {
  constructor() {
    super(
      'ERR_DSM_PARTITIONED',
      'this node is cut off from the majority of the cluster, so it may not commit; ' +
        'pages it holds stay readable outside transactions. It rejoins when the network heals: retry then.',
    );
  }
}

/**
 * The transaction committed on this node, but the node lost the cluster (it was cut off
 * or stalled, and the others went on without it) before any backup held the commit: it may
 * or may not be in the cluster's history. Read the data to find out, then retry if needed.
 */
export class CommitUncertainError extends DsmError {
  constructor(message?: string) {
    super(
      'ERR_DSM_COMMIT_UNCERTAIN',
      message ??
        'this node lost contact with the cluster before its commit was replicated, so the commit may or may not have survived; ' +
          'read the data in a new transaction to find out, and repeat the update if it is missing.',
    );
  }
}

/** The operating system refused something the runtime needs (mapping, signals, threads). */
export class SystemError extends DsmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DSM_SYSTEM', message, options);
  }
}

/** The compiled addon could not be loaded. */
export class NativeLoadError extends DsmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DSM_NATIVE_LOAD', message, options);
  }
}

const byCode: Record<string, new (message: string) => DsmError> = {
  ERR_DSM_INVALID_OPTION: InvalidOptionError,
  ERR_DSM_BASE_IN_USE: BaseInUseError,
  ERR_DSM_ALREADY_OPEN: AlreadyOpenError,
  ERR_DSM_CLOSED: ClosedError,
  ERR_DSM_SYSTEM: SystemError,
};

/** Turns an error thrown by the addon (a plain Error with a `code`) into its DsmError class. */
export function fromNative(e: unknown): unknown {
  const code = e instanceof Error ? (e as NodeJS.ErrnoException).code : undefined;
  if (e instanceof Error && typeof code === 'string') {
    const Cls = byCode[code];
    if (Cls) return new Cls(e.message);
  }
  return e;
}

/** A wait gave up: what it waited for did not happen within its time-out. */
export class TimeoutError extends DsmError {
  constructor(message: string) {
    super('ERR_DSM_TIMEOUT', message);
  }
}
