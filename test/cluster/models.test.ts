// Consistency models chosen per allocation, with real node processes: sequential pages
// (a write returns once no other node can read the old value), local pages (never leave
// their node), both next to transactional data in one program, and allocations of either
// that an aborted transaction made vanish with it.
import { afterEach, describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { Harness, type RemoteNode, SECRET, settle, until } from './harness';

const STATS_CLIENT = path.join(__dirname, '../../dist/service/stats_client.js');

const allocRoot = (model: string, bytes: number, root: string) =>
  `return dsm.transaction((tx) => { const p = tx.alloc(${bytes}, { model: '${model}' }); tx.setRoot('${root}', p); return p; });`;

async function rootOn(node: RemoteNode, name: string): Promise<number> {
  // The root is transactional data: a read-only transaction sees the commit that set it
  // once that commit has arrived (settle first: read-only transactions ask nobody).
  return node.run<number>(`return dsm.transaction(() => dsm.root(args.name));`, { name });
}

describe('consistency models', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it("a sequential writer's value is seen by every reader once its write returns, never the old one", async () => {
    const nodes = await h.cluster(3);
    const ptr = await nodes[0].run<number>(allocRoot('sequential', 3 * 4096, 'seq'));
    await settle(nodes);
    for (const n of nodes.slice(1)) expect(await rootOn(n, 'seq')).toBe(ptr);
    const at = ptr / 4;
    // Every node holds a read copy, then each in turn writes outside any transaction: the
    // others must read the new value at once (their copies were invalidated before the
    // write returned), from several words on two pages.
    for (let round = 1; round <= 30; round++) {
      const writer = nodes[round % 3];
      await Promise.all(nodes.map((n) => n.run('return dsm.u32[args.at] + dsm.u32[args.at + 1024];', { at })));
      await writer.run('dsm.u32[args.at] = args.v; dsm.u32[args.at + 1024] = args.v * 2;', { at, v: round });
      const seen = await Promise.all(nodes.map((n) => n.run<number[]>('return [dsm.u32[args.at], dsm.u32[args.at + 1024]];', { at })));
      expect(seen).toEqual(nodes.map(() => [round, round * 2]));
    }
    // Writes outside a transaction to sequential pages are no violation.
    const stats = await Promise.all(nodes.map((n) => n.run<{ faults: { violations: number } }>('return dsm.stats();')));
    for (const s of stats) expect(s.faults.violations).toBe(0);
    const served = await Promise.all(nodes.map((n) => n.run<{ sequential: { invalidationsSent: number; ownershipMoves: number } }>('return dsm.clusterStats();')));
    expect(served.reduce((k, s) => k + s.sequential.invalidationsSent, 0)).toBeGreaterThan(0);
    expect(served.reduce((k, s) => k + s.sequential.ownershipMoves, 0)).toBeGreaterThan(0);
  });

  it('concurrent increments of a sequential word from two nodes, each its own half, lose nothing', async () => {
    // Two writers on one page: each write fault takes ownership from the other, so the
    // page moves back and forth; every write of each must survive.
    const [a, b] = await h.cluster(2);
    const ptr = await a.run<number>(allocRoot('sequential', 4096, 'ping'));
    await settle([a, b]);
    expect(await rootOn(b, 'ping')).toBe(ptr);
    const loop = 'for (let i = 0; i < 300; i++) { dsm.u32[args.at] += 1; if (i % 10 === 0) await new Promise((r) => setImmediate(r)); }';
    await Promise.all([a.run(loop, { at: ptr / 4 }), b.run(loop, { at: ptr / 4 + 1 })]);
    const seen = await Promise.all([a, b].map((n) => n.run<number[]>('return [dsm.u32[args.at], dsm.u32[args.at + 1]];', { at: ptr / 4 })));
    expect(seen).toEqual([
      [300, 300],
      [300, 300],
    ]);
  });

  for (const model of ['sequential', 'migratory']) {
    it(`four nodes writing interleaved elements of one ${model} array (every page written by all four) read every element after each barrier`, async () => {
      // A stencil or reduction whose partition ignores page boundaries: each page's single
      // writer changes thousands of times a round, and after the barrier every write of
      // every node must be seen by every node.
      const nodes = await h.cluster(4, { regionSize: 64 << 20 });
      const N = 16384; // 128 KiB of doubles: 32 pages
      await nodes[0].run(allocRoot(model, 8 * N, 'v'));
      await Promise.all(nodes.map((n) => n.run(`await dsm.transaction(() => 0); await dsm.barrier('setup', 4);`)));
      const bad = await Promise.all(
        nodes.map((n, i) =>
          n.run<string[]>(
            `const v = dsm.view(Float64Array, dsm.root('v'), args.N);
             const bad = [];
             for (let r = 0; r < 5; r++) {
               for (let j = args.i; j < args.N; j += 4) v[j] = j * 10 + r;
               await dsm.barrier('written ' + r, 4);
               for (let j = 0; j < args.N; j++) if (v[j] !== j * 10 + r) { bad.push('round ' + r + ': v[' + j + '] = ' + v[j]); break; }
               await dsm.barrier('read ' + r, 4);
             }
             return bad;`,
            { i, N },
          ),
        ),
      );
      expect(bad).toEqual([[], [], [], []]);
    });
  }

  it("a local page never leaves its node: another node's touch raises ERR_DSM_LOCAL_PAGE and reads no data", async () => {
    const [a, b] = await h.cluster(2);
    const ptr = await a.run<number>(allocRoot('local', 4096, 'mine'));
    // The owner writes outside any transaction: allowed, and never rolled back.
    await a.run('dsm.u32[args.at] = 42;', { at: ptr / 4 });
    expect(await a.run('return dsm.transaction(() => dsm.u32[args.at]);', { at: ptr / 4 })).toBe(42);
    await settle([a, b]);
    expect(await rootOn(b, 'mine')).toBe(ptr);
    const touched = await b.run<{ value: number; code?: string }>(
      'const value = dsm.u32[args.at]; try { dsm.stats(); return { value }; } catch (e) { return { value, code: e.code }; }',
      { at: ptr / 4 },
    );
    expect(touched).toEqual({ value: 0, code: 'ERR_DSM_LOCAL_PAGE' });
    // Inside a transaction the touch fails the transaction with the same error.
    await expect(b.run('return dsm.transaction(() => dsm.u32[args.at + 1]);', { at: ptr / 4 })).rejects.toMatchObject({ code: 'ERR_DSM_LOCAL_PAGE' });
    const served = await a.run<{ remoteFetches: number; sequential: { readFetches: number; localRefused: number } }>('return dsm.clusterStats();');
    expect(served.sequential.readFetches).toBe(0);
    const refused = await b.run<{ sequential: { localRefused: number } }>('return dsm.clusterStats();');
    expect(refused.sequential.localRefused + served.sequential.localRefused).toBeGreaterThan(0);
    // Still the owner's, unchanged.
    expect(await a.run('return dsm.u32[args.at];', { at: ptr / 4 })).toBe(42);
  });

  it('mixed models in one program: a transactional counter, a sequential array, local scratch', async () => {
    const nodes = await h.cluster(2);
    await nodes[0].run(`await dsm.transaction((tx) => {
      tx.setRoot('count', tx.alloc(8));
      tx.setRoot('array', tx.alloc(2 * 4096, { model: 'sequential' }));
    });`);
    // Each node: its own local scratch, then per round a transactional increment and a
    // sequential write of its own slot.
    await Promise.all(
      nodes.map((n, k) =>
        n.run(
          `const scratch = await dsm.transaction((tx) => tx.alloc(4096, { model: 'local' }));
           const count = await dsm.transaction(() => dsm.root('count'));
           const array = await dsm.transaction(() => dsm.root('array'));
           for (let i = 1; i <= 50; i++) {
             dsm.u32[scratch / 4] = i;
             await dsm.transaction(() => { dsm.u32[count / 4] += 1; });
             dsm.u32[array / 4 + args.k * 1024] = dsm.u32[scratch / 4] * 10;
           }`,
          { k },
        ),
      ),
    );
    await settle(nodes);
    for (const n of nodes) {
      const r = await n.run<number[]>(
        `const count = await dsm.transaction(() => dsm.root('count')); const array = await dsm.transaction(() => dsm.root('array'));
         return [await dsm.transaction(() => dsm.u32[count / 4]), dsm.u32[array / 4], dsm.u32[array / 4 + 1024]];`,
      );
      expect(r).toEqual([100, 500, 500]);
      // dsm.stats() counts pages by model: the array's two, and both nodes' local scratch.
      const m = (await n.run<{ models: Record<string, number> }>('return dsm.stats();')).models;
      expect({ sequential: m.sequential, local: m.local, migratory: m.migratory }).toEqual({ sequential: 2, local: 2, migratory: 0 });
      expect(m.transactional + m.sequential + m.local + m.migratory).toBe((16 << 20) / 4096);
    }
  });

  it("an aborted transaction's sequential and local allocations vanish with it", async () => {
    const [a] = await h.cluster(2);
    for (const model of ['sequential', 'local']) {
      const r = await a.run<{ aborted: number; again: number; code?: string }>(
        `let aborted = 0;
         try { await dsm.transaction((tx) => { aborted = tx.alloc(8192, { model: args.model }); throw new Error('no'); }); } catch {}
         // The page is transactional again: a write outside a transaction is a violation.
         dsm.u32[aborted / 4] = 7;
         let code;
         try { dsm.stats(); } catch (e) { code = e.code; }
         const again = await dsm.transaction((tx) => tx.alloc(8192, { model: args.model }));
         return { aborted, again, code };`,
        { model },
      );
      expect(r.code).toBe('ERR_DSM_WRITE_OUTSIDE_TRANSACTION');
      // The allocation was rolled back: the same block comes back.
      expect(r.again).toBe(r.aborted);
    }
  });
});

