// Barriers for SPMD programs (DESIGN.md "Consistency models"), the app's side: checks the
// call and asks the service, which runs the barrier as one message round between service
// threads (lib/service/barriers.ts: the protocol, the coordinator, and the failure rule).
import { InvalidOptionError, PartitionedError } from '../errors';
import { MAX_NODES } from '../alloc/layout';
import type { BarrierOutcome } from '../service/barriers';
import { BarrierBrokenError } from './errors';
import { checkSyncName } from './directory';

export interface BarrierHost {
  /** The global time this node has applied or committed (the app's view). */
  globalTime(): number;
  /** Asks the service to wait at the barrier; resolves with how the wait ended. */
  wait(name: string, parties: number, time: number): Promise<BarrierOutcome>;
}

export class Barriers {
  /** Names this node waits at: one party per node. */
  private readonly waiting = new Set<string>();

  constructor(private readonly host: BarrierHost) {}

  async wait(name: string, parties: number): Promise<void> {
    checkSyncName('barrier', name);
    if (!Number.isSafeInteger(parties) || parties < 1 || parties > MAX_NODES) {
      throw new InvalidOptionError(`dsm.barrier: parties must be a whole number from 1 to ${MAX_NODES} (one party per node), got ${String(parties)}`);
    }
    if (this.waiting.has(name)) throw new InvalidOptionError(`dsm.barrier("${name}"): this node is already waiting at it; a barrier takes one party per node`);
    this.waiting.add(name);
    let r: BarrierOutcome;
    try {
      r = await this.host.wait(name, parties, this.host.globalTime());
    } finally {
      this.waiting.delete(name);
    }
    if (r.outcome === 'broken') throw new BarrierBrokenError(name, r.why);
    if (r.outcome === 'partitioned') throw new PartitionedError();
    if (r.outcome === 'mismatch') {
      throw new InvalidOptionError(`dsm.barrier("${name}", ${parties}): the parties already waiting passed ${r.parties} parties; every party must pass the same number`);
    }
  }
}
