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

  it('a node refuses to join a heap with another layout version', async () => {
    const a = await h.start();
    await a.run('await dsm.transaction(() => dsm.heap._testWriteSuperblock(1, 99));'); // the layout version
    await expect(h.start({ peers: [a.address] })).rejects.toMatchObject({ code: 'ERR_DSM_HEAP_LAYOUT' });
  });
});
