// Sequential reads of another node's pages: read-ahead brings them in batches, installed
// and granted without a fault each. The contents must be exactly the committed ones, inside
// and outside transactions, and a later commit must still reach pages granted that way.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, settle } from './harness';

const FIRST = 4000; // pages, clear of the heap's own pages at the start of the region
const COUNT = 3000; // more than a few read-ahead ranges

// Every page gets a pattern of its own: word i of page p holds p * 7919 + i + salt.
const fill = `for (let p = args.first; p < args.first + args.count; p++) {
  const w = p * 1024;
  for (let i = 0; i < 1024; i++) dsm.u32[w + i] = (p * 7919 + i + args.salt) >>> 0;
}`;
// Returns the pages whose contents differ from the pattern.
const verify = `const bad = [];
for (let p = args.first; p < args.first + args.count; p++) {
  const w = p * 1024;
  for (let i = 0; i < 1024; i++) if (dsm.u32[w + i] !== ((p * 7919 + i + args.salt) >>> 0)) { bad.push(p); break; }
}
return bad;`;

describe('sequential scans of remote pages', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('read exactly what was committed, outside and inside transactions, and see later commits', async () => {
    const [a, b] = await h.cluster(2, { regionSize: 64 << 20 });
    await a.run(`await dsm.transaction(() => { ${fill} });`, { first: FIRST, count: COUNT, salt: 1 });
    await settle([a, b]);
    // Outside a transaction: read-ahead pages are granted on arrival.
    expect(await b.run<number[]>(verify, { first: FIRST, count: COUNT, salt: 1 })).toEqual([]);
    const stats = await b.run<{ faults: { read: number; service: number } }>('return dsm.stats();');
    // Far fewer faults than pages: the ranges came in batches and were read without faults.
    expect(stats.faults.service + stats.faults.read).toBeLessThan(COUNT / 4);

    // A commit on the first node replaces half the pages; the granted copies must go.
    await a.run(`await dsm.transaction(() => { ${fill} });`, { first: FIRST, count: COUNT / 2, salt: 2 });
    await settle([a, b]);
    expect(await b.run<number[]>(verify, { first: FIRST, count: COUNT / 2, salt: 2 })).toEqual([]);
    expect(await b.run<number[]>(verify, { first: FIRST + COUNT / 2, count: COUNT / 2, salt: 1 })).toEqual([]);

    // Inside a transaction: fetched pages are tracked (a commit by the other node dooms it).
    await a.run(`await dsm.transaction(() => { ${fill} });`, { first: FIRST, count: COUNT, salt: 3 });
    await settle([a, b]);
    const inside = await b.run<number[]>(`return dsm.transaction(() => { ${verify} });`, { first: FIRST, count: COUNT, salt: 3 });
    expect(inside).toEqual([]);
  });
});
