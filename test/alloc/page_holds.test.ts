// What the false-sharing monitor says a page holds, for each kind of page the heap has.
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
const load = createRequire(__filename);
const { createNode } = load('../..');
const { describePage } = load('../../dist/alloc/page_holds.js');
const { ZONE_AT } = load('../../dist/alloc/layout.js');

let dsm: any;
beforeAll(async () => {
  dsm = await createNode({ regionSize: 16 << 20 });
});
afterAll(() => dsm.close());

describe('page descriptions', () => {
  it('name the heap tables, small objects with their node and class, large objects, spare chunks and free memory', async () => {
    const PAGE = dsm.pageSize;
    const holds = (page: number) => describePage(dsm, dsm.heap.geometry, page);
    const [small, big] = await dsm.transaction((tx: any) => {
      const s = tx.alloc(100, { kind: 'readMostly' });
      const b = tx.alloc(3 * PAGE);
      tx.setRoot('small', s);
      tx.setRoot('big', b + 8); // a pointer into the object counts too
      return [s, b];
    });
    const g = dsm.heap.geometry;
    expect(holds(0).holds).toMatch(/^heap superblock/);
    expect(holds(1).holds).toBe('heap named-roots table');
    expect(holds(g.kindsAt / PAGE).holds).toBe('heap page-kind table');
    expect(holds(g.dataStart - 1).holds).toBe('heap buddy link table');
    const sp = Math.floor(small / PAGE);
    expect(holds(sp)).toEqual({ holds: `128-byte readMostly objects of slot 0 (node 0) (chunk at page ${sp - 1}, page 1 of 16)` /* a 16 MiB region: 16-page chunks */, roots: ['small'] });
    expect(holds(sp - 1).holds).toBe('chunk header (free-slot bitmap) of 128-byte readMostly objects of slot 0 (node 0)');
    const bp = big / PAGE;
    // Every page of a 3-page object (a block of 4) names it, and the block's last page too.
    for (const p of [bp, bp + 1, bp + 3]) expect(holds(p)).toEqual({ holds: `large object at ${big} (4 pages)`, roots: ['big'] });
    expect(holds(dsm.u32[64]).holds).toBe('allocator header of slot 0 (node 0)');
    const zone = dsm.u32[dsm.u32[64] * (PAGE / 4) + ZONE_AT];
    expect(zone).toBeGreaterThan(0);
    const spare = dsm.u32[dsm.u32[64] * (PAGE / 4) + ZONE_AT + 1];
    expect(holds(spare + 2).holds).toBe('spare chunk in the zone of slot 0 (node 0) (unused)');
    // A free block: its first page and one inside it.
    let k = dsm.u32[5];
    while (dsm.u32[16 + k] === 0) k--;
    const free = dsm.u32[16 + k];
    for (const p of [free, free + (1 << k) - 1]) expect(holds(p).holds).toBe('free memory');
  });
});
