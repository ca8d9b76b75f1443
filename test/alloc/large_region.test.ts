// The largest region (4 GiB): the heap hands out addresses past 2 GiB, where a signed shift
// would turn them negative; allocation, views, roots, frees and the checker all take them.
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
const load = createRequire(__filename);
const { createNode } = load('../..');
const { checkHeap } = load('../../dist/alloc/check.js');

let dsm: any;
beforeAll(async () => {
  dsm = await createNode({ regionSize: 4 * 2 ** 30 });
});
afterAll(() => dsm.close());

describe('a 4 GiB region', () => {
  it('objects at addresses past 2 GiB are written, read, named and freed', async () => {
    const [small, big] = await dsm.transaction((tx: any) => {
      const a = tx.alloc(64);
      dsm.u32[(a >>> 2) + 3] = 7;
      tx.setRoot('small', a);
      const b = tx.alloc(3 << 20);
      dsm.view(Float64Array, b, (3 << 20) / 8)[1000] = 1.5;
      return [a, b];
    });
    expect(Math.max(small, big)).toBeGreaterThanOrEqual(2 ** 31);
    expect(dsm.view(Uint32Array, small, 16)[3]).toBe(7);
    expect(dsm.root('small')).toBe(small);
    expect(dsm.f64[(big >>> 3) + 1000]).toBe(1.5);
    await dsm.transaction((tx: any) => {
      tx.free(small);
      tx.free(big);
      tx.setRoot('small', 0);
    });
    expect(checkHeap(dsm.heap, dsm)).toEqual([]);
  });
});
