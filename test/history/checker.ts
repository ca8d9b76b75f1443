// An Elle-style checker for list-append histories (Kingsbury & Alvaro, "Elle: Inferring
// Isolation Anomalies from Experimental Observations", VLDB 2020). Every key is a list;
// transactions append values (unique per key) and read whole lists. Because a list carries
// the order of every append it contains, the reads reveal each key's version order, from
// which the write-write, write-read and read-write (anti-)dependencies between
// transactions follow; a cycle among them (plus each node's own order of transactions)
// means no serial order explains what was observed. Pure: no I/O, no clocks.

export type Key = number;

export type Op = { f: 'append'; key: Key; value: number } | { f: 'read'; key: Key; value: number[] | null };

/**
 * `ok`: committed and acknowledged. `failed`: rejected, so none of its writes may be seen.
 * `unknown`: its node died before it completed; its writes may or may not have happened.
 */
export type Outcome = 'ok' | 'failed' | 'unknown';

export interface Txn {
  /** The node that ran it; a node runs its transactions one at a time, in `seq` order. */
  node: number;
  seq: number;
  ops: Op[];
  outcome: Outcome;
  /** When it began and when it completed, in ms on the node's commit-ring clock (where recorded). */
  invokedAt?: number;
  completedAt?: number;
}

/** What one survivor read at the end, every key in one transaction. */
export interface FinalRead {
  node: number;
  lists: Map<Key, number[]>;
  /** Keys whose page the cluster reported lost (ERR_DSM_PAGE_LOST) to this survivor. */
  lost: Set<Key>;
}

export interface History {
  txns: Txn[];
  /** One per survivor; at least one for the lost-write check to run. */
  finals: FinalRead[];
}

export type AnomalyType =
  | 'duplicate-elements'
  | 'garbage-read'
  | 'aborted-read'
  | 'intermediate-read'
  | 'internal'
  | 'incompatible-order'
  | 'lost-write'
  | 'divergent-final'
  | 'G0'
  | 'G1c'
  | 'G-single'
  | 'G2';

export interface Anomaly {
  type: AnomalyType;
  /** What was seen and why it is wrong, in a sentence or a few lines. */
  explanation: string;
  key?: Key;
  /** The transactions involved, as "n<node>#<seq>". */
  txns?: string[];
}

export interface CheckResult {
  valid: boolean;
  anomalies: Anomaly[];
  /** Each key's version order as inferred (the longest observed list, or the final one). */
  orders: Map<Key, number[]>;
  /** Keys reported lost by some survivor. */
  lost: Set<Key>;
}

export const txnName = (t: Pick<Txn, 'node' | 'seq'>): string => `n${t.node}#${t.seq}`;

type EdgeKind = 'ww' | 'wr' | 'rw' | 'session';
interface Edge {
  to: number;
  kind: EdgeKind;
  why: string;
}

const show = (l: readonly number[]): string => (l.length <= 8 ? `[${l.join(',')}]` : `[${l.slice(0, 3).join(',')},…,${l.slice(-4).join(',')}] (${l.length} values)`);

const isPrefix = (a: readonly number[], b: readonly number[]): boolean => a.length <= b.length && a.every((v, i) => v === b[i]);

