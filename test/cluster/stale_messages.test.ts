// A sequential page's ownership grant, invalidation or pushed copy that arrives after the
// page's block was freed and allocated again is void: it belongs to the block's earlier life.
// A grant taken in made its receiver a second owner beside the new allocator, holding the
// freed block's contents, and its reads never saw the new owner's writes; an invalidation
// taken in dropped the new allocator's page, its only copy; a push taken in was a read copy
// of the freed block that the new owner never invalidated.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, settle, until, withEnv } from './harness';

const opts = { durability: 'none' };

/** Starts a node that holds the first message of `kind` about each page it receives until the page's model changes again (a test hook). */
const holding = (kind: 'grant' | 'invalidation' | 'push' | 'declaration', start: () => Promise<RemoteNode>) => withEnv({ DSM_TEST_HOLD_SEQUENTIAL: kind }, start);

describe("a sequential page's message from its block's earlier life", () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('an ownership grant arriving after the block was freed and allocated again is dropped: the new owner is the only one', async () => {
    await h.within(90_000, async (step) => {
      step('starting two nodes');
      const b = await h.start(opts);
      // a holds the first ownership grant of each page it receives until the page's model
      // changes again (a test hook): as if the grant had been slow on the way.
      const a = await holding('grant', () => h.start({ ...opts, peers: [b.address] }));
      step('b allocates a sequential block and writes into it');
      const ptr = await b.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4096, { model: 'sequential' }); tx.setRoot('seq', p); return p; });`);
      const at = ptr / 4;
      await b.run('dsm.u32[args.at] = 5;', { at });
      const t0 = await b.run<number>('return dsm.globalTime;');
      await a.run('await dsm.waitForGlobalTime(args.t0);', { t0 });

      step('a asks b for the page; b hands it over, and the grant is held at a');
      await a.run(`globalThis.prefetched = dsm.prefetch(args.ptr, 4096, { write: true });`, { ptr });
      await until('b handing the page over', 30_000, async () => ((await b.run<{ sequential: { ownershipMoves: number } }>('return dsm.clusterStats();')).sequential.ownershipMoves === 1 ? true : undefined));

      step('b frees the block and allocates it again, and a takes those commits in after the grant');
      // The grant went to a before these commits, on the same connection: a receives it
      // first. (Freed and allocated again in one commit, the block keeps its model and its
      // life: nothing changes.)
      await b.run(`await dsm.transaction((tx) => { tx.free(dsm.root('seq')); tx.setRoot('seq', 0); });`);
      // a takes the free in first: it ends a's prefetch (the page is transactional now), so
      // nothing of a's asks for the page again, and only the grant can make a its owner.
      const tFree = await b.run<number>('return dsm.globalTime;');
      await a.run('await dsm.waitForGlobalTime(args.tFree); await globalThis.prefetched;', { tFree });
      const again = await b.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4096, { model: 'sequential' }); tx.setRoot('seq', p); return p; });`);
      expect(again).toBe(ptr);
      const t1 = await b.run<number>('return dsm.globalTime;');
      await a.run('await dsm.waitForGlobalTime(args.t1);', { t1 });

      step('b writes the new block; both nodes read it');
      await b.run('dsm.u32[args.at] = 77;', { at });
      // Before, a owned the page too, with the freed block's 5, and read it for ever.
      for (const n of [a, b]) expect(await n.run('return dsm.u32[args.at];', { at })).toBe(77);
      await a.run('dsm.u32[args.at + 1] = 78;', { at });
      for (const n of [b, a]) expect(await n.run('return [dsm.u32[args.at], dsm.u32[args.at + 1]];', { at })).toEqual([77, 78]);
      // The grant was seen and dropped as stale (not, say, never sent).
      expect((await a.run<{ sequential: { staleReplies: number } }>('return dsm.clusterStats();')).sequential.staleReplies).toBe(1);
    });
  });

  it('an invalidation arriving after the block was freed and allocated again leaves the new owner its page', async () => {
    await h.within(90_000, async (step) => {
      step('starting three nodes');
      const b = await h.start(opts);
      // x holds the first invalidation of each page it receives until the page's model
      // changes again (a test hook).
      const x = await holding('invalidation', () => h.start({ ...opts, peers: [b.address] }));
      const y = await h.start({ ...opts, peers: [b.address] });
      step('b allocates a sequential block and writes into it; x reads it');
      const ptr = await b.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4096, { model: 'sequential' }); tx.setRoot('seq', p); return p; });`);
      const at = ptr / 4;
      await b.run('dsm.u32[args.at] = 5;', { at });
      await settle([b, x, y]);
      expect(await x.run('return dsm.u32[args.at];', { at })).toBe(5);

      step("y asks for the page; b invalidates x's copy, and x holds the invalidation");
      // b waits for x's acknowledgement before it hands the page to y.
      await y.run(`globalThis.prefetched = dsm.prefetch(args.ptr, 4096, { write: true });`, { ptr });
      await until('b invalidating x', 30_000, async () => ((await b.run<{ sequential: { invalidationsSent: number } }>('return dsm.clusterStats();')).sequential.invalidationsSent === 1 ? true : undefined));

      step('x frees the block and allocates it again (its only copy is the new one), then takes the invalidation in');
      await x.run(`await dsm.transaction((tx) => { tx.free(dsm.root('seq')); tx.setRoot('seq', 0); });`);
      const again = await x.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4096, { model: 'sequential' }); tx.setRoot('seq', p); return p; });`);
      expect(again).toBe(ptr);
      await x.run('dsm.u32[args.at] = 77;', { at });
      // The held invalidation is taken in once the allocation is (next tick); b then hands the
      // page of the freed block to y, whose grant is void too (y has the free by then, or drops
      // the grant as stale). y's prefetch ends either way.
      await settle([b, x, y]);
      await y.run('await globalThis.prefetched;');
      await until('b hearing the acknowledgement', 30_000, async () => ((await b.run<{ sequential: { ownershipMoves: number } }>('return dsm.clusterStats();')).sequential.ownershipMoves === 1 ? true : undefined));

      step("every node reads x's write");
      // Before, x's page of the new block was dropped with the old one's invalidation: x's own
      // read asked b, which pointed back at x, and the page was lost.
      const read = `const v = dsm.u32[args.at]; try { dsm.stats(); return v; } catch (e) { return e.code; }`;
      expect(await Promise.all([x, b, y].map((n) => n.run(read, { at })))).toEqual([77, 77, 77]);
    });
  });

  it('a copy pushed at a barrier arriving after the block was freed and allocated again is ignored', async () => {
    await h.within(90_000, async (step) => {
      step('starting two nodes');
      const b = await h.start(opts);
      // r holds the first copy pushed to it of each page until the page's model changes
      // again (a test hook).
      const r = await holding('push', () => h.start({ ...opts, peers: [b.address] }));
      step('b allocates a sequential block; r reads it; b writes it again');
      const ptr = await b.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4096, { model: 'sequential' }); tx.setRoot('seq', p); return p; });`);
      const at = ptr / 4;
      await b.run('dsm.u32[args.at] = 5;', { at });
      await settle([b, r]);
      expect(await r.run('return dsm.u32[args.at];', { at })).toBe(5);
      // r's copy goes; b pushes it back at its next barrier arrival.
      await b.run('dsm.u32[args.at] = 6;', { at });

      step('both arrive at a barrier: b pushes r a copy, held at r');
      await Promise.all([b, r].map((n) => n.run(`await dsm.barrier('round', 2);`)));
      expect((await b.run<{ sequential: { pushed: number } }>('return dsm.clusterStats();')).sequential.pushed).toBe(1);

      step('b frees the block and allocates it again; r takes the push in after that');
      await b.run(`await dsm.transaction((tx) => { tx.free(dsm.root('seq')); tx.setRoot('seq', 0); });`);
      await settle([b, r]);
      const again = await b.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4096, { model: 'sequential' }); tx.setRoot('seq', p); return p; });`);
      expect(again).toBe(ptr);
      await settle([b, r]);

      step('b writes the new block; r reads it');
      await b.run('dsm.u32[args.at] = 77;', { at });
      // Before, r installed the freed block's copy (6) as a read copy of the new one, which
      // the new owner did not know of: r read 6 until its next arrival at that barrier.
      expect(await r.run('return dsm.u32[args.at];', { at })).toBe(77);
    });
  });

  it('an ownership grant sent in a life of the page its receiver has not heard of yet waits for the declaration, and is taken', async () => {
    await h.within(90_000, async (step) => {
      step('starting two nodes');
      const b = await h.start(opts);
      // From the first commit that frees a block of another model, a holds every commit it
      // receives until a reply from a later life of its page arrives (a test hook): as if
      // b's commits were slow on the way and b's reply fast.
      const a = await holding('declaration', () => h.start({ ...opts, peers: [b.address] }));
      step('b allocates a sequential block and writes into it; a reads it');
      const ptr = await b.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4096, { model: 'sequential' }); tx.setRoot('seq', p); return p; });`);
      const at = ptr / 4;
      await b.run('dsm.u32[args.at] = 5;', { at });
      await settle([b, a]);
      expect(await a.run('return dsm.u32[args.at];', { at })).toBe(5);

      step('b frees the block and allocates it again, and writes the new one; a holds those commits');
      await b.run(`await dsm.transaction((tx) => { tx.free(dsm.root('seq')); tx.setRoot('seq', 0); });`);
      const again = await b.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4096, { model: 'sequential' }); tx.setRoot('seq', p); return p; });`);
      expect(again).toBe(ptr);
      await b.run('dsm.u32[args.at] = 77;', { at });

      step('a, knowing only the first life, asks b for the page; b hands it over in the new one');
      await a.run(`globalThis.prefetched = dsm.prefetch(args.ptr, 4096, { write: true });`, { ptr });
      await until('b handing the page over', 30_000, async () => ((await b.run<{ sequential: { ownershipMoves: number } }>('return dsm.clusterStats();')).sequential.ownershipMoves === 1 ? true : undefined));
      // The grant waits at a for the commits that began the new life (the hook lets them in
      // once it has arrived); then a owns the page. Dropped instead, the page was lost: b
      // had given it up.
      await settle([b, a]);
      await a.run('await globalThis.prefetched;');
      const stats = await a.run<{ sequential: { laterReplies: number; staleReplies: number } }>('return dsm.clusterStats();');
      expect(stats.sequential.laterReplies).toBe(1);
      expect(stats.sequential.staleReplies).toBe(0);

      step('both nodes read the new block, and write it');
      const read = `const v = [dsm.u32[args.at], dsm.u32[args.at + 1]]; try { dsm.stats(); return v; } catch (e) { return e.code; }`;
      expect(await Promise.all([a, b].map((n) => n.run(read, { at })))).toEqual([[77, 0], [77, 0]]);
      await b.run('dsm.u32[args.at + 1] = 78;', { at });
      expect(await Promise.all([a, b].map((n) => n.run(read, { at })))).toEqual([[77, 78], [77, 78]]);
    });
  });
});
