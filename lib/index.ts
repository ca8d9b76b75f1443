/**
 * node-dsm: transactional, page-based distributed shared memory for Node.js.
 *
 * @example
 * const { createNode } = require('node-dsm');
 * const dsm = await createNode();
 * await dsm.transaction(() => { dsm.u32[0] += 1; });
 */
export { createNode, DsmNode, type DsmStats, type CommitEvent } from './node';
export type { NodeOptions } from './options';
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
  SystemError,
  NativeLoadError,
} from './errors';
export { TimeoutError } from './errors';
export { OutOfMemoryError, InvalidFreeError, HeapLayoutError, RootError } from './alloc/errors';