export function check(h: History): CheckResult {
  const anomalies: Anomaly[] = [];
  const txns = h.txns;

  // Who appended what. Values are unique per key, so an element names its writer.
  const writer = new Map<Key, Map<number, number>>(); // key -> value -> txn index
  txns.forEach((t, i) => {
    for (const op of t.ops) {
      if (op.f !== 'append') continue;
      let m = writer.get(op.key);
      if (!m) writer.set(op.key, (m = new Map()));
      if (m.has(op.value)) throw new Error(`malformed history: value ${op.value} appended to key ${op.key} twice (${txnName(txns[m.get(op.value)!])}, ${txnName(t)})`);
      m.set(op.value, i);
    }
  });
  const writerOf = (key: Key, v: number): number | undefined => writer.get(key)?.get(v);

  // Observations: reads of committed transactions and of the survivors' final reads.
  // A failed or unknown transaction's reads say nothing about committed state.
  interface Obs {
    key: Key;
    list: number[];
    txn?: number;
    where: string;
  }
  const obs: Obs[] = [];
  txns.forEach((t, i) => {
    if (t.outcome !== 'ok') return;
    for (const op of t.ops) if (op.f === 'read' && op.value) obs.push({ key: op.key, list: op.value, txn: i, where: txnName(t) });
  });
  for (const f of h.finals) for (const [key, list] of f.lists) obs.push({ key, list, where: `the final read on node ${f.node}` });

  // Element-level checks on every observed list.
  for (const o of obs) {
    const seen = new Set<number>();
    for (const v of o.list) {
      if (seen.has(v)) anomalies.push({ type: 'duplicate-elements', key: o.key, explanation: `${o.where} read key ${o.key} = ${show(o.list)}, which holds ${v} twice` });
      seen.add(v);
      const w = writerOf(o.key, v);
      if (w === undefined) {
        anomalies.push({ type: 'garbage-read', key: o.key, explanation: `${o.where} read key ${o.key} = ${show(o.list)}, which holds ${v}, a value nobody appended to that key` });
      } else if (txns[w].outcome === 'failed') {
        anomalies.push({
          type: 'aborted-read',
          key: o.key,
          txns: [txnName(txns[w])],
          explanation: `${o.where} read key ${o.key} = ${show(o.list)}, which holds ${v}, appended by ${txnName(txns[w])}, a transaction that failed (G1a)`,
        });
      }
    }
    // G1b: the list ends inside another transaction's run of appends to this key.
    const last = o.list[o.list.length - 1];
    const w = last === undefined ? undefined : writerOf(o.key, last);
    if (w !== undefined && w !== o.txn) {
      const own = txns[w].ops.filter((op) => op.f === 'append' && op.key === o.key).map((op) => (op as { value: number }).value);
      if (own[own.length - 1] !== last && !own.slice(own.indexOf(last) + 1).some((v) => o.list.includes(v))) {
        anomalies.push({
          type: 'intermediate-read',
          key: o.key,
          txns: [txnName(txns[w])],
          explanation: `${o.where} read key ${o.key} = ${show(o.list)}, ending at ${last}, but ${txnName(txns[w])} appended ${own.join(', ')} to it in one transaction (G1b)`,
        });
      }
    }
  }

  // Within a transaction, a read must show what the transaction itself appended.
  txns.forEach((t) => {
    if (t.outcome !== 'ok') return;
    const known = new Map<Key, number[]>();
    const appended = new Map<Key, number[]>();
    for (const op of t.ops) {
      if (op.f === 'append') {
        known.get(op.key)?.push(op.value);
        appended.set(op.key, [...(appended.get(op.key) ?? []), op.value]);
      } else if (op.value) {
        const expect = known.get(op.key);
        const mine = appended.get(op.key) ?? [];
        const bad = expect ? !(expect.length === op.value.length && isPrefix(expect, op.value)) : mine.length > 0 && !isPrefix(mine, op.value.slice(op.value.length - mine.length));
        if (bad) {
          anomalies.push({
            type: 'internal',
            key: op.key,
            txns: [txnName(t)],
            explanation: `${txnName(t)} read key ${op.key} = ${show(op.value)}, but by its own earlier reads and appends it should have been ${expect ? show(expect) : `a list ending in ${mine.join(',')}`}`,
          });
        }
        known.set(op.key, [...op.value]);
      }
    }
  });

  // Finals: every survivor must agree on each key, or report it lost.
  const lost = new Set<Key>();
  for (const f of h.finals) for (const k of f.lost) lost.add(k);
  const finalList = new Map<Key, number[]>();
  const keys = new Set<Key>([...writer.keys(), ...obs.map((o) => o.key)]);
  for (const key of keys) {
    for (const f of h.finals) {
      const l = f.lists.get(key);
      if (lost.has(key) && !f.lost.has(key)) {
        const by = h.finals.filter((g) => g.lost.has(key)).map((g) => g.node);
        anomalies.push({
          type: 'divergent-final',
          key,
          explanation: `key ${key} was reported lost to node${by.length > 1 ? 's' : ''} ${by.join(', ')} but node ${f.node} read it as ${show(l ?? [])}: a loss must be reported to every survivor`,
        });
      }
      if (!l || lost.has(key)) continue;
      const agreed = finalList.get(key);
      if (!agreed) finalList.set(key, l);
      else if (!(agreed.length === l.length && isPrefix(agreed, l))) {
        anomalies.push({ type: 'divergent-final', key, explanation: `survivors disagree on the final value of key ${key}: ${show(agreed)} and, on node ${f.node}, ${show(l)}` });
      }
    }
  }

  // Version orders: all observations of a key must be prefixes of one list. The final
  // list, when known, is that list; otherwise the longest observation.
  const orders = new Map<Key, number[]>();
  for (const key of keys) {
    const of = obs.filter((o) => o.key === key);
    const fin = finalList.get(key);
    let longest = fin ?? [];
    if (!fin) for (const o of of) if (o.list.length > longest.length) longest = o.list;
    for (const o of of) {
      if (isPrefix(o.list, longest)) continue;
      const at = o.list.findIndex((v, i) => v !== longest[i]);
      anomalies.push({
        type: 'incompatible-order',
        key,
        txns: o.txn === undefined ? [] : [txnName(txns[o.txn])],
        explanation:
          `${o.where} read key ${key} = ${show(o.list)}, which is not a prefix of ${fin ? 'the final list' : 'the longest list observed'} ${show(longest)}` +
          (at >= longest.length ? ` (it is longer: ${o.list.slice(longest.length, longest.length + 4).join(',')}… went missing later)` : ` (position ${at} holds ${o.list[at]}, not ${longest[at]})`),
      });
    }
    orders.set(key, longest);
  }

  // Acknowledged appends must be in the final list, unless the key was reported lost.
  if (h.finals.length > 0) {
    txns.forEach((t) => {
      if (t.outcome !== 'ok') return;
      for (const op of t.ops) {
        if (op.f !== 'append' || lost.has(op.key)) continue;
        const fin = finalList.get(op.key) ?? [];
        if (!fin.includes(op.value)) {
          anomalies.push({
            type: 'lost-write',
            key: op.key,
            txns: [txnName(t)],
            explanation: `${txnName(t)} appended ${op.value} to key ${op.key} and was acknowledged, but the final list ${show(fin)} lacks it and no survivor reported the key lost`,
          });
        }
      }
    });
  }

  // The dependency graph over committed (and possibly committed) transactions.
  const edges: Edge[][] = txns.map(() => []);
  const inGraph = (i: number) => txns[i].outcome !== 'failed';
  const addEdge = (from: number, to: number, kind: EdgeKind, why: string) => {
    if (from !== to && inGraph(from) && inGraph(to)) edges[from].push({ to, kind, why });
  };
  for (const [key, order] of orders) {
    const ws = order.map((v) => writerOf(key, v));
    for (let i = 0; i + 1 < ws.length; i++) {
      const a = ws[i];
      const b = ws[i + 1];
      if (a !== undefined && b !== undefined) addEdge(a, b, 'ww', `${txnName(txns[a])} appended ${order[i]} to key ${key} just before ${txnName(txns[b])} appended ${order[i + 1]}`);
    }
  }
  for (const o of obs) {
    if (o.txn === undefined) continue;
    const order = orders.get(o.key)!;
    if (!isPrefix(o.list, order)) continue; // already reported; its position is undefined
    const r = txnName(txns[o.txn]);
    if (o.list.length > 0) {
      const w = writerOf(o.key, o.list[o.list.length - 1]);
      if (w !== undefined) addEdge(w, o.txn, 'wr', `${r} read key ${o.key} = ${show(o.list)}, which includes ${txnName(txns[w])}'s append of ${o.list[o.list.length - 1]}`);
    }
    if (o.list.length < order.length) {
      const next = order[o.list.length];
      const w = writerOf(o.key, next);
      if (w !== undefined) addEdge(o.txn, w, 'rw', `${r} read key ${o.key} = ${show(o.list)}, which misses ${txnName(txns[w])}'s append of ${next}, the next version`);
    }
  }
  const byNode = new Map<number, number[]>();
  txns.forEach((t, i) => {
    if (!byNode.has(t.node)) byNode.set(t.node, []);
    byNode.get(t.node)!.push(i);
  });
  for (const [node, list] of byNode) {
    const live = list.filter(inGraph).sort((a, b) => txns[a].seq - txns[b].seq);
    for (let i = 0; i + 1 < live.length; i++) addEdge(live[i], live[i + 1], 'session', `node ${node} ran ${txnName(txns[live[i]])} before ${txnName(txns[live[i + 1]])}`);
  }
  anomalies.push(...findCycles(txns, edges));

  return { valid: anomalies.length === 0, anomalies, orders, lost };
}

