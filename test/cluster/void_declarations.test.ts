// A token holder's allocation reaches the other members only after they told the recovery
// that replaces its token what they had applied (a test hook holds the commit on its way),
// so the regenerated token makes it void. Both took its declaration in as it arrived, and
// both stay in the cluster: nothing but undoing the void declaration frees the block there.
// Left, their model tables say sequential where the heap says free, a joiner is told the
// same, and every run the heap hands those pages to is doomed.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, settle, takeToken, until, withEnv } from './harness';

const FAST = { heartbeatMs: 100, deadAfterMs: 1000, durability: 'none' };
const HELD = 'test hook: holding the commits this node receives (allocation)';

/** What a node's tables say: sequential pages, lost pages, and the heap checker's complaints. */
const tables = (n: RemoteNode) =>
  n.run<{ sequential: number; lost: unknown[]; heap: string[] }>(`const { checkHeap } = require('../../../dist/alloc/check.js');
    return { sequential: dsm.stats().models.sequential, lost: dsm.lostPages(), heap: await dsm.transaction(() => checkHeap(dsm.heap, dsm)) };`);

/** Starts a node that holds the commits it receives from the first allocation of a non-transactional block until it takes part in a recovery (a test hook). */
const holding = (start: () => Promise<RemoteNode>) => withEnv({ DSM_TEST_HOLD_SEQUENTIAL: 'allocation' }, start);

describe('the declarations of a void commit on members that took them in', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('are undone there: no node keeps a model of the void block, and the heap hands it out again', async () => {
    await h.within(100_000, async (step) => {
      step('starting three nodes');
      const z = await holding(() => h.start(FAST));
      const y = await holding(() => h.start({ ...FAST, peers: [z.address] }));
      const x = await h.start({ ...FAST, peers: [z.address] });
      const word = await z.run<number>('return dsm.transaction((tx) => tx.alloc(8));');
      await settle([x, y, z]);

      step('x taking the token and allocating a sequential block with it; y and z hold the commit');
      await takeToken(x, word);
      await x.run(`return dsm.transaction((tx) => tx.alloc(4096, { model: 'sequential' }));`);
      for (const n of [y, z]) await until('the commit held', 20_000, async () => (n.stderr.includes(HELD) ? true : undefined));

      step('stopping x; y and z recover, take the commit in, and learn it is void');
      await x.stop();
      try {
        await until('a recovery of the stopped node', 30_000, async () => (new RegExp(`recovering from the loss of node\\(s\\) ${x.nodeId}\\b`).test(y.stderr + z.stderr) ? true : undefined));
        await until('the token regenerated', 30_000, async () => (/regenerated the commit token/.test(y.stderr + z.stderr) ? true : undefined));
        await settle([y, z]);
        // Neither y nor z left the cluster, and neither keeps the void block's model.
        for (const s of await Promise.all([y, z].map(tables))) expect(s).toEqual({ sequential: 0, lost: [], heap: [] });
        for (const n of [y, z]) {
          expect(n.stderr).toMatch(/page\(s\) allocated by void commits are free again here/);
          expect(n.stderr).not.toMatch(/joining again as a new member/);
        }
      } finally {
        x.kill('SIGCONT');
      }

      step('x taking the outcome and committing again');
      await until('x committing again', 60_000, async () =>
        x.run('try { await dsm.transaction(() => { dsm.u32[args.word / 4] += 1; }); return true; } catch (e) { return undefined; }', { word }),
      );
      await z.run('await dsm.transaction(() => { dsm.u32[args.word / 4] += 1; });', { word });
      await settle([x, y, z]);

      step('no node keeps a model of the void block; nothing lost; a sound heap');
      for (const s of await Promise.all([x, y, z].map(tables))) expect(s).toEqual({ sequential: 0, lost: [], heap: [] });

      step('the heap hands the block out again on every node, and it works');
      for (const n of [y, z, x]) {
        const ptr = await n.run<number>(`return dsm.transaction((tx) => tx.alloc(4096, { model: 'sequential' }), { maxRetries: 20 });`);
        const v = 100 + n.nodeId;
        await n.run('dsm.u32[args.at] = args.v;', { at: ptr / 4, v });
        // Every node knows the block's model once it has the allocation.
        await settle([x, y, z]);
        for (const m of [x, y, z]) expect(await m.run<number>('return dsm.u32[args.at];', { at: ptr / 4 })).toBe(v);
        await n.run(`await dsm.transaction((tx) => tx.free(args.ptr));`, { ptr });
      }
    });
  }, 120_000);
});
