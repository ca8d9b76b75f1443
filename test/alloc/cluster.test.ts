// The heap across real node processes: per-node pages, roots seen everywhere, layout checks.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, settle } from '../cluster/harness';

describe('heap across nodes', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it("no page ever holds small objects of two nodes, and roots set on one node are seen on another", async () => {
    const [a, b] = await h.cluster(2);
    const work = `const out = [];
      for (let t = 0; t < 20; t++) out.push(...await dsm.transaction((tx) => Array.from({ length: 25 }, (_, i) => tx.alloc(8 + ((i * 53) % 900)))));
      return out;`;
    const [pa, pb] = await Promise.all([a.run<number[]>(work), b.run<number[]>(work)]);
    const pages = (ps: number[]) => new Set(ps.map((p) => Math.floor(p / 4096)));
    const shared = [...pages(pa)].filter((p) => pages(pb).has(p));
    expect(pa.length).toBe(500);
    expect(shared).toEqual([]);
    await a.run("await dsm.transaction((tx) => tx.setRoot('table', args.p));", { p: pa[0] });
    await settle([a, b]);
    expect(await b.run("return dsm.root('table');")).toBe(pa[0]);
  });

  it('writes over heap metadata are refused on any node, and a node joining afterwards works', async () => {
    const a = await h.start();
    const attempt = (code: string) => `try { await dsm.transaction(() => { ${code} }); return 'committed'; } catch (e) { return e.code + ' ' + e.address; }`;
    expect(await a.run(attempt('dsm.u32[0] += 1;'))).toBe('ERR_DSM_HEAP_CORRUPTION 0'); // the superblock's magic number
    const counter = await a.run<number>("return dsm.transaction((tx) => { const p = tx.alloc(4); tx.setRoot('counter', p); dsm.view(Uint32Array, p)[0] = 1; return p; });");
    // Before the guard, the first attempt changed the magic number and this join failed with ERR_DSM_HEAP_LAYOUT.
    const b = await h.start({ peers: [a.address] });
    expect(await b.run(attempt('dsm.u32[(4096 + 60) / 4] = 8;'))).toBe('ERR_DSM_HEAP_CORRUPTION 4156'); // root slot 0's pointer
    expect(await b.run("const p = dsm.root('counter'); await dsm.transaction(() => { dsm.view(Uint32Array, p)[0] += 1; }); return p;")).toBe(counter);
    await b.run("await dsm.transaction((tx) => { const q = tx.alloc(100); tx.setRoot('b', q); dsm.view(Uint8Array, q, 100).fill(3); });");
    await settle([a, b]);
    const state = `const { checkHeap } = require('../../../dist/alloc/check.js');
      return dsm.transaction(() => ({ counter: dsm.view(Uint32Array, dsm.root('counter'))[0], b: dsm.u8[dsm.root('b') + 99], errors: checkHeap(dsm.heap, dsm) }));`;
    for (const n of [a, b]) expect(await n.run(state)).toEqual({ counter: 2, b: 3, errors: [] });
  });

  it("the guard never fetches a page: a survivor's transaction commits though the page-kind table died with its only holder", async () => {
    // Three nodes, so that b and c are a majority once a is gone.
    const [a, b, c] = await h.cluster(3, { heartbeatMs: 100, deadAfterMs: 1000 });
    await a.run('await dsm.transaction((tx) => { for (let i = 0; i < 40; i++) tx.alloc(20_000); });'); // the kinds table changes on a only
    await settle([a, b, c]);
    a.kill('SIGKILL');
    await b.waitForLine((l) => l === `peer-leave ${a.nodeId}`);
    const at = 3000 * 1024; // a data page nobody allocated
    expect(await b.run('try { await dsm.transaction(() => { dsm.u32[args.at] = 5; }); return dsm.u32[args.at]; } catch (e) { return e.code; }', { at })).toBe(5);
  });

  it('a node refuses to join a heap with another layout version', async () => {
    const a = await h.start();
    await a.run('await dsm.transaction(() => dsm.heap._testWriteSuperblock(1, 99));'); // the layout version
    await expect(h.start({ peers: [a.address] })).rejects.toMatchObject({ code: 'ERR_DSM_HEAP_LAYOUT' });
  });
});
