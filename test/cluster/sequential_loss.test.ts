// A sequential page lost with its owner (no copy left anywhere) is lost for the whole
// cluster, as a transactional page is: every node lists it, each node's first touch raises
// ERR_DSM_PAGE_LOST, a node that joins later knows it, and a discard makes it new everywhere.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, settle, until } from './harness';

const touch = `const v = dsm.u32[args.at]; try { dsm.stats(); return { v }; } catch (e) { return { v, code: e.code }; }`;
const lostRanges = (n: RemoteNode) => n.run<Array<{ ptr: number; length: number }>>('return dsm.lostPages();');

describe('sequential pages lost with their owner', () => {
  const h = new Harness();
  afterEach(() => h.close());

  /** Three nodes; c takes a page of `model` (no copy stays anywhere) and dies with it; a's touch then finds neither owner nor copy. */
  async function lostPage(model: string) {
    const [a, b, c] = await h.cluster(3, { heartbeatMs: 100, deadAfterMs: 1000, durability: 'none' });
    const ptr = await a.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4096, { model: '${model}' }); tx.setRoot('fragile', p); return p; });`);
    await settle([a, b, c]);
    const at = ptr / 4;
    await c.run('dsm.u32[args.at] = 9;', { at });
    c.kill('SIGKILL');
    for (const n of [a, b]) await n.waitForLine((l) => l === `peer-leave ${c.nodeId}`);
    expect(await a.run(touch, { at })).toEqual({ v: 0, code: 'ERR_DSM_PAGE_LOST' });
    return { a, b, ptr, at };
  }

  it.each(['sequential', 'migratory'])('a lost %s page is listed and reported on every node, known to a joiner, and made new everywhere by a discard', async (model) => {
    const { a, b, ptr, at } = await lostPage(model);
    expect(await lostRanges(a)).toEqual([{ ptr, length: 4096 }]);
    // b never touched it, and knows too. (Before, b read a's zeros as the page, with no error, and listed nothing.)
    expect(await until('b lists the lost page', 30_000, async () => ((await lostRanges(b)).length > 0 ? lostRanges(b) : undefined))).toEqual([{ ptr, length: 4096 }]);
    expect(await b.run(touch, { at })).toEqual({ v: 0, code: 'ERR_DSM_PAGE_LOST' });
    // A write to it goes nowhere: the zero page a touch made is the toucher's alone.
    await b.run('dsm.u32[args.at] = 77;', { at });
    expect(await a.run(touch, { at })).toEqual({ v: 0 });

    // A node that joins later knows the loss.
    const d = await h.start({ peers: [b.address], heartbeatMs: 100, deadAfterMs: 1000, durability: 'none' });
    expect(await lostRanges(d)).toEqual([{ ptr, length: 4096 }]);
    expect(await d.run(touch, { at })).toEqual({ v: 0, code: 'ERR_DSM_PAGE_LOST' });

    // b accepts the loss: the page starts from zero, owned by b, on every node.
    const t = await b.run<number>('await dsm.transaction((tx) => tx.discardLost(args.ptr, 4096)); dsm.u32[args.at + 1] = 11; return dsm.globalTime;', { ptr, at });
    for (const n of [a, d]) await n.run('await dsm.waitForGlobalTime(args.t);', { t });
    for (const n of [a, b, d]) {
      expect(await lostRanges(n)).toEqual([]);
      expect(await n.run('const v = [dsm.u32[args.at], dsm.u32[args.at + 1]]; dsm.stats(); return v;', { at })).toEqual([0, 11]);
    }
    // And it is one page again: a write on one node is read on the others.
    await d.run('dsm.u32[args.at] = 12;', { at });
    for (const n of [a, b, d]) expect(await n.run('return dsm.u32[args.at];', { at })).toBe(12);
  });

  it('two nodes discarding a lost page at once: one owns it, and neither loses a write made after its discard', async () => {
    const { a, b, ptr, at } = await lostPage('sequential');
    await until('b lists the lost page', 30_000, async () => ((await lostRanges(b)).length > 0 ? true : undefined));
    // Each discards and writes its own word at once. Had both become owners, each would read
    // only its own word (two pages where there is one), or a later model change would drop
    // the first owner's page with its write.
    const discardAndWrite = 'await dsm.transaction((tx) => tx.discardLost(args.ptr, 4096)); dsm.u32[args.at + args.k] = args.k + 1; return dsm.globalTime;';
    const times = await Promise.all([a.run<number>(discardAndWrite, { ptr, at, k: 1 }), b.run<number>(discardAndWrite, { ptr, at, k: 2 })]);
    await settle([a, b]);
    for (const n of [a, b]) {
      expect(await n.run('await dsm.waitForGlobalTime(args.t); return [dsm.u32[args.at + 1], dsm.u32[args.at + 2]];', { at, t: Math.max(...times) })).toEqual([2, 3]);
      expect(await lostRanges(n)).toEqual([]);
    }
  });

  it("a member whose owner hint names another live member lists the loss too, and its discard makes the page new everywhere", async () => {
    // a allocates a migratory page (every hint names a); c takes it and dies with it. d's
    // touch asks a, whose hint names c, and d's search finds no copy: d tells everyone. b's
    // hint still names a, alive and not the announcer: b took that for a sign the page had
    // been made new at a, never listed the loss, and its discard left the page alone while
    // the nodes that had been told wrote to zero pages of their own.
    const [a, b, c, d] = await h.cluster(4, { heartbeatMs: 100, deadAfterMs: 1000, durability: 'none' });
    const ptr = await a.run<number>(`return dsm.transaction((tx) => tx.alloc(4096, { model: 'migratory' }));`);
    await settle([a, b, c, d]);
    const at = ptr / 4;
    await c.run('dsm.u32[args.at] = 9;', { at });
    c.kill('SIGKILL');
    for (const n of [a, b, d]) await n.waitForLine((l) => l === `peer-leave ${c.nodeId}`);
    expect(await d.run(touch, { at })).toEqual({ v: 0, code: 'ERR_DSM_PAGE_LOST' });
    expect(await until('b lists the lost page', 30_000, async () => ((await lostRanges(b)).length > 0 ? lostRanges(b) : undefined))).toEqual([{ ptr, length: 4096 }]);
    const t = await b.run<number>('await dsm.transaction((tx) => tx.discardLost(args.ptr, 4096)); return dsm.globalTime;', { ptr });
    for (const n of [a, d]) await n.run('await dsm.waitForGlobalTime(args.t);', { t });
    // d, told first, writes after the discard: every node reads it (before, d wrote to its own zero page).
    await d.run('dsm.u32[args.at] = 13;', { at });
    for (const n of [a, b, d]) {
      expect(await n.run('const v = dsm.u32[args.at]; dsm.stats(); return v;', { at })).toBe(13);
      expect(await lostRanges(n)).toEqual([]);
    }
  });
});