/**
 * Reports one cycle per strongly connected component, as Elle does, trying the classes from
 * the weakest anomaly to the strongest: write-write only (G0), with write-read (G1c), with
 * exactly one read-write anti-dependency (G-single), with more (G2). Each node's order of
 * transactions counts as an edge in every class.
 */
function findCycles(txns: Txn[], edges: Edge[][]): Anomaly[] {
  const out: Anomaly[] = [];
  const levels: Array<{ type: AnomalyType; allowed: Set<EdgeKind>; needs: EdgeKind | undefined }> = [
    { type: 'G0', allowed: new Set(['ww', 'session']), needs: 'ww' },
    { type: 'G1c', allowed: new Set(['ww', 'wr', 'session']), needs: 'wr' },
    { type: 'G-single', allowed: new Set(['ww', 'wr', 'rw', 'session']), needs: 'rw' },
  ];
  const covered = new Set<number>();
  for (const level of levels) {
    const sccs = tarjan(edges.length, (v) => edges[v].filter((e) => level.allowed.has(e.kind)).map((e) => e.to));
    for (const scc of sccs) {
      if (scc.length < 2) continue;
      // A component whose every member already sits in a reported cycle is the same anomaly.
      if (scc.every((v) => covered.has(v))) continue;
      const inScc = new Set(scc);
      let cycle: Array<{ from: number; e: Edge }> | undefined;
      let type = level.type;
      if (level.needs === 'rw') {
        // Prefer one anti-dependency closed by non-rw edges (G-single) over several (G2).
        cycle = cycleThrough(edges, inScc, 'rw', new Set(['ww', 'wr', 'session']));
        if (!cycle) {
          cycle = cycleThrough(edges, inScc, 'rw', level.allowed);
          type = 'G2';
        }
      } else {
        cycle = cycleThrough(edges, inScc, level.needs!, level.allowed);
      }
      if (!cycle) continue;
      for (const s of cycle) covered.add(s.from);
      const names = cycle.map((s) => txnName(txns[s.from]));
      const shown = names.length <= 10 ? names.join(' -> ') : `${names.slice(0, 4).join(' -> ')} -> … (${names.length - 6} more) -> ${names.slice(-2).join(' -> ')}`;
      out.push({ type, txns: names, explanation: `dependency cycle (${type}) among ${shown} -> ${names[0]}:\n${steps(cycle.map((s) => s.e))}` });
    }
  }
  return out;
}

