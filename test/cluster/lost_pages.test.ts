// Lost pages are never silent: a page whose latest version died with its only holder is
// decided lost once, by the configuration that removes the dead node, so every survivor
// reports the same loss, nobody serves the page, and a transaction can accept the loss.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, settle } from './harness';

const AT = 3000 * 1024; // a data page (byte offset / 4 = u32 index base below)
const PAGE = 4096;

describe('lost pages', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('every survivor reports the same loss, and tx.discardLost makes the pages new everywhere', async () => {
    // Durability 'none': nobody backs c's commits up. Whole pages are written, so the others'
    // copies are invalidated rather than updated (a diff would keep them current, changes.ts).
    const [a, b, c] = await h.cluster(3, { heartbeatMs: 100, deadAfterMs: 1000, durability: 'none' });
    // c writes two pages nobody else reads, and a third that b reads (b holds a copy).
    await c.run('await dsm.transaction(() => { dsm.u32.fill(11, args.at, args.at + 1024); dsm.u32.fill(22, args.at + 1024, args.at + 2048); dsm.u32.fill(33, args.at + 2048, args.at + 3072); });', { at: AT });
    await settle([a, b, c]);
    expect(await b.run('return dsm.transaction(() => dsm.u32[args.at + 2048]);', { at: AT })).toBe(33);
    const lostPage = (AT * 4) / PAGE;
    c.kill('SIGKILL');
    await a.waitForLine((l) => l === `peer-leave ${c.nodeId}`);
    await b.waitForLine((l) => l === `peer-leave ${c.nodeId}`);
    // Decided once, for everybody: the two pages only c had; the third moved to b.
    for (const n of [a, b]) {
      expect(await n.run('return dsm.lostPages();')).toEqual([{ ptr: lostPage * PAGE, length: 2 * PAGE }]);
      const code = await n.run('try { await dsm.transaction(() => dsm.u32[args.at + 1024]); return "read"; } catch (e) { return e.code; }', { at: AT });
      expect(code).toBe('ERR_DSM_PAGE_LOST');
      // Writes too, and no retries: the promise rejects at once.
      const w = await n.run('try { await dsm.transaction(() => { dsm.u32[args.at] = 1; }); return "wrote"; } catch (e) { return e.code; }', { at: AT });
      expect(w).toBe('ERR_DSM_PAGE_LOST');
      expect(await n.run('return dsm.transaction(() => dsm.u32[args.at + 2048]);', { at: AT })).toBe(33);
    }
    // a accepts the loss of the first page only; the pages start from zero.
    await a.run('await dsm.transaction((tx) => { tx.discardLost(args.ptr, 4096); dsm.u32[args.at] = 7; });', { ptr: lostPage * PAGE, at: AT });
    await settle([a, b]);
    for (const n of [a, b]) {
      expect(await n.run('return dsm.lostPages();')).toEqual([{ ptr: (lostPage + 1) * PAGE, length: PAGE }]);
      expect(await n.run('return dsm.transaction(() => [dsm.u32[args.at], dsm.u32[args.at + 1]]);', { at: AT })).toEqual([7, 0]);
    }
    // A node that joins now is told of the loss too.
    const d = await h.start({ peers: [a.address], heartbeatMs: 100, deadAfterMs: 1000 });
    expect(await d.run('return dsm.lostPages();')).toEqual([{ ptr: (lostPage + 1) * PAGE, length: PAGE }]);
    expect(await d.run('try { await dsm.transaction(() => dsm.u32[args.at + 1024]); return "read"; } catch (e) { return e.code; }', { at: AT })).toBe('ERR_DSM_PAGE_LOST');
    expect(await d.run('return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })).toBe(7);
  });

  it('of two nodes, the higher alone stops committing (ERR_DSM_PARTITIONED)', async () => {
    const [a, b] = await h.cluster(2, { heartbeatMs: 100, deadAfterMs: 1000 });
    await b.run('await dsm.transaction(() => { dsm.u32[args.at] = 5; });', { at: AT });
    await settle([a, b]);
    a.kill('SIGKILL');
    // Not a quorum (one of two voters, not the lowest): once its lease has run out, every
    // transaction is refused, reads outside transactions still work, and nothing it tries
    // is committed.
    await b.run(`
      for (;;) {
        try { await dsm.transaction(() => dsm.u32[args.at]); } catch (e) { if (e.code === 'ERR_DSM_PARTITIONED') return; throw e; }
        await new Promise((r) => setTimeout(r, 50));
      }`, { at: AT });
    const before = await b.run<number>('return dsm.globalTime;');
    const codes = await b.run<string[]>(`
      const out = [];
      for (const fn of [() => { dsm.u32[args.at] = 6; }, () => dsm.u32[args.at]]) {
        try { await dsm.transaction(fn); out.push('ok'); } catch (e) { out.push(e.code); }
      }
      return out;`, { at: AT });
    expect(codes).toEqual(['ERR_DSM_PARTITIONED', 'ERR_DSM_PARTITIONED']);
    expect(await b.run('return dsm.u32[args.at];', { at: AT })).toBe(5);
    expect(await b.run<number>('return dsm.globalTime;')).toBe(before);
  });

  it('of two nodes, the lower goes on alone when the higher dies', async () => {
    const [a, b] = await h.cluster(2, { heartbeatMs: 100, deadAfterMs: 1000 });
    await b.run('await dsm.transaction(() => { dsm.u32[args.at] = 5; });', { at: AT });
    await settle([a, b]);
    b.kill('SIGKILL');
    await a.waitForLine((l) => l === `peer-leave ${b.nodeId}`);
    await a.run('await dsm.transaction(() => { dsm.u32[args.at + 4096] = 9; });', { at: AT });
    expect(await a.run('return dsm.transaction(() => dsm.u32[args.at + 4096]);', { at: AT })).toBe(9);
  });
});
