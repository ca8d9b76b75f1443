// dsm.view(Type, ptr, length): typed arrays over objects in the shared region, and clear
// ERR_DSM_INVALID_OPTION errors for what cannot be one.
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
const load = createRequire(__filename);
const { createNode } = load('../..');

const REGION = 16 << 20;
let dsm: any;
beforeAll(async () => {
  dsm = await createNode({ regionSize: REGION });
});
afterAll(() => dsm.close());

describe('dsm.view', () => {
  it('is a typed array over the object: writes in transactions land in the region, reads see them', async () => {
    const p = await dsm.transaction((tx: any) => tx.alloc(64));
    await dsm.transaction(() => {
      const f = dsm.view(Float64Array, p, 4);
      expect(f).toBeInstanceOf(Float64Array);
      expect(f.length).toBe(4);
      f[1] = Math.PI;
      f[3] += 2.5;
      dsm.view(BigUint64Array, p + 16, 1)[0] = 2n ** 63n;
    });
    expect(dsm.f64[p / 8 + 1]).toBe(Math.PI);
    expect(dsm.view(Float64Array, p + 24)[0]).toBe(2.5); // length defaults to 1
    expect(dsm.view(BigUint64Array, p + 16)[0]).toBe(2n ** 63n);
    expect(dsm.view(Uint8Array, p + 1, 63).byteOffset).toBe(p + 1);
    // A write through a view outside a transaction is rolled back like any other.
    dsm.view(Uint32Array, p)[0] = 1;
    expect(() => dsm.stats()).toThrow(expect.objectContaining({ code: 'ERR_DSM_WRITE_OUTSIDE_TRANSACTION' }));
    expect(dsm.view(Uint32Array, p)[0]).toBe(0);
  });

  it('refuses what cannot be a view, saying why', async () => {
    const p = await dsm.transaction((tx: any) => tx.alloc(32));
    const bad: Array<[unknown[], RegExp]> = [
      [[Array, p, 1], /typed array class.*got Array/],
      [['Uint8Array', p, 1], /typed array class/],
      [[DataView, p, 1], /typed array class.*got DataView/],
      [[Float64Array, p + 4, 1], /not a multiple of 8, as a Float64Array needs/],
      [[Uint32Array, p + 2, 1], /not a multiple of 4/],
      [[Uint32Array, REGION - 4, 2], /past the region/],
      [[Uint8Array, REGION, 1], /past the region/],
      [[Uint8Array, 0, 1], /positive byte offset/],
      [[Uint8Array, undefined, 1], /dsm.root\(\) returns undefined/],
      [[Uint8Array, -8, 1], /positive byte offset/],
      [[Uint8Array, 1.5, 1], /positive byte offset/],
      [[Uint8Array, p, 0], /length must be a positive whole number/],
      [[Uint8Array, p, 2.5], /length must be a positive whole number/],
      [[Uint8Array, 4096, 4], /inside the heap's own tables/],
    ];
    for (const [args, message] of bad) {
      let err: any;
      try {
        dsm.view(...args);
      } catch (e) {
        err = e;
      }
      expect(err, String(args[0] && (args[0] as any).name) + ' ' + String(args[1])).toMatchObject({ code: 'ERR_DSM_INVALID_OPTION' });
      expect(err.message).toMatch(message);
    }
  });
});
