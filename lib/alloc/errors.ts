// Errors of the shared heap.
import { DsmError } from '../errors';

/** The region has no block large enough left; the transaction's heap changes are undone. */
export class OutOfMemoryError extends DsmError {
  constructor(size: number) {
    super('ERR_DSM_OUT_OF_MEMORY', `no free block of ${size} bytes is left in the region; free objects or create the node with a larger regionSize`);
  }
}

/** free() of something that is not a live allocation: a double free or a foreign pointer. */
export class InvalidFreeError extends DsmError {
  constructor(ptr: number, why: string) {
    super('ERR_DSM_INVALID_FREE', `free(${ptr}): ${why}`);
  }
}

/** The region's heap was laid out by an incompatible version or with another page size. */
export class HeapLayoutError extends DsmError {
  constructor(message: string) {
    super('ERR_DSM_HEAP_LAYOUT', message);
  }
}

/** A named root that cannot be stored (name too long, table full). */
export class RootError extends DsmError {
  constructor(message: string) {
    super('ERR_DSM_ROOT', message);
  }
}

/**
 * The transaction wrote the heap's own metadata (superblock, roots, page kinds, link table,
 * allocator or chunk headers) other than through tx.alloc, tx.free or tx.setRoot. The
 * transaction was rolled back, not retried; `address` is the first byte it changed there.
 */
export class HeapCorruptionError extends DsmError {
  readonly address: number;
  constructor(address: number, what: string) {
    super(
      'ERR_DSM_HEAP_CORRUPTION',
      `the transaction wrote address ${address} (0x${address.toString(16)}: ${what}), which belongs to the heap's own metadata, ` +
        'not through tx.alloc, tx.free or tx.setRoot; it was rolled back and nothing was committed. ' +
        'Write only inside objects from tx.alloc, e.g. through dsm.view(Uint32Array, ptr, length).',
    );
    this.address = address;
  }
}