describe('migratory pages', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('a migratory page is never on two nodes at once: every access moves it, reads too', async () => {
    const nodes = await h.cluster(3);
    const ptr = await nodes[0].run<number>(allocRoot('migratory', 4096, 'baton'));
    await settle(nodes);
    for (const n of nodes.slice(1)) expect(await rootOn(n, 'baton')).toBe(ptr);
    const page = ptr / 4096;
    const where = () => Promise.all(nodes.map((n) => n.run<number>('return dsm._testPageState(args.page);', { page })));
    for (let round = 0; round < 30; round++) {
      const k = round % 3;
      // A read alone moves it too (odd rounds); a write after a read needs no second move.
      await nodes[k].run(round % 2 ? 'return dsm.u32[args.at];' : 'dsm.u32[args.at] += 1;', { at: ptr / 4 });
      const states = await where();
      expect(states.filter((st) => st !== 0)).toHaveLength(1);
      expect(states[k]).not.toBe(0);
    }
    expect(await nodes[1].run('return dsm.u32[args.at];', { at: ptr / 4 })).toBe(15);
    const served = await Promise.all(nodes.map((n) => n.run<{ sequential: { readFetches: number; ownershipMoves: number } }>('return dsm.clusterStats();')));
    // Never a read copy, only moves.
    expect(served.reduce((k, s) => k + s.sequential.readFetches, 0)).toBe(0);
    expect(served.reduce((k, s) => k + s.sequential.ownershipMoves, 0)).toBeGreaterThanOrEqual(29);
  });
});

