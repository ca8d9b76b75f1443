// A commit's model changes (blocks allocated outside transactional consistency) reach every
// member with the commit, however the commit gets there: from its committer, re-sent by
// another member to one that missed it, or from a backup after the committer died. Before,
// they went ahead of the commit in a message of their own that no one kept, so a member that
// got the commit any other way took the block's pages for transactional ones.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, SECRET, settle, takeToken, until } from './harness';
import { fetchStats } from '../../lib/service/stats_client';

const opts = { heartbeatMs: 100, deadAfterMs: 1000, durability: 'none' };

describe("a commit's model changes", () => {
  const h = new Harness();
  afterEach(() => h.close());

  /** a, b and c, where a's commits never reach c directly (a test hook), as if each were lost on the way. */
  async function cutOff(): Promise<[RemoteNode, RemoteNode, RemoteNode]> {
    // Ids are given in joining order: the founder is 0, c is 2.
    process.env.DSM_TEST_COMMITS_NOT_TO = '2';
    let a: RemoteNode;
    try {
      a = await h.start(opts);
    } finally {
      delete process.env.DSM_TEST_COMMITS_NOT_TO;
    }
    const b = await h.start({ ...opts, peers: [a.address] });
    const c = await h.start({ ...opts, peers: [a.address] });
    expect([a.nodeId, b.nodeId, c.nodeId]).toEqual([0, 1, 2]);
    return [a, b, c];
  }

  it('arrive with a commit re-sent to a member that missed it', async () => {
    const [a, b, c] = await cutOff();
    const ptr = await a.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4096, { model: 'sequential' }); tx.setRoot('seq', p); return p; });`);
    const at = ptr / 4;
    await a.run('dsm.u32[args.at] = 9;', { at });
    // c learns of a's commit from a re-send only (it hears of a later time and asks).
    await settle([a, b, c]);
    // A sequential page is written outside transactions, and the write is seen everywhere.
    // On a member that took it for transactional, the read was a zero page of its own and the
    // write went nowhere.
    expect(await c.run('return dsm.u32[args.at];', { at })).toBe(9);
    await c.run('dsm.u32[args.at + 1] = 10;', { at });
    for (const n of [a, b, c]) expect(await n.run('return [dsm.u32[args.at], dsm.u32[args.at + 1]];', { at })).toEqual([9, 10]);
  });

  it('arrive with a commit a survivor holds after its committer died', async () => {
    const [a, b, c] = await cutOff();
    // b has a's commit and c does not when a dies: c gets it in the recovery, from b.
    const t = await a.run<number>(`await dsm.transaction((tx) => tx.setRoot('seq', tx.alloc(4096, { model: 'sequential' }))); return dsm.globalTime;`);
    await b.run('await dsm.waitForGlobalTime(args.t);', { t });
    const ptr = await b.run<number>(`return dsm.root('seq');`);
    a.kill('SIGKILL');
    for (const n of [b, c]) await n.waitForLine((l) => l === `peer-leave ${a.nodeId}`);
    await c.run('await dsm.waitForGlobalTime(args.t);', { t });
    // The block's pages died with a, their only holder: lost on both survivors alike. c,
    // taking them for transactional pages, read zeros with no error.
    const touch = `const v = dsm.u32[args.at]; try { dsm.stats(); return { v }; } catch (e) { return { v, code: e.code }; }`;
    for (const n of [c, b]) expect(await n.run(touch, { at: ptr / 4 })).toEqual({ v: 0, code: 'ERR_DSM_PAGE_LOST' });
    // Listed as lost on both (beside the transactional pages only a held: durability 'none').
    for (const n of [b, c]) {
      await until('the block is listed lost', 30_000, async () => {
        const lost = await n.run<Array<{ ptr: number; length: number }>>('return dsm.lostPages();');
        return lost.some((r) => r.ptr <= ptr && ptr < r.ptr + r.length) ? true : undefined;
      });
    }
  });

  it('arrive before a sequential page the committer wrote after them: a pointer read from it finds the block\'s model', async () => {
    // b's lent-token commits wait 3 s before they go out (a test hook), unless something
    // sends them sooner. b allocates a sequential block, writes a transactional word, and
    // then writes the block's pointer into a sequential page outside transactions. a reads
    // the page (from b) and writes into the block, and reads the word: b's commit must reach
    // a before the page does. Before, the page came first: a took the block for transactional
    // pages, and its write was a write outside a transaction (rolled back, with an error).
    const a = await h.start({ durability: 'none' });
    process.env.DSM_TEST_DRAIN_MS = '3000';
    let b: RemoteNode;
    try {
      b = await h.start({ durability: 'none', peers: [a.address] });
    } finally {
      delete process.env.DSM_TEST_DRAIN_MS;
    }
    const { flag, word } = await a.run<{ flag: number; word: number }>(`return dsm.transaction((tx) => ({ flag: tx.alloc(4096, { model: 'sequential' }), word: tx.alloc(8) }));`);
    await settle([a, b]);
    // b takes the token (its next commits use it lent, on its app thread) and the flag page.
    await b.run('await dsm.transaction(() => { dsm.u32[args.word / 4] = 1; });', { word });
    await b.run('dsm.u32[args.flag / 4] = 0;', { flag });
    const tb = await b.run<number>(
      `const p = await dsm.transaction((tx) => { dsm.u32[args.word / 4] = 42; return tx.alloc(4096, { model: 'sequential' }); });
       dsm.u32[args.flag / 4] = p;
       return dsm.globalTime;`,
      { flag, word },
    );
    // The commit is still waiting on b.
    expect(await a.run<number>('return dsm.globalTime;')).toBeLessThan(tb);
    const got = await a.run<{ code?: string; word: number }>(
      `const p = dsm.u32[args.flag / 4];
       dsm.u32[p / 4 + 5] = 7;
       try { dsm.stats(); } catch (e) { return { code: e.code, word: 0 }; }
       return { word: await dsm.transaction(() => dsm.u32[args.word / 4]) };`,
      { flag, word },
    );
    expect(got).toEqual({ word: 42 });
    const p = await b.run<number>('return dsm.u32[args.flag / 4];', { flag });
    expect(await b.run('return dsm.u32[args.p / 4 + 5];', { p })).toBe(7);
  });

  it('of a block freed and allocated again in one commit take effect in order on every node', async () => {
    // The commit names the block's pages twice, freed (transactional) then allocated
    // (sequential), both at its time: a member that took one change per page and time kept
    // them transactional, and a write outside a transaction went nowhere (examples/kernels).
    const [a, b] = await h.cluster(2, { durability: 'none' });
    const first = await a.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4 * 4096, { model: 'migratory' }); tx.setRoot('block', p); return p; });`);
    const again = await a.run<number>(`return dsm.transaction((tx) => { tx.free(dsm.root('block')); const p = tx.alloc(4 * 4096, { model: 'sequential' }); tx.setRoot('block', p); return p; });`);
    expect(again).toBe(first);
    await settle([a, b]);
    await b.run('dsm.u32[args.at] = 5;', { at: again / 4 + 3 });
    await a.run('dsm.u32[args.at] = 6;', { at: again / 4 + 1024 + 3 });
    for (const n of [a, b]) expect(await n.run('return [dsm.u32[args.at], dsm.u32[args.at + 1024]];', { at: again / 4 + 3 })).toEqual([5, 6]);
  });
  it("of a sequential block freed while another node's fault on it is still asked of its owner end that fault", async () => {
    // The request of c's fault goes along the owner hints a -> b -> d; b is stopped, so it
    // waits there while a frees the block. When b runs again it forwards the request to d,
    // which has freed the block too: a transactional page it holds itself, which no request
    // of the sequential protocol reaches any more. Before, c's fault waited for good, and so
    // did the search it made after 1 s (d never answered it either); now the model change
    // ends it when the free reaches c, and c reads the freed block's zeros.
    await h.within(90_000, async (step) => {
      step('starting four nodes');
      // b stays a member while stopped: nothing here is about its failure.
      const [a, b, c, d] = await h.cluster(4, { durability: 'none', deadAfterMs: 60_000 });
      const { ptr, word } = await a.run<{ ptr: number; word: number }>(
        `return dsm.transaction((tx) => { const ptr = tx.alloc(4096, { model: 'sequential' }); tx.setRoot('seq', ptr); return { ptr, word: tx.alloc(8) }; });`,
      );
      const at = ptr / 4;
      await settle([a, b, c, d]);
      step('moving the page a -> b -> d');
      // Every node's hint names a, the allocator. b takes the page from a (a's hint: b), and d
      // asks a, which forwards to b, which hands it on (b's hint: d). c's hint still names a.
      await b.run('dsm.u32[args.at] = 1;', { at });
      await d.run('dsm.u32[args.at] = 2;', { at });
      // a frees the block while b is stopped: it holds the token and the heap's pages.
      await takeToken(a, word);
      await settle([a, b, c, d]);
      const forwarded = async () => (await a.run<{ sequential: { forwarded: number } }>('return dsm.clusterStats();')).sequential.forwarded;
      const before = await forwarded();

      step("stopping b and faulting on the page on c");
      await b.stop();
      let resumed = false;
      try {
        const read = c.run<number>('return dsm.u32[args.at];', { at });
        await until("c's request forwarded by a to b", 20_000, async () => ((await forwarded()) > before ? true : undefined));
        step('freeing the block on a');
        const t = await a.run<number>('await dsm.transaction((tx) => tx.free(dsm.root("seq"))); return dsm.globalTime;');
        await d.run('await dsm.waitForGlobalTime(args.t);', { t });
        b.kill('SIGCONT');
        resumed = true;
        step("waiting for c's fault to end");
        expect(await read).toBe(0);
        await settle([a, b, c, d]);
        // Freed memory is zero everywhere, and a transactional page again.
        for (const n of [a, b, c, d]) expect(await n.run('return dsm.transaction(() => dsm.u32[args.at]);', { at })).toBe(0);
        // d dropped the request b forwarded to it: before, d forwarded it to itself, where it
        // waited in the queue of a connection that never comes.
        expect(((await fetchStats(d.address, SECRET, 10_000)).protocol as { queuedFor: number[] }).queuedFor).not.toContain(d.nodeId);
      } finally {
        if (!resumed) b.kill('SIGCONT');
      }
    });
  });
});
