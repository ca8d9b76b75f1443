import { DsmError } from '../errors';

/**
 * A page-store directory cannot be opened or written: another layout, another geometry, not a
 * store, or a disk failure; or, started without peers, its cluster runs and cannot be joined,
 * or another cluster answers at its members' addresses; or, with peers, they are members of a
 * cluster that does not hold what the store holds (live_cluster.ts).
 */
export class StoreError extends DsmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DSM_STORE', message, options);
  }
}

/** A snapshot file is corrupt, truncated or of another format version, or cannot be written or restored where asked. */
export class SnapshotError extends DsmError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DSM_SNAPSHOT', message, options);
  }
}
