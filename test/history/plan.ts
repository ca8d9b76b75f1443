// A run of the list-append workload, drawn from a seed: every node's transactions and the one
// fault that strikes (workload.ts runs it). The same seed draws the same plan.
import fc from 'fast-check';
import type { Op } from './checker';

/**
 * 'churn': the victim SIGKILLed and a new node joined in its place, then another live node,
 * `cuts` times in all, each once every backup has caught up (one failure at a time).
 * 'leave-kill': the victim leaves gracefully, and its successor (the lowest member that
 * stays) is killed the moment the close returns. 'partition': the victim unplugged; 'bridge': the victim and the next process stop reaching
 * each other, both still reach the rest; 'deaf': the victim hears nothing, the rest hear it.
 */
export type FaultKind = 'none' | 'kill' | 'kill-two' | 'kill-all' | 'kill-token-holder' | 'stall' | 'stall-two' | 'leave' | 'leave-kill' | 'restart' | 'churn' | 'partition' | 'bridge' | 'deaf' | 'reset';

export interface Fault {
  kind: FaultKind;
  /** Index of the node process it hits. */
  victim: number;
  /** The fault strikes once the victim has completed this many transactions. */
  after: number;
  /** For stalls: how long the victim stays stopped; for partitions: how long they last. */
  stallMs: number;
  /** For 'kill-two' and 'stall-two': the other node process hit at the same moment. */
  second: number;
}

export interface PlannedTxn {
  seq: number;
  ops: Array<{ f: 'append'; key: number; value: number } | { f: 'read'; key: number }>;
}

export interface Plan {
  seed: number;
  nodes: number;
  keys: number;
  keysPerPage: number;
  /** Per node process, in order; a restart's replacement runs the last list. */
  txns: PlannedTxn[][];
  fault: Fault;
  /** For 'kill-all': how many times every process is killed (each cut at the same point of the fresh nodes' lists); for 'churn': how many nodes are killed in turn. */
  cuts: number;
}

export interface PlanOptions {
  nodes?: number;
  keys?: number;
  keysPerPage?: number;
  txnsPerNode?: number;
  /** The fault kinds to draw from (one is drawn). */
  faults?: FaultKind[];
  stallMs?: [number, number];
  /** For 'kill-all': how many cuts; for 'churn': how many nodes are killed in turn (1 unless told). */
  cuts?: number;
}

/** The seed of this run: DSM_SEED if set (to replay a failure), else a fresh one. */
export function seedFromEnv(): number {
  const s = process.env.DSM_SEED;
  if (s !== undefined && s !== '') {
    const n = Number(s);
    if (!Number.isSafeInteger(n)) throw new Error(`DSM_SEED must be an integer, got ${s}`);
    return n;
  }
  return (Math.random() * 2 ** 31) | 0;
}

export const replayHint = (seed: number): string => `seed=${seed} ; replay with DSM_SEED=${seed}`;

/** Draws the transactions and the fault of a run from `seed` (the same seed, the same plan). */
export function drawPlan(seed: number, o: PlanOptions = {}): Plan {
  const nodes = o.nodes ?? 3;
  const keys = o.keys ?? 8;
  const keysPerPage = o.keysPerPage ?? 1;
  const perNode = o.txnsPerNode ?? 100;
  const faults = o.faults ?? ['none'];
  const [minStall, maxStall] = o.stallMs ?? [1000, 4000];
  const op = fc.record({ f: fc.constantFrom('append' as const, 'read' as const), key: fc.nat(keys - 1) });
  const txn = fc.array(op, { minLength: 1, maxLength: 4 });
  // A restart's replacement gets a list of its own, and so does each fresh node after 'kill-all' or a 'churn' kill.
  const cuts = o.cuts ?? 1;
  const lists = nodes + (faults.includes('restart') ? 1 : 0) + (faults.includes('kill-all') ? nodes * cuts : 0) + (faults.includes('churn') ? cuts : 0);
  const arb = fc.record({
    txns: fc.array(fc.array(txn, { minLength: perNode, maxLength: perNode }), { minLength: lists, maxLength: lists }),
    kind: fc.constantFrom(...faults),
    // Any node, the founder included: it allocated the lists and held the token first.
    victim: fc.integer({ min: 0, max: nodes - 1 }),
    after: fc.integer({ min: Math.floor(perNode / 5), max: Math.floor(perNode / 2) }),
    stallMs: fc.integer({ min: minStall, max: maxStall }),
  });
  // Unbiased: fast-check otherwise favours the bounds, and every stall would be the shortest.
  const [d] = fc.sample(fc.noBias(arb), { seed, numRuns: 1 });
  let value = 1;
  const txns = d.txns.map((list) =>
    list.map((ops, seq) => ({
      seq,
      ops: ops.map((x) => (x.f === 'append' ? { f: 'append' as const, key: x.key, value: value++ } : { f: 'read' as const, key: x.key })),
    })),
  );
  // Derived from what was drawn, not drawn itself, so every earlier seed still replays the same plan.
  const second = (d.victim + 1 + (d.after % (nodes - 1))) % nodes;
  return { seed, nodes, keys, keysPerPage, txns, fault: { kind: d.kind, victim: d.victim, after: d.after, stallMs: d.stallMs, second }, cuts };
}

