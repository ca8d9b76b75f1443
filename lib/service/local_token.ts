// Lending the commit token to the app thread. While the service holds the token idle and
// has applied every commit up to the token's time, no other node can commit, so nothing
// can doom a finished transaction: the app thread may take the next global time and commit
// on the spot, without a round trip to the service thread (two thread wake-ups, ~70 us on
// these machines, against ~10 us for the commit itself). The service takes the token back
// before using or passing it, and then broadcasts the commits the app made meanwhile.
//
// The app thread also checks the commit lease (lease.ts): a node cut off from the quorum
// stops committing when its lease runs out, even if its service thread is slow to notice.
//
// Shared memory layout (24 bytes): Int32 [0] state, Float64 at byte 8: the token's time,
// Float64 at byte 16: until when the lease lets this node commit (performance.timeOrigin +
// performance.now(), the same clock in both threads).
import { performance } from 'node:perf_hooks';

export const GateState = { away: 0, idle: 1, committing: 2 } as const;

export class LocalTokenGate {
  private readonly state: Int32Array;
  private readonly time: Float64Array;
  private readonly lease: Float64Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.state = new Int32Array(buffer, 0, 1);
    this.time = new Float64Array(buffer, 8, 1);
    this.lease = new Float64Array(buffer, 16, 1);
  }

  static create(): LocalTokenGate {
    const g = new LocalTokenGate(new SharedArrayBuffer(24));
    g.setLease(Infinity); // one node: always a quorum
    return g;
  }

  /** App thread: takes the lent token; false when the service has it (or it is away, or the lease ran out). */
  enter(): boolean {
    if (Atomics.compareExchange(this.state, 0, GateState.idle, GateState.committing) !== GateState.idle) return false;
    // Checked after entering: the service cannot have renewed or revoked it halfway.
    if (performance.timeOrigin + performance.now() < this.lease[0]) return true;
    Atomics.store(this.state, 0, GateState.idle);
    Atomics.notify(this.state, 0);
    return false;
  }

  /** Whether this node's lease lets it commit now (any thread). */
  leaseValid(): boolean {
    return performance.timeOrigin + performance.now() < this.lease[0];
  }

  /** Service thread: until when this node may commit. */
  setLease(until: number): void {
    this.lease[0] = until;
  }

  /** App thread: gives the lent token back to the idle state, advanced to `time`. */
  leave(time: number): void {
    this.time[0] = time;
    Atomics.store(this.state, 0, GateState.idle);
    Atomics.notify(this.state, 0);
  }

  get tokenTime(): number {
    return this.time[0];
  }

  /** Service thread: lends the token, whose time is `time`. */
  lend(time: number): void {
    this.time[0] = time;
    Atomics.store(this.state, 0, GateState.idle);
  }

  /**
   * Service thread: takes the token back, waiting out a commit the app is making (it is
   * synchronous and short). Returns the token's time, which the app may have advanced.
   */
  reclaim(): number {
    for (;;) {
      const was = Atomics.compareExchange(this.state, 0, GateState.idle, GateState.away);
      if (was !== GateState.committing) return this.time[0];
      Atomics.wait(this.state, 0, GateState.committing, 100);
    }
  }

  get lent(): boolean {
    return Atomics.load(this.state, 0) !== GateState.away;
  }
}
