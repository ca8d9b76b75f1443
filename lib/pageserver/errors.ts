import { DsmError } from '../errors';

/** A page-store directory cannot be opened or written: another layout, another geometry, not a store, or a disk failure. */
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
