// The list-append checker on hand-made histories (each anomaly caught, valid ones accepted)
// and on random serial executions, with and without one injected corruption.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type AnomalyType, check, describe as explain, type FinalRead, type History, type Key, type Op, type Outcome, tarjan, type Txn } from './checker';

const ap = (key: Key, value: number): Op => ({ f: 'append', key, value });
const rd = (key: Key, ...value: number[]): Op => ({ f: 'read', key, value });
const tx = (node: number, seq: number, ops: Op[], outcome: Outcome = 'ok'): Txn => ({ node, seq, ops, outcome });
const fin = (lists: Record<number, number[]>, lost: Key[] = [], node = 0): FinalRead => ({
  node,
  lists: new Map(Object.entries(lists).map(([k, v]) => [Number(k), v])),
  lost: new Set(lost),
});
const types = (h: History): AnomalyType[] => [...new Set(check(h).anomalies.map((a) => a.type))].sort();

describe('list-append checker on hand-made histories', () => {
  it('accepts a valid interleaving with reads of every age', () => {
    const h: History = {
      txns: [
        tx(0, 0, [ap(1, 10), rd(2)]),
        tx(1, 0, [rd(1, 10), ap(2, 20), rd(2, 20)]),
        tx(0, 1, [ap(1, 11), rd(2, 20)]),
        tx(2, 0, [rd(1, 10)]), // stale but serialisable: before n0#1
        tx(1, 1, [ap(1, 12)], 'unknown'), // its node died; the append did happen
        tx(2, 1, [ap(2, 21)], 'failed'),
      ],
      finals: [fin({ 1: [10, 11, 12], 2: [20] }), fin({ 1: [10, 11, 12], 2: [20] }, [], 2)],
    };
    const r = check(h);
    expect(explain(r)).toBe('');
    expect(r.valid).toBe(true);
    expect(r.orders.get(1)).toEqual([10, 11, 12]);
  });

  it('accepts an unknown transaction whose append never happened', () => {
    expect(types({ txns: [tx(0, 0, [ap(1, 1)]), tx(1, 0, [ap(1, 2)], 'unknown')], finals: [fin({ 1: [1] })] })).toEqual([]);
  });

  it('catches an acknowledged append missing from the final state (lost write)', () => {
    const h: History = { txns: [tx(0, 0, [ap(1, 1)]), tx(1, 0, [ap(1, 2)])], finals: [fin({ 1: [1] })] };
    const r = check(h);
    expect(types(h)).toEqual(['lost-write']);
    expect(r.anomalies[0].explanation).toContain('n1#0 appended 2 to key 1');
  });

  it('excuses a missing append when the key was reported lost, on every survivor', () => {
    const txns = [tx(0, 0, [ap(1, 1)]), tx(1, 0, [ap(1, 2), ap(2, 5)])];
    expect(types({ txns, finals: [fin({ 2: [5] }, [1]), fin({ 2: [5] }, [1], 1)] })).toEqual([]);
    // Reported to one survivor while another reads a list: the loss is not honest.
    expect(types({ txns, finals: [fin({ 2: [5] }, [1]), fin({ 1: [], 2: [5] }, [], 1)] })).toContain('divergent-final');
  });

  it("catches a failed transaction's append that is visible (aborted read, G1a)", () => {
    const h: History = { txns: [tx(0, 0, [ap(1, 1)], 'failed'), tx(1, 0, [rd(1, 1)])], finals: [fin({ 1: [1] })] };
    expect(types(h)).toEqual(['aborted-read']);
  });

  it('catches a read that is not a prefix of the final list', () => {
    const h: History = { txns: [tx(0, 0, [ap(1, 1)]), tx(0, 1, [ap(1, 2)]), tx(1, 0, [rd(1, 2)])], finals: [fin({ 1: [1, 2] })] };
    expect(types(h)).toEqual(['incompatible-order']);
    // A read longer than the final list: something it saw went missing later.
    const h2: History = { txns: [tx(0, 0, [ap(1, 1)]), tx(1, 0, [rd(1, 1)], 'ok')], finals: [fin({ 1: [] })] };
    expect(types(h2)).toEqual(['incompatible-order', 'lost-write']);
  });

  it('catches two reads of a lost key that are not prefixes of one another', () => {
    const h: History = { txns: [tx(0, 0, [ap(1, 1)]), tx(0, 1, [ap(1, 2)]), tx(1, 0, [rd(1, 1, 2)]), tx(2, 0, [rd(1, 2)])], finals: [fin({}, [1])] };
    expect(types(h)).toEqual(['incompatible-order']);
  });

  it('catches duplicated elements and values nobody appended', () => {
    expect(types({ txns: [tx(0, 0, [ap(1, 1)]), tx(1, 0, [rd(1, 1, 1)])], finals: [fin({ 1: [1] })] })).toContain('duplicate-elements');
    expect(types({ txns: [tx(0, 0, [ap(1, 1)])], finals: [fin({ 1: [1, 99] })] })).toEqual(['garbage-read']);
  });

  it('catches a read that sees part of another transaction (intermediate read, G1b)', () => {
    const h: History = { txns: [tx(0, 0, [ap(1, 1), ap(1, 2)]), tx(1, 0, [rd(1, 1)])], finals: [fin({ 1: [1, 2] })] };
    // It also closes a cycle (the read both follows and precedes n0#0), as Elle reports too.
    expect(types(h)).toEqual(['G-single', 'intermediate-read']);
  });

  it('catches a transaction that does not see its own appends', () => {
    const h: History = { txns: [tx(0, 0, [rd(1), ap(1, 1), rd(1)])], finals: [fin({ 1: [1] })] };
    expect(types(h)).toEqual(['internal']);
  });

  it('catches a write-write cycle (G0)', () => {
    const h: History = {
      txns: [tx(0, 0, [ap(1, 1), ap(2, 1)]), tx(1, 0, [ap(1, 2), ap(2, 2)])],
      finals: [fin({ 1: [1, 2], 2: [2, 1] })],
    };
    const r = check(h);
    expect(types(h)).toEqual(['G0']);
    expect(r.anomalies[0].explanation).toMatch(/ww: n0#0 appended 1 to key 1 just before n1#0 appended 2/);
  });

  it('catches a write-read cycle (G1c)', () => {
    const h: History = {
      txns: [tx(0, 0, [ap(1, 1), rd(2, 2)]), tx(1, 0, [ap(2, 2), rd(1, 1)])],
      finals: [fin({ 1: [1], 2: [2] })],
    };
    expect(types(h)).toEqual(['G1c']);
  });

  it('catches write skew, a cycle of two anti-dependencies (G2)', () => {
    const h: History = {
      txns: [tx(0, 0, [rd(1), ap(2, 1)]), tx(1, 0, [rd(2), ap(1, 2)])],
      finals: [fin({ 1: [2], 2: [1] })],
    };
    const r = check(h);
    expect(types(h)).toEqual(['G2']);
    expect(r.anomalies[0].explanation.match(/rw:/g)).toHaveLength(2);
  });

  it('catches read skew, a cycle with one anti-dependency (G-single)', () => {
    const h: History = {
      txns: [tx(0, 0, [ap(1, 1), ap(2, 1)]), tx(1, 0, [rd(1, 1), rd(2)])],
      finals: [fin({ 1: [1], 2: [1] })],
    };
    expect(types(h)).toEqual(['G-single']);
  });

  it("catches a node that reads older data than its own earlier transaction saw (session order)", () => {
    const h: History = {
      txns: [tx(0, 0, [ap(1, 1)]), tx(1, 0, [rd(1, 1)]), tx(1, 1, [rd(1)])],
      finals: [fin({ 1: [1] })],
    };
    const r = check(h);
    expect(r.valid).toBe(false);
    expect(r.anomalies[0].explanation).toContain('session: node 1 ran n1#0 before n1#1');
    // Without the session edge (the reads on different nodes) it is serialisable.
    expect(types({ ...h, txns: [h.txns[0], h.txns[1], tx(2, 0, [rd(1)])] })).toEqual([]);
  });

  it('rejects a malformed history that appends one value twice to a key', () => {
    expect(() => check({ txns: [tx(0, 0, [ap(1, 1)]), tx(1, 0, [ap(1, 1)])], finals: [] })).toThrow(/twice/);
  });

  it("Tarjan's search finds components of a graph with a long chain and a loop", () => {
    const n = 50_000;
    const sccs = tarjan(n, (v) => (v + 1 < n ? [v + 1] : [n - 3]));
    expect(sccs.filter((s) => s.length > 1).map((s) => s.sort((a, b) => a - b))).toEqual([[n - 3, n - 2, n - 1]]);
  });
});

// Random serial executions: each transaction runs alone, in one global order, on the node
// drawn for it, so every history they give is serialisable by construction.
interface Serial {
  history: History;
}

const serialExecution = (keys: number, nodes: number) =>
  fc
    .record({
      txns: fc.array(
        fc.record({
          node: fc.nat(nodes - 1),
          outcome: fc.constantFrom<Outcome>('ok', 'ok', 'ok', 'ok', 'failed', 'unknown'),
          appliedIfUnknown: fc.boolean(),
          ops: fc.array(fc.record({ f: fc.constantFrom('append', 'read'), key: fc.nat(keys - 1) }), { minLength: 1, maxLength: 4 }),
        }),
        { minLength: 1, maxLength: 40 },
      ),
      lostKey: fc.option(fc.nat(keys - 1), { freq: 4 }),
      survivors: fc.integer({ min: 1, max: 2 }),
    })
    .map(({ txns, lostKey, survivors }): Serial => {
      const state = new Map<Key, number[]>();
      let nextValue = 1;
      const seqs = new Map<number, number>();
      const out: Txn[] = [];
      for (const t of txns) {
        const seq = seqs.get(t.node) ?? 0;
        seqs.set(t.node, seq + 1);
        // A transaction works on a copy and installs it only if it takes effect.
        const local = new Map([...state].map(([k, v]) => [k, [...v]]));
        const ops: Op[] = t.ops.map((o) => {
          const l = local.get(o.key) ?? [];
          local.set(o.key, l);
          if (o.f === 'append') {
            const value = nextValue++;
            l.push(value);
            return { f: 'append', key: o.key, value };
          }
          return { f: 'read', key: o.key, value: [...l] };
        });
        const applied = t.outcome === 'ok' || (t.outcome === 'unknown' && t.appliedIfUnknown);
        if (applied) for (const [k, v] of local) state.set(k, v);
        out.push({ node: t.node, seq, ops, outcome: t.outcome });
      }
      const finals: FinalRead[] = [];
      for (let s = 0; s < survivors; s++) {
        const lists = new Map([...state].filter(([k]) => k !== lostKey).map(([k, v]) => [k, [...v]]));
        finals.push({ node: s, lists, lost: new Set(lostKey === null ? [] : [lostKey]) });
      }
      return { history: { txns: out, finals } };
    });

type Corruption = (h: History, pick: number) => boolean;

const pickOf = <T>(xs: T[], pick: number): T | undefined => (xs.length ? xs[pick % xs.length] : undefined);
const allReads = (h: History) => h.txns.filter((t) => t.outcome === 'ok').flatMap((t) => t.ops.filter((o): o is Op & { f: 'read' } => o.f === 'read'));
const lostKeys = (h: History) => new Set(h.finals.flatMap((f) => [...f.lost]));

/** Each corruption changes the history so that no serial execution explains it, or reports false. */
const corruptions: Record<string, Corruption> = {
  'drop an acknowledged append from the final state': (h, pick) => {
    const lost = lostKeys(h);
    const a = pickOf(
      h.txns.filter((t) => t.outcome === 'ok').flatMap((t) => t.ops.filter((o) => o.f === 'append' && !lost.has(o.key))),
      pick,
    ) as { key: Key; value: number } | undefined;
    if (!a) return false;
    for (const f of h.finals) f.lists.set(a.key, f.lists.get(a.key)!.filter((v) => v !== a.value));
    return true;
  },
  'mark a transaction whose append is visible as failed': (h, pick) => {
    const lost = lostKeys(h);
    const t = pickOf(
      h.txns.filter((t) => t.outcome === 'ok' && t.ops.some((o) => o.f === 'append' && !lost.has(o.key))),
      pick,
    );
    if (!t) return false;
    t.outcome = 'failed';
    return true;
  },
  'remove an element from the middle of a read': (h, pick) => {
    const lost = lostKeys(h);
    const r = pickOf(allReads(h).filter((o) => o.value!.length >= 2 && !lost.has(o.key)), pick);
    if (!r) return false;
    r.value!.splice(Math.max(0, r.value!.length - 2), 1);
    return true;
  },
  'duplicate an element of a read': (h, pick) => {
    const r = pickOf(allReads(h).filter((o) => o.value!.length >= 1), pick);
    if (!r) return false;
    r.value!.push(r.value![0]);
    return true;
  },
  'a value nobody appended in a read': (h, pick) => {
    const r = pickOf(allReads(h), pick);
    if (!r) return false;
    r.value!.push(1_000_000);
    return true;
  },
  "a node's later read older than its earlier read of the same key": (h, pick) => {
    const cands: Array<{ earlier: number[]; later: Op & { f: 'read' } }> = [];
    const byNode = new Map<number, Txn[]>();
    for (const t of h.txns) if (t.outcome === 'ok') byNode.set(t.node, [...(byNode.get(t.node) ?? []), t]);
    for (const ts of byNode.values()) {
      const reads = ts.flatMap((t) => t.ops.filter((o): o is Op & { f: 'read' } => o.f === 'read'));
      for (let i = 0; i < reads.length; i++)
        for (let j = i + 1; j < reads.length; j++)
          if (reads[i].key === reads[j].key && reads[i].value!.length > 0 && reads[i].value!.length <= reads[j].value!.length) cands.push({ earlier: reads[i].value!, later: reads[j] });
    }
    const c = pickOf(cands, pick);
    if (!c) return false;
    c.later.value = c.earlier.slice(0, c.earlier.length - 1);
    return true;
  },
};

describe('list-append checker on random serial executions', () => {
  it('accepts every serial execution', () => {
    fc.assert(
      fc.property(serialExecution(4, 3), ({ history }) => {
        const r = check(history);
        if (!r.valid) throw new Error(explain(r));
      }),
      { numRuns: 300 },
    );
  });

  it('rejects a serial execution with one injected corruption', () => {
    let applied = 0;
    fc.assert(
      fc.property(serialExecution(4, 3), fc.constantFrom(...Object.keys(corruptions)), fc.nat(), ({ history }, name, pick) => {
        if (!corruptions[name](history, pick)) return; // nothing to corrupt in this one
        applied++;
        expect(check(history).valid, name).toBe(false);
      }),
      { numRuns: 600 },
    );
    expect(applied).toBeGreaterThan(200);
  });
});
