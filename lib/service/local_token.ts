// Lending the commit token to the app thread. While the service holds the token idle and
// has applied every commit up to the token's time, no other node can commit, so nothing
// can doom a finished transaction: the app thread may take the next global time and commit
// on the spot, without a round trip to the service thread (two thread wake-ups, ~70 us on
// these machines, against ~10 us for the commit itself). The service takes the token back
// before using or passing it, and then broadcasts the commits the app made meanwhile.
//
// Shared memory layout (16 bytes): Int32 [0] state, Float64 at byte 8: the token's time.

export const GateState = { away: 0, idle: 1, committing: 2 } as const;

export class LocalTokenGate {
  private readonly state: Int32Array;
  private readonly time: Float64Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.state = new Int32Array(buffer, 0, 1);
    this.time = new Float64Array(buffer, 8, 1);
  }

  static create(): LocalTokenGate {
    return new LocalTokenGate(new SharedArrayBuffer(16));
  }

  /** App thread: takes the lent token; false when the service has it (or it is away). */
  enter(): boolean {
    return Atomics.compareExchange(this.state, 0, GateState.idle, GateState.committing) === GateState.idle;
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
