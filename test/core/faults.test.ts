// The fault handler under real load: JIT-hot loops, native copies, more protection runs
// than vm.max_map_count allows.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
const load = createRequire(__filename);
const { createNode } = load('../..');

const PAGE = 4096;
let dsm: any;
beforeAll(async () => {
  // 1.6 GB: 400,000 pages, so 200,000 of them can alternate with unread ones.
  dsm = await createNode({ regionSize: 400_000 * PAGE });
});
afterAll(() => dsm.close());

describe('faults', () => {
  it('typed-array reads and writes in JIT-hot loops fault and resolve correctly', async () => {
    const n = 256 * 1024; // 1 MiB of u32s over 256 pages
    const base = (10_000 * PAGE) / 4;
    const hot = (k: number) => {
      for (let i = 0; i < n; i++) dsm.u32[base + i] = (i * k) >>> 0;
    };
    const before = dsm.stats().faults;
    for (let round = 1; round <= 5; round++) await dsm.transaction(() => hot(round));
    let sum = 0;
    await dsm.transaction(() => {
      for (let i = 0; i < n; i++) sum = (sum + dsm.u32[base + i]) >>> 0;
    });
    let want = 0;
    for (let i = 0; i < n; i++) want = (want + ((i * 5) >>> 0)) >>> 0;
    expect(sum).toBe(want);
    const after = dsm.stats().faults;
    expect(after.write - before.write).toBeGreaterThanOrEqual(5 * 256);
    expect(after.read - before.read).toBeGreaterThanOrEqual(256);
  });

  it('native copies (Buffer.copy, TypedArray.set, copyWithin, fill) fault and resolve', async () => {
    const src = Buffer.alloc(64 * PAGE);
    for (let i = 0; i < src.length; i++) src[i] = (i * 31) & 255;
    const at = 20_000 * PAGE;
    const w0 = dsm.stats().faults.write;
    await dsm.transaction(() => {
      dsm.u8.set(src, at);
      Buffer.from(dsm.u8.buffer, at + 64 * PAGE, 64 * PAGE).fill(7);
      dsm.u8.copyWithin(at + 128 * PAGE, at, at + 64 * PAGE);
    });
    expect(dsm.stats().faults.write - w0).toBeGreaterThanOrEqual(192);
    const out = Buffer.alloc(64 * PAGE);
    Buffer.from(dsm.u8.buffer, at + 128 * PAGE, 64 * PAGE).copy(out);
    expect(out.equals(src)).toBe(true);
    expect(dsm.u8[at + 64 * PAGE + 123]).toBe(7);
  });

  it('reading 200,000 pages in an alternating pattern completes (more runs than vm.max_map_count)', async () => {
    const resets0 = dsm.stats().protectionResets;
    let s = 0;
    for (let p = 0; p < 400_000; p += 2) s += dsm.u8[p * PAGE];
    expect(dsm.stats().protectionResets).toBeGreaterThan(resets0);
    // Inside a transaction too: every read is recorded.
    const read = await dsm.transaction((tx: any) => {
      for (let p = 0; p < 400_000; p += 2) s += dsm.u8[p * PAGE + 1];
      return tx.readSet().length;
    });
    expect(read).toBe(200_000);
  });
});
