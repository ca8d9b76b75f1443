// Unknown option keys are refused with ERR_DSM_INVALID_OPTION naming the key and the
// accepted ones, rather than silently ignored.
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
const load = createRequire(__filename);
const { createNode } = load('../..');

let dsm: any;
beforeAll(async () => {
  dsm = await createNode({ regionSize: 16 << 20 });
});
afterAll(() => dsm.close());

describe('option keys', () => {
  it('tx.alloc refuses unknown keys and non-object options; nothing is allocated', async () => {
    const err = await dsm.transaction((tx: any) => tx.alloc(16, { colour: 'x' })).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_DSM_INVALID_OPTION' });
    expect(err.message).toMatch(/tx.alloc: unknown option "colour"; it takes "kind", "model"/);
    await expect(dsm.transaction((tx: any) => tx.alloc(16, { model: 'x' }))).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION', message: /model must be one of transactional, local, sequential, got x/ });
    await expect(dsm.transaction((tx: any) => tx.alloc(16, 'readMostly'))).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION', message: /options must be an object, got string/ });
    await expect(dsm.transaction((tx: any) => tx.alloc(16, null))).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION' });
    expect(await dsm.transaction((tx: any) => tx.alloc(16, { kind: 'private' }))).toBeGreaterThan(0);
  });

  it('dsm.transaction refuses unknown keys and a bad maxRetries before running the function', async () => {
    let ran = false;
    const fn = () => {
      ran = true;
    };
    const err = await dsm.transaction(fn, { retries: 3 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_DSM_INVALID_OPTION' });
    expect(err.message).toMatch(/dsm.transaction: unknown option "retries"; it takes "maxRetries"/);
    await expect(dsm.transaction(fn, { maxRetries: -1 })).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION', message: /maxRetries/ });
    await expect(dsm.transaction(fn, { maxRetries: 'many' })).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION' });
    expect(ran).toBe(false);
    await dsm.transaction(fn, { maxRetries: 3 });
    expect(ran).toBe(true);
  });

  it('createNode names the unknown key and the known ones', async () => {
    const err = await createNode({ regionSize: 16 << 20, colour: 'red' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_DSM_INVALID_OPTION' });
    expect(err.message).toMatch(/unknown option "colour"; known options: regionSize, .*secret/);
  });

  it('createNode refuses a tokenBatchMs that is not 0..100 ms, saying what it takes', async () => {
    for (const bad of [-1, 101, Number.NaN, '1']) {
      const err = await createNode({ regionSize: 16 << 20, tokenBatchMs: bad }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'ERR_DSM_INVALID_OPTION' });
      expect(err.message).toMatch(/tokenBatchMs must be a number of milliseconds from 0 .* to 100/);
    }
  });

  it("refuses durability 'disk' on a node without a network, where no page server could ever join", async () => {
    const err = await createNode({ regionSize: 16 << 20, durability: 'disk' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_DSM_INVALID_OPTION', message: expect.stringContaining("durability 'disk' waits for a page server") });
  });

  it("tokenBatchMs defaults to 1 ms with durability 'none' and to 0 (pass at once) otherwise", () => {
    const { resolveOptions } = load('../../dist/options.js');
    const net = { listen: '127.0.0.1:0', secret: 's' };
    expect(resolveOptions({ ...net, durability: 'none' }).cluster.tokenBatchMs).toBe(1);
    expect(resolveOptions({ ...net, durability: 'none', tokenBatchMs: 0 }).cluster.tokenBatchMs).toBe(0);
    expect(resolveOptions({ ...net }).cluster.tokenBatchMs).toBe(0);
    expect(resolveOptions({ ...net, durability: 'disk' }).cluster.tokenBatchMs).toBe(0);
  });
});
