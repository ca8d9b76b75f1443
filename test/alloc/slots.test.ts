// Allocator slots (layout.ts): a node allocates through a slot it owns. Node ids are never
// given twice, so a node that left hands its slot, with its chunks and free objects, to the
// next node that allocates, and ids past 255 allocate like any other.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, settle, until, withEnv } from '../cluster/harness';

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

  it('a node whose id is past 255, as in a cluster that nodes joined hundreds of times, allocates small objects, and faults reach it natively', async () => {
    // Durability 'none': node 0 is no backup, so pages node 300 rewrites whole are not sent to it.
    const a = await withEnv({ DSM_TEST_NEXT_ID: '300' }, () => h.start({ durability: 'none' }));
    const b = await h.start({ peers: [a.address], durability: 'none' });
    expect(b.nodeId).toBe(300);
    const ps = await b.run<number[]>(`return dsm.transaction((tx) => Array.from({ length: 11 }, (_, k) => {
      const p = tx.alloc(4096);
      const w = dsm.view(Uint32Array, p, 1024);
      for (let i = 0; i < 1024; i++) w[i] = ((i + k) * 2654435761) >>> 0 || 1; // every word changed: a whole page, no diff
      w[0] = 5 + k;
      return p;
    }));`);
    await settle([a, b]);
    const read = (p: number) => a.run<number>(`return dsm.transaction(() => dsm.u32[args.p >>> 2]);`, { p });
    // The first fetch from node 300 goes through the service and opens a data channel to it.
    expect(await read(ps[0])).toBe(5);
    await until('a data channel to node 300', 20_000, async () => ((await a.run<{ dataChannels: number[] }>('return dsm.clusterStats();')).dataChannels.includes(300) ? true : undefined));
    // The next faults (pages past the first fetch's read-ahead) are sent by the faulting
    // thread itself on that channel.
    const sent = () => a.run<number>('return dsm.stats().faults.sentByFault;');
    const before = await sent();
    expect([await read(ps[5]), await read(ps[10])]).toEqual([10, 15]);
    expect((await sent()) - before).toBeGreaterThanOrEqual(1);
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
