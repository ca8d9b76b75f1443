// Read copies pushed at barriers (sequential.ts pushCopies) with real node processes: an
// owner that took a page from its readers gives it back at its next barrier arrival, and a
// pushed copy is dropped at its reader's next arrival, so the owner's next write needs no
// invalidation. Four nodes, so the coordinator (the lowest member) is a third party for
// most pairs and a release can overtake the push it follows: the reader then faults and
// asks, and that copy must be invalidated like any other. Every read after a barrier must
// see what its owner wrote before it.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode } from './harness';

describe('copies pushed at barriers', () => {
  const h = new Harness();
  afterEach(() => h.close());

  /**
   * `rounds` rounds by `nodes` nodes: node i writes its page (of `buffers`, the round's:
   * r % buffers) in its first and last word, waits at the barrier, and reads the others'
   * pages of the round. Returns each node's stale reads, and the copies pushed and
   * invalidations sent over the rounds.
   */
  async function rounds(nodes: RemoteNode[], count: number, buffers: number) {
    const k = nodes.length;
    await nodes[0].run(`await dsm.transaction((tx) => { for (let k = 0; k < args.n; k++) tx.setRoot('p' + k, tx.alloc(4096 * args.buffers, { model: 'sequential' })); });`, { n: k, buffers });
    await Promise.all(nodes.map((n) => n.run(`await dsm.barrier('setup', args.n);`, { n: k })));
    return Promise.all(
      nodes.map((n, i) =>
        n.run<{ bad: string[]; pushed: number; invalidations: number }>(
          `const bad = [];
           const at = [...Array(args.n).keys()].map((k) => dsm.root('p' + k) >> 2);
           const before = (await dsm.clusterStats()).sequential;
           // Every round, whatever it read: a party leaving early would leave the others waiting.
           for (let r = 0; r < args.rounds; r++) {
             const page = (r % args.buffers) * 1024;
             dsm.u32[at[args.i] + page] = r + 1;
             dsm.u32[at[args.i] + page + 1023] = r + 1;
             await dsm.barrier('rounds', args.n);
             // With one buffer a faster party may already be writing the next round: r + 2
             // is fine then, r is not. With two, nobody writes this round's pages before
             // every party has arrived at the next barrier.
             for (let k = 0; k < args.n; k++) {
               if (k === args.i) continue;
               const a = dsm.u32[at[k] + page];
               const b = dsm.u32[at[k] + page + 1023];
               const ok = (v) => v === r + 1 || (args.buffers === 1 && v === r + 2);
               if ((!ok(a) || !ok(b)) && bad.length < 10) bad.push('round ' + r + ': node ' + k + "'s page holds " + a + '/' + b);
             }
           }
           const after = (await dsm.clusterStats()).sequential;
           return { bad, pushed: after.pushed - before.pushed, invalidations: after.invalidationsSent - before.invalidationsSent };`,
          { i, n: k, rounds: count, buffers },
        ),
      ),
    );
  }

  it('one page per node rewritten every round, four nodes, 300 rounds: reads after the barrier never see an older value', async () => {
    const nodes = await h.cluster(4, { durability: 'none' });
    const results = await rounds(nodes, 300, 1);
    expect(results.map((r) => r.bad)).toEqual([[], [], [], []]);
    const pushed = results.reduce((s, r) => s + r.pushed, 0);
    console.log(`one buffer: ${pushed} copies pushed, ${results.reduce((s, r) => s + r.invalidations, 0)} invalidations sent over 300 rounds (3 readers per page)`);
    // Most rounds' copies arrive pushed (each owner has 3 readers a round).
    expect(pushed).toBeGreaterThan(300 * 12 * 0.5);
  });

  it('two pages per node written in turns (a stencil\'s two grids), four nodes, 300 rounds: exact values, and writes without invalidations', async () => {
    const nodes = await h.cluster(4, { durability: 'none' });
    const results = await rounds(nodes, 300, 2);
    expect(results.map((r) => r.bad)).toEqual([[], [], [], []]);
    const pushed = results.reduce((s, r) => s + r.pushed, 0);
    const invalidations = results.reduce((s, r) => s + r.invalidations, 0);
    console.log(`two buffers: ${pushed} copies pushed, ${invalidations} invalidations sent over 300 rounds (3 readers per page)`);
    // A pushed copy is dropped at its reader's next arrival, before its owner writes that
    // page again: without that every round costs 12 invalidations, without the push 12 fetches.
    expect(pushed).toBeGreaterThan(300 * 12 * 0.5);
    expect(invalidations).toBeLessThan(300 * 12 * 0.25);
  });
});