describe('consistency models under failure', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it("a sequential page whose owner died lives on in a read copy (its holder adopts it), and is reported lost where no copy is left, never hung on nor read as zeros silently", async () => {
    const [a, b, c] = await h.cluster(3, { heartbeatMs: 100, deadAfterMs: 1000, durability: 'none' });
    const ptr = await a.run<number>(allocRoot('sequential', 3 * 4096, 'fragile'));
    await settle([a, b, c]);
    for (const n of [b, c]) expect(await rootOn(n, 'fragile')).toBe(ptr);
    const at = ptr / 4;
    await a.run('dsm.u32[args.at + 1024] = 8;', { at }); // the second page stays a's
    await c.run('dsm.u32[args.at] = 5; dsm.u32[args.at + 2048] = 9;', { at }); // c owns the first and third pages now
    expect(await b.run('return dsm.u32[args.at];', { at })).toBe(5); // b holds a copy of the first
    c.kill('SIGKILL');
    await a.waitForLine((l) => l === `peer-leave ${c.nodeId}`);
    await b.waitForLine((l) => l === `peer-leave ${c.nodeId}`);
    const touch = (k: number) => `const v = dsm.u32[args.at + ${k * 1024}]; try { dsm.stats(); return { v }; } catch (e) { return { v, code: e.code }; }`;
    // a holds no copy of the first page, b does: b adopts it, and a reads c's last write.
    // (Before, a took it for lost and owned zeros, while b went on reading 5.)
    expect(await a.run(touch(0), { at })).toEqual({ v: 5 });
    expect(await b.run(touch(0), { at })).toEqual({ v: 5 });
    // And it stays one page: a write returns once b's copy is gone.
    await a.run('dsm.u32[args.at] = 6;', { at });
    expect(await b.run(touch(0), { at })).toEqual({ v: 6 });
    // Nobody holds a copy of the third: lost.
    expect(await a.run(touch(2), { at })).toEqual({ v: 0, code: 'ERR_DSM_PAGE_LOST' });
    for (const n of [a, b]) expect(await n.run('return dsm.u32[args.at + 1024];', { at })).toBe(8);
  });

  it('nodes that join later know the models: they read and write sequential data and are refused local pages', async () => {
    const [a] = await h.cluster(1);
    // Allocated and written in the same transaction (the local page), and written after it (the
    // sequential pages, with no version to say so): a joiner that took them for zero pages of
    // its own would read zeros and count its writes as violations.
    const { seq, mine } = await a.run<{ seq: number; mine: number }>(`return dsm.transaction((tx) => {
      const seq = tx.alloc(2 * 4096, { model: 'sequential' });
      const mine = tx.alloc(4096, { model: 'local' });
      dsm.u32[mine / 4] = 7;
      return { seq, mine };
    });`);
    await a.run('dsm.u32[args.at] = 41; dsm.u32[args.at + 1024] = 42;', { at: seq / 4 });
    const words = 'return [dsm.u32[args.at], dsm.u32[args.at + 1024]];';
    const b = await h.start({ peers: [a.address] });
    expect(await b.run(words, { at: seq / 4 })).toEqual([41, 42]);
    await b.run('dsm.u32[args.at] = 43;', { at: seq / 4 });
    expect(await a.run(words, { at: seq / 4 })).toEqual([43, 42]);
    // Joined through b, which owns the first page now and holds a copy of the second.
    const c = await h.start({ peers: [b.address] });
    expect(await c.run(words, { at: seq / 4 })).toEqual([43, 42]);
    await c.run('dsm.u32[args.at + 1024] = 44;', { at: seq / 4 });
    for (const n of [a, b, c]) expect(await n.run(words, { at: seq / 4 })).toEqual([43, 44]);
    const touched = await c.run<{ value: number; code?: string }>(
      'const value = dsm.u32[args.at]; try { dsm.stats(); return { value }; } catch (e) { return { value, code: e.code }; }',
      { at: mine / 4 },
    );
    expect(touched).toEqual({ value: 0, code: 'ERR_DSM_LOCAL_PAGE' });
    expect(await a.run('return dsm.u32[args.at];', { at: mine / 4 })).toBe(7);
    // Nobody was thrown out and let in again on the way (ids unchanged, no violations).
    for (const n of [a, b, c]) {
      expect((await n.run<{ members: number[] }>('return dsm.clusterStats();')).members).toEqual([a.nodeId, b.nodeId, c.nodeId]);
      expect((await n.run<{ faults: { violations: number } }>('return dsm.stats();')).faults.violations).toBe(0);
    }
  });

  it("pages written in the transaction that allocates them outside transactional consistency do not trip the committer's backup", async () => {
    // Durability 'replicated' (the default): b backs a's commits up, and such a commit names
    // the new pages among those it wrote. b used to fetch them to hold them, never got them,
    // and asked again until its stack overflowed and the cluster threw it out.
    const [a, b] = await h.cluster(2);
    const { seq, mine } = await a.run<{ seq: number; mine: number }>(`return dsm.transaction((tx) => {
      const seq = tx.alloc(4096, { model: 'sequential' });
      const mine = tx.alloc(4096, { model: 'local' });
      dsm.u32[seq / 4] = 5;
      dsm.u32[mine / 4] = 7;
      return { seq, mine };
    });`);
    expect(await b.run('return dsm.u32[args.at];', { at: seq / 4 })).toBe(5);
    expect(await a.run('return [dsm.u32[args.seq / 4], dsm.u32[args.mine / 4]];', { seq, mine })).toEqual([5, 7]);
    expect(await a.run('return dsm.transaction(() => 1);')).toBe(1);
    for (const n of [a, b]) expect((await n.run<{ members: number[] }>('return dsm.clusterStats();')).members).toEqual([a.nodeId, b.nodeId]);
    expect(b.stderr).not.toMatch(/bad message/);
  });

  it.each(['sequential', 'migratory'])('three nodes writing and reading one %s page in turn: no request is forgotten, no write lost', async (model) => {
    // An owner handing the page on holds other nodes' requests until it is done; its own
    // app's write fault in that window used to take the page back in the middle of the
    // hand-over (two owners: writes lost, 6 runs of 6) and forget the held requests (their
    // nodes waited forever).
    const nodes = await h.cluster(3, { durability: 'none' });
    const { seq, tx } = await nodes[0].run<{ seq: number; tx: number }>(`return dsm.transaction((t) => ({ seq: t.alloc(4096, { model: args.model }), tx: t.alloc(4096) }));`, { model });
    await settle(nodes);
    const loop = `
      let seen = 0;
      for (let i = 1; i <= 500; i++) {
        dsm.u32[args.at + args.k] = i;
        await dsm.transaction(() => { dsm.u32[args.tx / 4 + args.k] = i; });
        for (let j = 0; j < 3; j++) seen += dsm.u32[args.at + j];
        await new Promise((r) => setTimeout(r, 1));
      }
      return dsm.u32[args.at + args.k];`;
    expect(await Promise.all(nodes.map((n, k) => n.run(loop, { at: seq / 4, tx, k })))).toEqual([500, 500, 500]);
    for (const n of nodes) expect(await n.run('return [0, 1, 2].map((j) => dsm.u32[args.at + j]);', { at: seq / 4 })).toEqual([500, 500, 500]);
  });

  it('nodes touching at once a sequential page that died with its owner all go on, each told it was lost, and a discard makes it one page again', async () => {
    const [a, b, c, d] = await h.cluster(4, { durability: 'none' });
    const ptr = await a.run<number>(`return dsm.transaction((tx) => tx.alloc(4096, { model: 'sequential' }));`);
    await settle([a, b, c, d]);
    // d owns the page and nobody holds a copy: the page dies with d.
    await d.run('dsm.u32[args.at] = 7;', { at: ptr / 4 });
    d.kill('SIGKILL');
    for (const n of [a, b, c]) await n.waitForLine((l) => l === `peer-leave ${d.nodeId}`);
    // a's hint names d, so a searches every member; b's and c's name a. Before, each node
    // waiting for the page held the others' requests and searches for it, and all three
    // threads waited for good (3 runs of 3).
    const touch = 'const v = dsm.u32[args.at]; try { dsm.stats(); return { v }; } catch (e) { return { v, code: e.code }; }';
    const got = await h.within(60_000, () => Promise.all([a, b, c].map((n) => n.run<{ v: number; code?: string }>(touch, { at: ptr / 4 }))));
    // One decides it lost and the others hear it from the answers (sequential_loss.ts).
    expect(got).toEqual([0, 1, 2].map(() => ({ v: 0, code: 'ERR_DSM_PAGE_LOST' })));
    // Discarded: one owner of the zeros, so a write on one node is read on the others.
    await c.run('await dsm.transaction((tx) => tx.discardLost(args.ptr, 4096));', { ptr });
    await settle([a, b, c]);
    await b.run('dsm.u32[args.at] = 9;', { at: ptr / 4 });
    for (const n of [a, c]) expect(await n.run('return dsm.u32[args.at];', { at: ptr / 4 })).toBe(9);
    await c.run('dsm.u32[args.at] = 10;', { at: ptr / 4 });
    for (const n of [a, b]) expect(await n.run('return dsm.u32[args.at];', { at: ptr / 4 })).toBe(10);
  });

  it('a sequential page request left unanswered becomes a search, and the page stays one page', async () => {
    // c owns the page; b's hint names a, which forwards to c. c is stopped (not dead: it
    // answers once it runs again), so b's request stays unanswered, as one lost on its way
    // along the hints (forwarded into a node as it closed) did for good.
    const [a, b, c] = await h.cluster(3, { deadAfterMs: 60_000, durability: 'none' });
    const ptr = await a.run<number>(`return dsm.transaction((tx) => tx.alloc(4096, { model: 'sequential' }));`);
    await settle([a, b, c]);
    await c.run('dsm.u32[args.at] = 5;', { at: ptr / 4 });
    await c.stop();
    const read = 'return dsm.u32[args.at];';
    const reading = b.run<number>(read, { at: ptr / 4 });
    // b's thread waits in the fault: its service is asked from another node's process.
    const searching = async () => {
      const state = await a.run<{ sequential: { faults: Array<{ asked?: { to: number } }> } }>(
        'return (await require(args.client).fetchStats(args.address, args.secret, 10_000)).protocol;',
        { client: STATS_CLIENT, address: b.address, secret: SECRET },
      );
      return state.sequential.faults.some((f) => f.asked?.to === -1) ? true : undefined;
    };
    await until('b asks every member', 60_000, searching);
    c.kill('SIGCONT');
    // c answers the request and the search alike: b reads once, and every later write still
    // leaves one copy of the page.
    expect(await reading).toBe(5);
    await b.run('dsm.u32[args.at] = 6;', { at: ptr / 4 });
    for (const n of [a, c]) expect(await n.run(read, { at: ptr / 4 })).toBe(6);
    await a.run('dsm.u32[args.at] = 7;', { at: ptr / 4 });
    for (const n of [b, c]) expect(await n.run(read, { at: ptr / 4 })).toBe(7);
  });

  it('a chain of owner hints through a dead node finds the page where it moved, instead of calling it lost', async () => {
    const [a, b, c] = await h.cluster(3, { heartbeatMs: 100, deadAfterMs: 1000 });
    const ptr = await a.run<number>(`return dsm.transaction((tx) => tx.alloc(2 * 4096, { model: 'sequential' }));`);
    await settle([a, b, c]);
    // a owns both pages; b takes them over. c never touched them: its hints still name a.
    await a.run('dsm.u32[args.at] = 1; dsm.u32[args.at + 1024] = 1;', { at: ptr / 4 });
    await b.run('dsm.u32[args.at] = 2; dsm.u32[args.at + 1024] = 3;', { at: ptr / 4 });
    a.kill('SIGKILL');
    for (const n of [b, c]) await n.waitForLine((l) => l === `peer-leave ${a.nodeId}`);
    // Before, c took the page for lost (ERR_DSM_PAGE_LOST) and made itself owner of zeros
    // beside b: two owners. Now it asks every member, and b answers.
    const read = 'const v = [dsm.u32[args.at], dsm.u32[args.at + 1024]]; try { dsm.stats(); return { v }; } catch (e) { return { v, code: e.code }; }';
    expect(await c.run(read, { at: ptr / 4 })).toEqual({ v: [2, 3] });
    await c.run('dsm.u32[args.at] = 4;', { at: ptr / 4 });
    expect(await b.run(read, { at: ptr / 4 })).toEqual({ v: [4, 3] });
    expect((await c.run<{ sequential: { searches: number } }>('return dsm.clusterStats();')).sequential.searches).toBeGreaterThan(0);
  });
});
