// The heap inside the region: superblock, named roots, buddy memory manager and per-node
// allocators (see DESIGN.md "Allocators"). All state lives in the region, so an aborted
// transaction's allocations vanish with its shadow pages; only caches here need resetting.
import { DsmError } from '../errors';

/** What the heap needs from its node. */
export interface HeapView {
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly nodeId: number;
  readonly pageSize: number;
  readonly regionSize: number;
}

/** Runs a function as a transaction on the node (used to format or check the superblock). */
export type RunTransaction = <T>(fn: () => T) => Promise<T>;

export class Heap {
  constructor(private readonly view: HeapView) {}

  /** Formats the superblock on a fresh region or checks an existing one. */
  async open(run: RunTransaction): Promise<void> {
    void run;
    void this.view;
  }

  /** Inside a transaction: allocates `size` bytes, returns the byte offset into the region. */
  alloc(size: number): number {
    throw new DsmError('ERR_DSM_NOT_AVAILABLE', `the allocator is not available in this build (alloc ${size})`);
  }

  /** Inside a transaction: frees an allocation. */
  free(ptr: number): void {
    throw new DsmError('ERR_DSM_NOT_AVAILABLE', `the allocator is not available in this build (free ${ptr})`);
  }

  /** Inside a transaction: names an allocation so other nodes can find it. */
  setRoot(name: string, ptr: number): void {
    throw new DsmError('ERR_DSM_NOT_AVAILABLE', `named roots are not available in this build (${name}=${ptr})`);
  }

  /** Anywhere: the pointer named `name`, or undefined. */
  root(name: string): number | undefined {
    void name;
    return undefined;
  }

  /** After an abort: forget anything cached from the discarded run. */
  afterAbort(): void {}

  /** After a commit. */
  afterCommit(): void {}
}
