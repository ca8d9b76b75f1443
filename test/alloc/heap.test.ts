// The shared heap on one node: alloc/free in transactions, rollback, reuse, roots, errors,
// and a randomised workload checked by walking the whole heap.
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
const load = createRequire(__filename);
const { createNode } = load('../..');
const { checkHeap } = load('../../dist/alloc/check.js');

let dsm: any;
beforeAll(async () => {
  dsm = await createNode({ regionSize: 32 << 20 });
});
afterAll(() => dsm.close());
const check = () => expect(checkHeap(dsm.heap, dsm)).toEqual([]);
const snapshot = () => Buffer.from(dsm.u8.subarray(0, 64 * 4096)); // superblock, roots, page kinds

describe('heap', () => {
  it('allocations are zeroed, large objects page-aligned, freed memory reused', async () => {
    const [a, b, big] = await dsm.transaction((tx: any) => [tx.alloc(24), tx.alloc(3000), tx.alloc(20_000)]);
    expect(big % dsm.pageSize).toBe(0);
    expect(Math.floor(a / dsm.pageSize)).not.toBe(Math.floor(big / dsm.pageSize));
    await dsm.transaction((tx: any) => {
      dsm.u8.fill(0xee, a, a + 24);
      tx.free(a);
    });
    const again = await dsm.transaction((tx: any) => tx.alloc(20));
    expect(again).toBe(a);
    expect(Array.from(dsm.u8.subarray(again, again + 20)).every((x) => x === 0)).toBe(true);
    await dsm.transaction((tx: any) => {
      tx.free(b);
      tx.free(big);
      tx.free(again);
    });
    check();
  });

  it('an aborted transaction takes its allocations and frees with it', async () => {
    const keep = await dsm.transaction((tx: any) => tx.alloc(100));
    const before = snapshot();
    await expect(
      dsm.transaction((tx: any) => {
        for (let i = 0; i < 200; i++) tx.alloc(i * 37 + 1);
        tx.free(keep);
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect(snapshot().equals(before)).toBe(true);
    check();
  });

  it('double free, foreign pointers and exhaustion raise DsmErrors and leave the heap intact', async () => {
    const p = await dsm.transaction((tx: any) => tx.alloc(64));
    await dsm.transaction((tx: any) => tx.free(p));
    await expect(dsm.transaction((tx: any) => tx.free(p))).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_FREE' });
    await expect(dsm.transaction((tx: any) => tx.free(p + 4))).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_FREE' });
    await expect(dsm.transaction((tx: any) => tx.free(12))).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_FREE' });
    for (const bad of [0, -8, 1.5, Number.NaN, '64']) {
      await expect(dsm.transaction((tx: any) => tx.alloc(bad))).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION' });
    }
    // A string that reads as a number is named as a string.
    await expect(dsm.transaction((tx: any) => tx.alloc('64'))).rejects.toThrow('got string "64"');
    await expect(dsm.transaction((tx: any) => tx.alloc(64, { kind: 'bogus' }))).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION' });
    const before = snapshot();
    await expect(dsm.transaction((tx: any) => tx.alloc(64 << 20))).rejects.toMatchObject({ code: 'ERR_DSM_OUT_OF_MEMORY' });
    await expect(
      dsm.transaction((tx: any) => {
        for (;;) tx.alloc(1 << 20);
      }),
    ).rejects.toMatchObject({ code: 'ERR_DSM_OUT_OF_MEMORY' });
    expect(snapshot().equals(before)).toBe(true);
    check();
  });

  it('named roots: set, read anywhere, overwrite, remove, long names refused', async () => {
    expect(dsm.root('accounts')).toBeUndefined();
    const p = await dsm.transaction((tx: any) => {
      const q = tx.alloc(800);
      tx.setRoot('accounts', q);
      tx.setRoot('ünïcödé', q + 8);
      return q;
    });
    expect(dsm.root('accounts')).toBe(p);
    expect(dsm.root('ünïcödé')).toBe(p + 8);
    await dsm.transaction((tx: any) => tx.setRoot('accounts', 0));
    expect(dsm.root('accounts')).toBeUndefined();
    await expect(dsm.transaction((tx: any) => tx.setRoot('x'.repeat(57), p))).rejects.toMatchObject({ code: 'ERR_DSM_ROOT' });
    // A name is a string: a number is refused, not looked up as its text.
    await dsm.transaction((tx: any) => tx.setRoot('123', p));
    expect(() => dsm.root(123 as any)).toThrow(expect.objectContaining({ code: 'ERR_DSM_ROOT', message: 'a root name is a string, got number' }));
    expect(() => dsm.root('x'.repeat(57))).toThrow(expect.objectContaining({ code: 'ERR_DSM_ROOT' }));
    expect(dsm.root('123')).toBe(p);
  });

  it('a random allocate/free/abort workload keeps the heap consistent', async () => {
    const live: number[] = [];
    const sizes = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.record({ op: fc.constant('alloc'), size: fc.integer({ min: 1, max: 40_000 }) }), fc.record({ op: fc.constant('free'), i: fc.nat() })), { maxLength: 30 }),
        fc.boolean(),
        async (ops, abort) => {
          const freed: number[] = [];
          const made: [number, number][] = [];
          await dsm
            .transaction((tx: any) => {
              for (const o of ops) {
                if (o.op === 'alloc') {
                  const p = tx.alloc(o.size, o.size % 3 === 0 ? { kind: 'readMostly' } : undefined);
                  // Zeroed, and no other live object overlaps it: fill it and check the fill later.
                  expect(dsm.u8.subarray(p, p + o.size).every((x: number) => x === 0)).toBe(true);
                  dsm.u8.fill(p & 0xff || 1, p, p + o.size);
                  made.push([p, o.size]);
                } else if (live.length) {
                  const [p] = live.splice(o.i % live.length, 1);
                  freed.push(p);
                  tx.free(p);
                }
              }
              if (abort) throw new Error('abort');
            })
            .catch((e: Error) => {
              if (e.message !== 'abort') throw e;
              live.push(...freed); // the frees were undone
              made.length = 0;
            });
          for (const [p, size] of made) {
            live.push(p);
            sizes.set(p, size);
          }
          for (const p of live) expect(dsm.u8.subarray(p, p + sizes.get(p)!).every((x: number) => x === (p & 0xff || 1))).toBe(true);
          expect(checkHeap(dsm.heap, dsm)).toEqual([]);
        },
      ),
      { numRuns: 60, seed: 7 },
    );
  });

});
