// Lock state lives in one directory under a single root: any number of names, each on a
// page of its own, and the program keeps the other root names. (Barriers keep no state in
// the heap: they are messages between the service threads.)
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
const load = createRequire(__filename);
const { createNode } = load('../..');
const { checkHeap } = load('../../dist/alloc/check.js');
const { syncNamesIn } = load('../../dist/sync/directory.js');

let dsm: any;
beforeAll(async () => {
  dsm = await createNode({ regionSize: 16 << 20 });
});
afterAll(() => dsm.close());

describe('lock directory', () => {
  it('holds 150 names past one directory page, each state on its own page, using one root', async () => {
    for (let i = 0; i < 150; i++) await (await dsm.lock(`l${i}`))();
    // A barrier of one party passes at once, and takes no directory entry.
    await dsm.barrier('b0', 1);
    const ptrs = await Promise.all(Array.from({ length: 150 }, (_, i) => dsm._syncState('lock', `l${i}`)));
    expect(new Set(ptrs.map((p: number) => Math.floor(p / dsm.pageSize))).size).toBe(150);
    // The same name gives the same object, in a fresh lookup too.
    expect(await dsm._syncState('lock', 'l7')).toBe(ptrs[7]);
    // The false-sharing monitor names the lock a page holds.
    const dir = dsm.root('\0sync');
    expect(syncNamesIn(dsm.u8, dsm.u32, dir, ptrs[7], ptrs[7] + dsm.pageSize)).toEqual(['lock l7']);
    expect(syncNamesIn(dsm.u8, dsm.u32, dir, ptrs[148], ptrs[148] + 1)).toEqual(['lock l148']);
    // 63 more roots fit (64 in all, one of them the directory's).
    await dsm.transaction((tx: any) => { for (let i = 0; i < 63; i++) tx.setRoot(`r${i}`, 4096 * 100); });
    expect(dsm.root('r62')).toBe(4096 * 100);
    expect(await dsm.transaction(() => checkHeap(dsm.heap, dsm))).toEqual([]);
  });

  it('refuses empty and overlong names', async () => {
    await expect(dsm.lock('')).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION', message: /got an empty string/ });
    await expect(dsm.barrier(7 as any, 2)).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION', message: /got number 7/ });
    await expect(dsm.barrier('x'.repeat(55), 1)).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION', message: /at most 54 UTF-8 bytes/ });
    await expect(dsm.barrier('y', 0)).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION' });
  });
});