/** One line per edge, a run of three or more write-write edges folded into one. */
function steps(es: Edge[]): string {
  const lines: string[] = [];
  for (let i = 0; i < es.length; ) {
    let j = i;
    while (j < es.length && es[j].kind === 'ww') j++;
    if (j - i >= 3) {
      lines.push(`  ww x${j - i}: ${es[i].why}; … ; ${es[j - 1].why}`);
      i = j;
    } else {
      lines.push(`  ${es[i].kind}: ${es[i].why}`);
      i++;
    }
  }
  return lines.join('\n');
}

/** The shortest cycle inside `scc` that uses at least one `first` edge and otherwise only `allowed` edges. */
function cycleThrough(edges: Edge[][], scc: Set<number>, first: EdgeKind, allowed: Set<EdgeKind>): Array<{ from: number; e: Edge }> | undefined {
  let best: Array<{ from: number; e: Edge }> | undefined;
  for (const u of scc) {
    for (const e of edges[u]) {
      if (e.kind !== first || !scc.has(e.to)) continue;
      // Breadth-first from e.to back to u.
      const prev = new Map<number, { from: number; e: Edge }>();
      const queue = [e.to];
      const seen = new Set([e.to]);
      while (queue.length && !seen.has(u)) {
        const v = queue.shift()!;
        for (const f of edges[v]) {
          if (!allowed.has(f.kind) || !scc.has(f.to) || seen.has(f.to)) continue;
          seen.add(f.to);
          prev.set(f.to, { from: v, e: f });
          queue.push(f.to);
        }
      }
      if (!seen.has(u) && e.to !== u) continue;
      const path: Array<{ from: number; e: Edge }> = [];
      for (let v = u; v !== e.to; ) {
        const p = prev.get(v)!;
        path.unshift(p);
        v = p.from;
      }
      const cycle = [{ from: u, e }, ...path];
      if (!best || cycle.length < best.length) best = cycle;
      if (best.length === 2) return best;
    }
  }
  return best;
}

/** Tarjan's strongly connected components, iterative (histories can be long). */
export function tarjan(n: number, next: (v: number) => number[]): number[][] {
  const index = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const onStack = new Uint8Array(n);
  const stack: number[] = [];
  const out: number[][] = [];
  let counter = 0;
  for (let root = 0; root < n; root++) {
    if (index[root] >= 0) continue;
    const work: Array<{ v: number; succ: number[]; i: number }> = [];
    const enter = (v: number) => {
      index[v] = low[v] = counter++;
      stack.push(v);
      onStack[v] = 1;
      work.push({ v, succ: next(v), i: 0 });
    };
    enter(root);
    while (work.length) {
      const top = work[work.length - 1];
      if (top.i < top.succ.length) {
        const w = top.succ[top.i++];
        if (index[w] < 0) enter(w);
        else if (onStack[w]) low[top.v] = Math.min(low[top.v], index[w]);
        continue;
      }
      work.pop();
      if (work.length) low[work[work.length - 1].v] = Math.min(low[work[work.length - 1].v], low[top.v]);
      if (low[top.v] === index[top.v]) {
        const scc: number[] = [];
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = 0;
          scc.push(w);
        } while (w !== top.v);
        out.push(scc);
      }
    }
  }
  return out;
}

/** The anomalies as text, one block each. */
export function describe(r: CheckResult): string {
  return r.anomalies.map((a) => `${a.type}: ${a.explanation}`).join('\n');
}
