// Many nodes committing to the same data: every increment lands exactly once, conflicts
// abort and retry (and the statistics show it), and late joiners see everything.
import { afterEach, describe, expect, it } from 'vitest';
import { fetchStats } from '../../lib/service/stats_client';
import { Harness, SECRET, settle } from './harness';

const PAGE = 3000; // far from the heap's own pages at the start of the region
const AT = PAGE * 1024; // u32 index of the counter

describe('one counter, many nodes', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it.each([2, 4])('increments of one counter from %i nodes end exact', async (n) => {
    const nodes = await h.cluster(n);
    const per = 150;
    await Promise.all(
      nodes.map((node) =>
        node.run(`for (let i = 0; i < args.per; i++) await dsm.transaction(() => { dsm.u32[args.at] += 1; });`, { per, at: AT }),
      ),
    );
    await settle(nodes);
    const seen = await Promise.all(nodes.map((node) => node.run<number>('return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })));
    expect(seen).toEqual(Array(n).fill(n * per));
    const stats = await Promise.all(nodes.map((node) => node.run<{ transactions: { committed: number } }>('return dsm.stats();')));
    // Every node committed its own increments (plus its read-only checks).
    for (const s of stats) expect(s.transactions.committed).toBeGreaterThanOrEqual(per);
    const times = await Promise.all(nodes.map((node) => node.run<number>('return dsm.globalTime;')));
    // One global time step per write commit, the same everywhere once all are applied.
    expect(new Set(times).size).toBe(1);
    expect(times[0]).toBeGreaterThanOrEqual(n * per);
  });

  it.each([0, 1, 20])("two nodes committing back to back with tokenBatchMs %i (durability 'none') lose no increment", async (tokenBatchMs) => {
    // Token batching: a holder whose app is committing keeps the token until its next drain
    // (tokenBatchMs at most) when the other asks. Whatever the setting, every commit lands
    // once and both nodes end with the same value; how much batching saves is measured in
    // the benchmarks (the peers suite's bank rows), not here.
    const nodes = await h.cluster(2, { durability: 'none', tokenBatchMs });
    const per = 1000;
    await Promise.all(
      nodes.map((node) =>
        node.run(
          `for (let i = 0; i < args.per; i++) await dsm.transaction(() => { dsm.u32[args.at] += 1; dsm.u32[args.at + 1024 * (1 + Math.floor(Math.random() * 200))] += 1; });`,
          { per, at: AT },
        ),
      ),
    );
    await settle(nodes);
    const seen = await Promise.all(nodes.map((node) => node.run<number>('return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })));
    expect(seen).toEqual([2 * per, 2 * per]);
    // The other counters: every increment of either node is in the sum, on both nodes.
    const sums = await Promise.all(
      nodes.map((node) => node.run<number>('return dsm.transaction(() => { let s = 0; for (let k = 1; k <= 200; k++) s += dsm.u32[args.at + 1024 * k]; return s; });', { at: AT })),
    );
    expect(sums).toEqual([2 * per, 2 * per]);
    const rn = await Promise.all(nodes.map(async (node) => ((await fetchStats(node.address, SECRET, 10_000)).protocol as { rn: Record<string, number> }).rn));
    console.log(`tokenBatchMs ${tokenBatchMs}: token requests per commit ${((Number(rn[1]['0'] ?? 0) + Number(rn[0]['1'] ?? 0)) / (2 * per)).toFixed(3)}`);
  });

  it("with durability 'replicated', a page that keeps dooming runs makes the next transactions start holding the token, and those are never doomed", async () => {
    // Two nodes incrementing one counter back to back: most runs that wait for the token
    // (and for their previous commit's acknowledgement) are doomed by the other node's
    // commit. Once the page dooms two runs in a row here, the next transactions start
    // holding the token, so nothing can doom them: a run of commits with no abort between.
    const nodes = await h.cluster(2, { durability: 'replicated' });
    const per = 400;
    const runs = await Promise.all(
      nodes.map((node) =>
        node.run<{ events: string; held: number }>(
          `let events = '';
           dsm.on('abort', ({ reason }) => { if (reason === 'conflict') events += 'A'; });
           for (let i = 0; i < args.per; i++) { await dsm.transaction(() => { dsm.u32[args.at] += 1; }); events += 'C'; }
           return { events, held: dsm.stats().transactions.heldFromStart };`,
          { per, at: AT },
        ),
      ),
    );
    await settle(nodes);
    const seen = await Promise.all(nodes.map((node) => node.run<number>('return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })));
    expect(seen).toEqual([2 * per, 2 * per]);
    const held = runs.reduce((s, r) => s + r.held, 0);
    const aborts = runs.reduce((s, r) => s + r.events.split('').filter((e) => e === 'A').length, 0);
    console.log(`aborts ${aborts}, transactions started holding the token ${held}: ${runs.map((r) => r.events).join(' | ')}`);
    // The workload conflicts (else there is nothing to see), and conflicts led to held starts.
    expect(aborts).toBeGreaterThan(0);
    expect(held).toBeGreaterThan(0);
    // Each held start is a commit no abort interrupts: somewhere a node committed 32 times
    // in a row after an abort (32 transactions start holding after a page's second doom).
    expect(runs.some((r) => /A{1,}C{32}/.test(r.events))).toBe(true);
  });

  it('a node joins while others commit and ends with the same data', async () => {
    const [a, b] = await h.cluster(2);
    const loop = `for (let i = 0; i < args.per; i++) await dsm.transaction(() => { dsm.u32[args.at] += 1; });`;
    const running = [a.run(loop, { per: 300, at: AT }), b.run(loop, { per: 300, at: AT })];
    // Join as soon as the others have made some progress.
    await a.run(`while ((await dsm.transaction(() => dsm.u32[args.at])) < 50) await new Promise((r) => setTimeout(r, 5));`, { at: AT });
    const c = await h.start({ peers: [b.address] });
    expect(c.nodeId).toBe(2);
    await Promise.all([...running, c.run(loop, { per: 100, at: AT })]);
    await settle([a, b, c]);
    const seen = await Promise.all([a, b, c].map((node) => node.run<number>('return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })));
    expect(seen).toEqual([700, 700, 700]);
  });
});
