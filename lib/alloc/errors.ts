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
