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
    const [a, b] = await h.cluster(2, { regionSize: 64 << 20, durability: 'none' });
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

  it('scans see consistent pages while another node commits into them', async () => {
    const [a, b, c] = await h.cluster(3, { regionSize: 64 << 20, durability: 'none' });
    const N = 300; // pairs of pages (p, p + N) that every commit writes together
    await a.run(`await dsm.transaction(() => { for (let p = args.first; p < args.first + 2 * args.n; p++) dsm.u32.fill(1, p * 1024, (p + 1) * 1024); });`, { first: FIRST, n: N });
    await settle([a, b, c]);
    // One node rewrites random pairs, each pair with one new value in every word.
    const writer = c.run(
      `for (let k = 0; k < args.k; k++) {
        const i = Math.floor(Math.random() * args.n);
        await dsm.transaction(() => {
          const p = args.first + i, q = p + args.n;
          const v = dsm.u32[p * 1024] + 1;
          dsm.u32.fill(v, p * 1024, (p + 1) * 1024);
          dsm.u32.fill(v, q * 1024, (q + 1) * 1024);
        });
      }`,
      { first: FIRST, n: N, k: 400 },
    );
    // Another scans them: outside transactions (read-ahead, granted pages), and inside,
    // where every page must be whole and every pair equal.
    const scanner = b.run<number>(
      `let bad = 0;
      for (let round = 0; round < 12; round++) {
        let s = 0;
        for (let p = args.first; p < args.first + 2 * args.n; p++) s += dsm.u32[p * 1024 + 7];
        bad += await dsm.transaction(() => {
          let wrong = 0;
          for (let i = 0; i < args.n; i++) {
            const p = (args.first + i) * 1024, q = (args.first + i + args.n) * 1024, v = dsm.u32[p];
            if (dsm.u32[q] !== v) wrong++;
            for (let w = 0; w < 1024; w += 97) if (dsm.u32[p + w] !== v || dsm.u32[q + w] !== v) { wrong++; break; }
          }
          return wrong;
        });
      }
      return bad;`,
      { first: FIRST, n: N },
    );
    const [, bad] = await Promise.all([writer, scanner]);
    expect(bad).toBe(0);
    await settle([a, b, c]);
    // Everyone ends with the same pages.
    const sums = await Promise.all(
      [a, b, c].map((n) =>
        n.run<number>(`return dsm.transaction(() => { let s = 0; for (let p = args.first; p < args.first + 2 * args.n; p++) for (let w = 0; w < 1024; w += 31) s += dsm.u32[p * 1024 + w]; return s; });`, { first: FIRST, n: N }),
      ),
    );
    expect(new Set(sums).size).toBe(1);
  });

  it('a scan streams over a data channel that outlives idle periods and later scans', async () => {
    const [a, b] = await h.cluster(2, { regionSize: 64 << 20, heartbeatMs: 50, deadAfterMs: 300, durability: 'none' });
    await a.run(`await dsm.transaction(() => { ${fill} });`, { first: FIRST, count: COUNT, salt: 4 });
    await settle([a, b]);
    expect(await b.run<number[]>(verify, { first: FIRST, count: COUNT, salt: 4 })).toEqual([]);
    const channels = async () => (await b.run<{ dataChannels: number[] }>('return dsm.clusterStats();')).dataChannels;
    expect(await channels()).toEqual([a.nodeId]);
    // Idle for several times the dead-peer limit: only heartbeats keep the channel open.
    await new Promise((r) => setTimeout(r, 1200));
    await a.run(`await dsm.transaction(() => { ${fill} });`, { first: FIRST, count: COUNT, salt: 5 });
    await settle([a, b]);
    expect(await b.run<number[]>(verify, { first: FIRST, count: COUNT, salt: 5 })).toEqual([]);
    expect(await channels()).toEqual([a.nodeId]);
    expect(b.stderr + a.stderr).not.toContain('data channel');
  });

  it('single faults on another node\'s pages are sent by the faulting thread, served by the owner\'s end of the data channel and answered by its reader, with the right contents', async () => {
    const [a, b] = await h.cluster(2, { regionSize: 64 << 20, durability: 'none' });
    await a.run(`await dsm.transaction(() => { ${fill} });`, { first: FIRST, count: COUNT, salt: 6 });
    await settle([a, b]);
    // Pages far apart, one at a time (no read-ahead): the first fetch opens the channel.
    const touch = `let bad = 0;
      for (let k = 0; k < args.n; k++) {
        const p = args.first + ((k * 37) % args.count);
        if (dsm.u32[p * 1024 + 5] !== ((p * 7919 + 5 + args.salt) >>> 0)) bad++;
      }
      return bad;`;
    expect(await b.run<number>(touch, { first: FIRST, count: 1000, n: 20, salt: 6 })).toBe(0);
    for (let i = 0; i < 100 && !(await b.run<{ dataChannels: number[] }>('return dsm.clusterStats();')).dataChannels.includes(a.nodeId); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    type Faults = { faults: { service: number; answeredByChannel: number; sentByFault: number; servedByChannel: number } };
    const before = await b.run<Faults>('return dsm.stats();');
    const servedBefore = (await a.run<Faults>('return dsm.stats();')).faults.servedByChannel;
    expect(await b.run<number>(touch, { first: FIRST + 1000, count: 1000, n: 50, salt: 6 })).toBe(0);
    const after = await b.run<Faults>('return dsm.stats();');
    expect(after.faults.service - before.faults.service).toBeGreaterThanOrEqual(50);
    // The faulting thread sent each request itself over the open channel.
    expect(after.faults.sentByFault - before.faults.sentByFault).toBeGreaterThanOrEqual(40);
    // The owner's end of the channel answered natively, from its committed copies, and the
    // requester's reader woke the faulting thread with the page. How many of the 50 go that
    // way depends on the load (a lease renewed late hands a request to the owner's service;
    // a service thread that takes the request first answers it itself), so the test asks
    // for the mechanism, not a share: without either native end these stay at 0.
    expect((await a.run<Faults>('return dsm.stats();')).faults.servedByChannel - servedBefore).toBeGreaterThan(0);
    expect(after.faults.answeredByChannel - before.faults.answeredByChannel).toBeGreaterThan(0);
  });

  it('a scan whose owner is killed midway reports the lost pages and the node goes on', async () => {
    // Three nodes: after a dies, b and c are a majority and go on (two nodes alone could not:
    // of the two halves of a two-node cluster only the lower id's goes on).
    const [a, b, c] = await h.cluster(3, { regionSize: 64 << 20, heartbeatMs: 100, deadAfterMs: 1000, durability: 'none' });
    const N = 6000; // far more than the read-ahead keeps in flight
    // Whole pages (a one-word change would travel as a diff and keep the others' copies current).
    await a.run(`await dsm.transaction(() => { for (let p = args.first; p < args.first + args.n; p++) dsm.u32.fill(p, p * 1024, (p + 1) * 1024); });`, { first: FIRST, n: N });
    await settle([a, b, c]);
    // The first half arrives over the data channel; then the owner dies.
    expect(await b.run<number>(`let bad = 0; for (let p = args.first; p < args.first + args.n / 2; p++) if (dsm.u32[p * 1024] !== p) bad++; return bad;`, { first: FIRST, n: N })).toBe(0);
    expect((await b.run<{ dataChannels: number[] }>('return dsm.clusterStats();')).dataChannels).toEqual([a.nodeId]);
    a.kill('SIGKILL');
    await b.waitForLine((l) => l === `peer-leave ${a.nodeId}`);
    // The rest was only on the dead node: reading it reports the loss, never stale zeros as data.
    const r = await b.run<string>(
      `try { await dsm.transaction(() => { let s = 0; for (let p = args.first + args.n / 2; p < args.first + args.n; p++) s += dsm.u32[p * 1024]; return s; }); return 'read'; } catch (e) { return e.code; }`,
      { first: FIRST, n: N },
    );
    expect(r).toBe('ERR_DSM_PAGE_LOST');
    // Decided once for every survivor: c, which never touched these pages, is told the same.
    await c.waitForLine((l) => l === `peer-leave ${a.nodeId}`);
    const lostOnB = await b.run<number>('return dsm.lostPages().reduce((s, r) => s + r.length, 0);');
    expect(lostOnB).toBeGreaterThan(0);
    expect(await c.run<number>('return dsm.lostPages().reduce((s, r) => s + r.length, 0);')).toBe(lostOnB);
    // The survivors keep working: b commits, and its channel to the dead node is gone.
    await b.run('await dsm.transaction(() => { dsm.u32[args.at] = 7; });', { at: 100 * 1024 });
    expect(await b.run<number>('return dsm.transaction(() => dsm.u32[args.at]);', { at: 100 * 1024 })).toBe(7);
    expect((await b.run<{ dataChannels: number[] }>('return dsm.clusterStats();')).dataChannels).toEqual([]);
  });
});
