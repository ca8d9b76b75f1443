// Chunk sizes follow the region's (layout.ts chunkOrder): a large region's 64-page chunks
// are filled, freed and reused like the 16-page ones the other heap tests use.
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
const load = createRequire(__filename);
const { createNode } = load('../..');
const { checkHeap } = load('../../dist/alloc/check.js');
const { modelBlocks } = load('../../dist/alloc/buddy.js');
const { SB } = load('../../dist/alloc/layout.js');

let big: any;
beforeAll(async () => {
  big = await createNode({ regionSize: 256 << 20 });
});
afterAll(() => big.close());

describe('chunks', () => {
  it('a region of 256 MiB or more takes 64-page chunks: objects fill all 63 object pages, free, reuse, and the checker agrees', async () => {
    const g = big.heap.geometry;
    expect([g.chunkOrder, g.chunkPages]).toEqual([6, 64]);
    const perChunk = 63 * (4096 / 16);
    const ptrs: number[] = await big.transaction((tx: any) => Array.from({ length: perChunk + 10 }, (_, i) => {
      const p = tx.alloc(16);
      big.u32[p >> 2] = i + 1;
      return p;
    }));
    const pageOf = (p: number) => Math.floor(p / 4096);
    const first = pageOf(ptrs[0]) - 1; // the chunk's header page
    // Every object page of the first chunk in turn, then a chunk of its own.
    expect(pageOf(ptrs[perChunk - 1])).toBe(first + 63);
    expect(big.u8[g.kindsAt + first + 63]).toBe(big.u8[g.kindsAt + first] | 63);
    const next = pageOf(ptrs[perChunk]) - 1;
    expect(next !== first && (next - first) % 64 === 0).toBe(true);
    expect(ptrs.every((p, i) => big.u32[p >> 2] === i + 1)).toBe(true);
    // Free every third one (the last chunk's too), allocate as many again: the freed slots come back.
    const freed = ptrs.filter((_, i) => i % 3 === 0);
    await big.transaction((tx: any) => { for (const p of freed) tx.free(p); });
    const again: number[] = await big.transaction((tx: any) => freed.map(() => tx.alloc(16)));
    expect(new Set(again)).toEqual(new Set(freed));
    expect(checkHeap(big.heap, big)).toEqual([]);
    await big.transaction((tx: any) => { for (const p of ptrs) tx.free(p); });
    expect(checkHeap(big.heap, big)).toEqual([]);
  });

  it("a page server's reading of the models in its stored heap walks 64-page chunks, and reads no heap of another layout", async () => {
    const g = big.heap.geometry;
    await big.transaction((tx: any) => { for (let i = 0; i < 5000; i++) tx.alloc(48); });
    const seq = await big.transaction((tx: any) => tx.alloc(3 * 4096, { model: 'sequential' }));
    // A copy of the heap's tables, as a page server holds them in its store.
    const tables = big.u8.slice(0, g.dataStart * g.pageSize);
    const u32 = new Uint32Array(tables.buffer);
    expect(modelBlocks({ u8: tables, u32 }, g)).toContainEqual({ first: seq / 4096, count: 4, model: 2 });
    u32[SB.version] = 3; // written by an earlier node-dsm, whose chunks were of another size
    expect(modelBlocks({ u8: tables, u32 }, g)).toEqual([]);
  });

  it('allocating and freeing small objects reads no page of the superblock, so no other node\'s chunk take or large allocation dooms it', async () => {
    const addon = load('../../dist/native.js').loadNative();
    const [p, q] = await big.transaction((tx: any) => [tx.alloc(64), tx.alloc(64)]);
    const readsAllocFree: number[] = await big.transaction((tx: any) => {
      tx.free(p);
      tx.alloc(64); // the freed slot again
      tx.free(q);
      return Array.from(addon.readSet());
    });
    expect(readsAllocFree).not.toContain(0);
    expect(checkHeap(big.heap, big)).toEqual([]);
  });
});
