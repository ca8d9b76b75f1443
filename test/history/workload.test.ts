// The list-append workload on real node processes without faults and with a graceful
// leave: every history must check out. Each run prints its seed; DSM_SEED=<seed> replays it.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../cluster/harness';
import { assertValid, drawPlan, excuseCrashedTail, replayHint, runPlan, seedFromEnv, summary } from './workload';
import type { History, Outcome, Txn } from './checker';

const seed = seedFromEnv();
console.log(`list-append workload: ${replayHint(seed)}`);

describe(`list-append histories (${replayHint(seed)})`, () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('3 nodes, one key per page, no faults', async () => {
    const r = await runPlan(h, drawPlan(seed, { nodes: 3, keys: 8, keysPerPage: 1, txnsPerNode: 200 }));
    console.log(summary(r));
    assertValid(r);
    expect(r.counts.ok).toBeGreaterThan(300);
  });

  it('4 nodes, four keys per page, no faults', async () => {
    const r = await runPlan(h, drawPlan(seed, { nodes: 4, keys: 12, keysPerPage: 4, txnsPerNode: 80 }));
    console.log(summary(r));
    assertValid(r);
  });

  it('3 nodes, one leaves gracefully midway', async () => {
    const r = await runPlan(h, drawPlan(seed, { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 120, faults: ['leave'] }));
    console.log(summary(r));
    assertValid(r);
    expect(r.faultLog.join()).toContain('left gracefully');
  });
});

describe('the checker on a history from real processes', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('catches the read skew of reads made outside transactions (allowed, but not isolated)', async () => {
    // Two writers append to keys 0 and 1 together in every transaction; a third node reads
    // both outside any transaction, letting a commit arrive between the two reads, until a
    // pair shows key 0 shorter than key 1. Such a pair saw part of a transaction: no serial
    // order explains it, and the checker must say so from the history alone.
    let value = 1;
    const writer = () => Array.from({ length: 450 }, (_, seq) => ({ seq, ops: [0, 1].map((key) => ({ f: 'append' as const, key, value: value++ })) }));
    const reader = Array.from({ length: 400 }, (_, seq) => ({ seq, ops: [0, 1].map((key) => ({ f: 'read' as const, key })) }));
    const plan = { seed, nodes: 3, keys: 2, keysPerPage: 1, txns: [writer(), writer(), reader], fault: { kind: 'none' as const, victim: 0, after: 0, stallMs: 0 } };
    const r = await runPlan(h, plan, { unisolatedReader: 2 });
    console.log(summary(r));
    expect(h.nodes[2].lines, 'the reader never saw a skewed pair').toContain('H skew seen');
    const cycles = r.result.anomalies.filter((a) => a.type === 'G-single' || a.type === 'G2');
    expect(cycles.length).toBeGreaterThan(0);
    console.log(cycles[0].explanation);
    // The cycle runs through the reader (process 2).
    expect(cycles.some((a) => a.txns!.some((t) => t.startsWith('n2#')))).toBe(true);
    expect(r.result.anomalies.every((a) => a.type === 'G-single' || a.type === 'G2' || a.type === 'G1c')).toBe(true);
  });
});

describe('plans', () => {
  it('the same seed draws the same transactions and fault; appended values are unique', () => {
    const o = { nodes: 4, keys: 6, keysPerPage: 2, txnsPerNode: 50, faults: ['kill', 'stall', 'restart'] as const };
    const a = drawPlan(seed, { ...o, faults: [...o.faults] });
    expect(drawPlan(seed, { ...o, faults: [...o.faults] })).toEqual(a);
    expect(drawPlan(seed + 1, { ...o, faults: [...o.faults] })).not.toEqual(a);
    expect(a.txns).toHaveLength(5); // a restart's replacement has a list of its own
    const values = a.txns.flat().flatMap((t) => t.ops.flatMap((op) => (op.f === 'append' ? [op.value] : [])));
    expect(new Set(values).size).toBe(values.length);
    expect(a.fault.victim).toBeLessThan(4);
  });
});

describe("a stalled node's lost tail (durability 'none')", () => {
  // Node 1 appends value 100 + seq to key 0 in each transaction; the final list holds
  // `kept` of them. It stopped with transactions 0..5 begun (stoppedAt 6).
  const history = (kept: number[], outcomes: Record<number, Outcome> = {}): History => {
    const txns: Txn[] = [0, 1, 2, 3, 4, 5, 6].map((seq) => ({ node: 1, seq, ops: [{ f: 'append', key: 0, value: 100 + seq }], outcome: outcomes[seq] ?? 'ok' }));
    return { txns, finals: [{ node: 0, lists: new Map([[0, kept.map((k) => 100 + k)]]), lost: new Set() }] };
  };

  it('excuses the acknowledged transactions lost just before the stop, the one in flight then failing after it', () => {
    const h = history([0, 1, 6], { 5: 'failed' });
    const why: string[] = [];
    expect(excuseCrashedTail(h, [1], false, 6, why)).toBe(3);
    expect(why).toEqual([]);
    expect(h.txns.filter((t) => t.outcome === 'unknown').map((t) => t.seq)).toEqual([2, 3, 4]);
  });

  it('excuses them when the one in flight committed after the stop', () => {
    expect(excuseCrashedTail(history([0, 1, 5, 6]), [1], false, 6)).toBe(3);
  });

  it('does not excuse a loss followed by a failure before the stop, nor one followed by a survivor', () => {
    const why: string[] = [];
    expect(excuseCrashedTail(history([0, 1, 6], { 4: 'failed' }), [1], false, 6, why)).toBe(0);
    expect(excuseCrashedTail(history([0, 1, 4, 6]), [1], false, 6, why)).toBe(0);
    expect(why).toHaveLength(2);
  });
});

describe("a cut-off node's lost stretch (durability 'none')", () => {
  // Node 1 appends 100 + seq to key 0, one transaction every `every` ms (completed 0.8 of it
  // after it began); it was cut off as #250 began and ran 300 in all before its lease ran
  // out, none of them refused.
  const history = (firstLost: number, every = 0.1): History => {
    const txns: Txn[] = Array.from({ length: 300 }, (_, seq) => ({
      node: 1,
      seq,
      ops: [{ f: 'append', key: 0, value: 100 + seq }],
      outcome: 'ok',
      invokedAt: 1000 + seq * every,
      completedAt: 1000 + (seq + 0.8) * every,
    }));
    const kept = txns.filter((t) => t.seq < firstLost).map((t) => 100 + t.seq);
    return { txns, finals: [{ node: 0, lists: new Map([[0, kept]]), lost: new Set() }] };
  };
  const cut = (every = 0.1) => ({ after: 250, atMs: 1000 + 250 * every });

  it('excuses what it committed from the cut on, however many, and what its commit ring held then', () => {
    expect(excuseCrashedTail(history(246), [1], false, undefined, [], cut())).toBe(54);
    // 40 commits acknowledged before the cut, all within 2 ms (a service thread kept off the CPU).
    expect(excuseCrashedTail(history(210, 0.05), [1], false, undefined, [], cut(0.05))).toBe(90);
  });

  it('does not excuse what it acknowledged longer before the cut than its commit ring holds', () => {
    const why: string[] = [];
    expect(excuseCrashedTail(history(200), [1], false, undefined, why, cut())).toBe(0);
    expect(why[0]).toContain('cut off after #250');
    expect(why[0]).toContain('50 acknowledged before the cut, within 4.82 ms');
  });
});
