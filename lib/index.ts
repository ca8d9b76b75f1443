/**
 * node-dsm: transactional, page-based distributed shared memory for Node.js.
 *
 * @example
 * const { createNode } = require('node-dsm');
 * const dsm = await createNode();
 * const p = await dsm.transaction((tx) => tx.alloc(4));
 * await dsm.transaction(() => { dsm.view(Uint32Array, p)[0] += 1; });
 */
export { createNode, DsmNode, type DsmStats, type TypedArrayClass } from './node';
export type { CommitEvent, AbortEvent, PeerEvent, NodeEvents } from './node_events';
export type { NodeOptions } from './options';
export { startPageServer, type PageServer, type PageServerOptions } from './pageserver/server';
export type { HotPage } from './conflict_monitor';
export type { Transaction, TransactionOptions } from './transaction';
export {
  DsmError,
  InvalidOptionError,
  BaseInUseError,
  AlreadyOpenError,
  ClosedError,
  WriteOutsideTransactionError,
  TransactionConflictError,
  AsyncTransactionError,
  NestedTransactionError,
  PageLostError,
  LocalPageError,
  PartitionedError,
  CommitUncertainError,
  SystemError,
  NativeLoadError,
} from './errors';
export { TimeoutError } from './errors';
export { BarrierBrokenError, LockNotHeldError } from './sync/errors';
export { OutOfMemoryError, InvalidFreeError, HeapLayoutError, RootError, HeapCorruptionError } from './alloc/errors';
export { StoreError, SnapshotError } from './pageserver/errors';
