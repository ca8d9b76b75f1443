// Allocator slots (layout.ts): a node allocates through a slot it owns. Node ids are never
// given twice, so a node that left hands its slot, with its chunks and free objects, to the
// next node that allocates, and ids past 255 allocate like any other.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, settle, withEnv } from '../cluster/harness';

const CHECK = `const { checkHeap } = require('../../../dist/alloc/check.js'); return dsm.transaction(() => checkHeap(dsm.heap, dsm));`;
const SLOT = `return dsm.transaction(() => dsm.heap.slotOf(dsm.nodeId));`;
/** Allocates and frees in one node: 10 objects of 48 bytes, the first 4 freed again; returns [all, freed]. */
const CHURN = `return dsm.transaction((tx) => {
  const ps = Array.from({ length: 10 }, (_, i) => { const p = tx.alloc(48); dsm.u32[p >>> 2] = i + 1; return p; });
  for (const p of ps.slice(0, 4)) tx.free(p);
  return [ps, ps.slice(0, 4)];
});`;

describe('allocator slots', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('a node whose id is past 255, as in a cluster that nodes joined hundreds of times, allocates small objects', async () => {
    const a = await withEnv({ DSM_TEST_NEXT_ID: '300' }, () => h.start());
    const b = await h.start({ peers: [a.address] });
    expect(b.nodeId).toBe(300);
    const p = await b.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(64); dsm.u32[p >>> 2] = 5; return p; });`);
    await settle([a, b]);
    expect(await a.run(`return dsm.transaction(() => dsm.u32[args.p >>> 2]);`, { p })).toBe(5);
    for (const n of [a, b]) expect(await n.run(CHECK)).toEqual([]);
  });

  // Every slot but the first two owned by ids the cluster gave and no longer has (the
  // founder's next ids start at 300), as after hundreds of nodes came and went.
  const FILL = `const { SB, SLOTS } = require('../../../dist/alloc/layout.js');
    await dsm.transaction(() => { for (let s = 2; s < SLOTS; s++) dsm.heap._testWriteSuperblock(SB.slotOwners + s, 10 + s + 1); });`;

  it('once every slot has been used, a node that left hands its slot, chunks and free objects to the next node that allocates; a live node keeps its slot', async () => {
    const a = await withEnv({ DSM_TEST_NEXT_ID: '300' }, () => h.start());
    const b = await h.start({ peers: [a.address] });
    await a.run(CHURN);
    const [made, freed] = await b.run<[number[], number[]]>(CHURN);
    const slotA = await a.run<number>(SLOT);
    const slotB = await b.run<number>(SLOT);
    expect([slotA, slotB].sort()).toEqual([0, 1]);
    await a.run(FILL);
    await settle([a, b]);
    await b.close(); // leaves the cluster
    const c = await h.start({ peers: [a.address] });
    const got = await c.run<{ p: number; slot: number }>(`return dsm.transaction((tx) => ({ p: tx.alloc(48), slot: dsm.heap.slotOf(dsm.nodeId) }));`);
    expect(got.slot).toBe(slotB);
    expect(freed).toContain(got.p); // one of b's freed objects, from b's free list
    // b's live objects are where b left them; a kept its slot.
    await settle([a, c]);
    expect(await c.run(`return dsm.transaction(() => args.ps.slice(4).map((p) => dsm.u32[p >>> 2]));`, { ps: made })).toEqual([5, 6, 7, 8, 9, 10]);
    expect(await a.run<number>(SLOT)).toBe(slotA);
    for (const n of [a, c]) expect(await n.run(CHECK)).toEqual([]);
  });

  it('a cluster that has given out every node id refuses the next joiner with a clear error, and the last id allocates', async () => {
    const a = await withEnv({ DSM_TEST_NEXT_ID: String(0xfffd) }, () => h.start());
    const last = await h.start({ peers: [a.address] });
    expect(last.nodeId).toBe(0xfffd);
    expect(await last.run(`return dsm.transaction((tx) => tx.alloc(16) > 0);`)).toBe(true);
    const refused = await h.start({ peers: [a.address] }).then(() => 'joined', (e: Error & { code?: string }) => `${e.code}: ${e.message}`);
    expect(refused).toMatch(/given out all 65534 node ids/);
  });
});
