// Allocator zones under two nodes allocating at once: a random workload of small and
// large allocations, frees and aborted transactions from both nodes, with memory running
// out now and then (spare chunks go back to the manager, zones borrow from each other),
// leaves a heap the checker accepts on both nodes, with no live object overlapping
// another. The seed is printed; DSM_TEST_SEED replays one.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, settle } from '../cluster/harness';

const WORKLOAD = `
  const { ZONE_AT } = require('../../../dist/alloc/layout.js');
  let seed = args.seed;
  const rnd = (m) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % m; };
  const kinds = [undefined, { kind: 'readMostly' }, { kind: 'private' }];
  const live = []; // [ptr, id]
  let nextId = args.node * 1e6 + 1, aborted = 0, oom = 0, committed = 0;
  for (let t = 0; t < args.transactions; t++) {
    // Drawn before the transaction: a re-run after a conflict does the same.
    const ops = [];
    for (let n = 1 + rnd(6); n > 0; n--) {
      if (live.length && rnd(100) < 35) ops.push({ free: rnd(live.length) });
      else ops.push({ size: rnd(100) < 80 ? 1 + rnd(2048) : 4097 + rnd(40000), opts: kinds[rnd(3)], id: nextId++ });
    }
    const abort = rnd(100) < 10;
    try {
      const made = await dsm.transaction((tx) => {
        const out = [];
        const gone = new Set();
        for (const o of ops) {
          if (o.free !== undefined) {
            const i = o.free % live.length;
            if (gone.has(i)) continue;
            gone.add(i);
            tx.free(live[i][0]);
          } else {
            const p = tx.alloc(o.size, o.opts);
            dsm.u32[p >> 2] = o.id; // every live object carries its own id at its start
            out.push([p, o.id]);
          }
        }
        if (abort) throw new Error('abort');
        return { out, gone: [...gone].sort((a, b) => b - a) };
      });
      for (const i of made.gone) live.splice(i, 1);
      live.push(...made.out);
      committed++;
    } catch (e) {
      if (e.message === 'abort') aborted++;
      else if (e.code === 'ERR_DSM_OUT_OF_MEMORY') oom++;
      else throw e;
    }
  }
  const zone = dsm.u32[dsm.u32[64 + dsm.heap.slotOf(dsm.nodeId)] * 1024 + ZONE_AT];
  return { live, aborted, oom, committed, zone, conflicts: dsm.stats().transactions.aborted };`;

/** The spare chunks in node args.id's zone. */
const ZONE = `const { ZONE_AT } = require('../../../dist/alloc/layout.js'); return dsm.transaction(() => dsm.u32[dsm.u32[64 + dsm.heap.slotOf(args.id)] * 1024 + ZONE_AT]);`;

const CHECK = `
  const { checkHeap } = require('../../../dist/alloc/check.js');
  return dsm.transaction(() => ({
    errors: checkHeap(dsm.heap, dsm),
    wrong: args.live.filter(([p, id]) => dsm.u32[p >> 2] !== id).length,
  }));`;

describe('allocator zones', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('two nodes allocating, freeing and aborting at once keep the heap consistent', async () => {
    const seed = Number(process.env.DSM_TEST_SEED) || Date.now() % 1_000_000;
    console.log(`zones workload seed ${seed} (replay: DSM_TEST_SEED=${seed})`);
    // A small region, so memory runs out now and then.
    const [a, b] = await h.cluster(2, { regionSize: 4 << 20 });
    type Result = { live: [number, number][]; aborted: number; oom: number; committed: number; zone: number };
    const results = await Promise.all(
      [a, b].map((n, i) => n.run<Result>(WORKLOAD, { seed: seed * 2 + i, node: i, transactions: 150 })),
    );
    await settle([a, b]);
    const live = results.flatMap((r) => r.live);
    for (const n of [a, b]) expect(await n.run(CHECK, { live })).toEqual({ errors: [], wrong: 0 });
    // Both nodes did real work.
    for (const r of results) expect(r.committed).toBeGreaterThan(50);
  });

  it('memory held in zones is given back for large objects', async () => {
    const [a, b] = await h.cluster(2, { regionSize: 16 << 20 });
    // Both nodes take a chunk: each zone now holds spare chunks.
    await a.run(`await dsm.transaction((tx) => tx.alloc(64));`);
    await settle([a, b]);
    await b.run(`await dsm.transaction((tx) => tx.alloc(64));`);
    await settle([a, b]);
    expect(await a.run(ZONE, { id: b.nodeId })).toBeGreaterThan(0);
    expect(await a.run(ZONE, { id: a.nodeId })).toBeGreaterThan(0);
    // Node a fills the region with two-page objects: once the manager is empty, the spare
    // chunks of both zones go back to it, and a gets those pages too.
    await a.run(`
      for (;;) {
        try { await dsm.transaction((tx) => { for (let i = 0; i < 64; i++) tx.alloc(4097); }); }
        catch (e) { if (e.code !== 'ERR_DSM_OUT_OF_MEMORY') throw e; break; }
      }
      for (;;) {
        try { await dsm.transaction((tx) => { tx.alloc(4097); }); }
        catch (e) { if (e.code !== 'ERR_DSM_OUT_OF_MEMORY') throw e; break; }
      }`);
    expect(await a.run(ZONE, { id: a.nodeId })).toBe(0);
    expect(await a.run(ZONE, { id: b.nodeId })).toBe(0);
    await settle([a, b]);
    // Nothing left anywhere: b's next chunk cannot come from anywhere.
    expect(await b.run(`try { await dsm.transaction((tx) => tx.alloc(2048)); return 'allocated'; } catch (e) { return e.code; }`)).toBe('ERR_DSM_OUT_OF_MEMORY');
    for (const n of [a, b]) expect((await n.run<{ errors: string[] }>(CHECK, { live: [] })).errors).toEqual([]);
  });

  it('a node whose zone and the manager are empty borrows spare chunks from another zone', async () => {
    const [a, b] = await h.cluster(2, { regionSize: 16 << 20 });
    await a.run(`await dsm.transaction((tx) => tx.alloc(64));`);
    await settle([a, b]);
    const spares = await b.run<number>(ZONE, { id: a.nodeId });
    expect(spares).toBeGreaterThan(0);
    // b takes chunk after chunk (15 objects of 4 KiB each) until nothing is left.
    const chunks = await b.run<number>(`
      let n = 0;
      for (;;) {
        try { await dsm.transaction((tx) => { for (let i = 0; i < 15; i++) tx.alloc(4096); }); n++; }
        catch (e) { if (e.code !== 'ERR_DSM_OUT_OF_MEMORY') throw e; return n; }
      }`);
    expect(chunks).toBeGreaterThan(spares);
    await settle([a, b]);
    // a allocated nothing more, yet its spares are gone: b borrowed them.
    expect(await a.run(ZONE, { id: a.nodeId })).toBe(0);
    for (const n of [a, b]) expect((await n.run<{ errors: string[] }>(CHECK, { live: [] })).errors).toEqual([]);
  });
});
