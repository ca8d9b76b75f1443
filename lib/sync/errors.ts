// Errors of the SPMD synchronisation (barriers and locks).
import { DsmError } from '../errors';

/**
 * A barrier cannot complete: a party that had arrived was removed from the cluster, or
 * a member was removed and fewer remain than the barrier's parties. Every party waiting on that
 * generation gets it; the next call with the same name starts a new generation.
 */
export class BarrierBrokenError extends DsmError {
  constructor(name: string, why: string) {
    super('ERR_DSM_BARRIER_BROKEN', `barrier "${name}" is broken: ${why}; restart the round with the surviving nodes (a new dsm.barrier call with their number of parties)`);
  }
}

/** `unlock()` of a lock this caller no longer holds (called twice, or taken over after this node was removed). */
export class LockNotHeldError extends DsmError {
  constructor(name: string, why: string) {
    super('ERR_DSM_LOCK_NOT_HELD', `lock "${name}": ${why}`);
  }
}
