// A token holder stopped with an allocation its app committed with the lent token and not
// yet sent (a test hook keeps its commits back), running again while the recovery that
// replaces its token decides. That commit is void; the block it allocated must be free on
// every node and of no model anywhere: the heap's own pages say it is free, and a node
// that still took its pages for sequential ones dooms every run the heap hands them to.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, settle, takeToken, until } from './harness';

const FAST = { heartbeatMs: 100, deadAfterMs: 1000, durability: 'none' };
const sequentialPages = async (n: RemoteNode) => (await n.run<{ models: { sequential: number } }>('return dsm.stats();')).models.sequential;

describe("a stalled holder's void allocation", () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('leaves no model behind on any node', async () => {
    await h.within(120_000, async (step) => {
      step('starting three nodes');
      // y founds the cluster (the heap's first pages are its commits, held by y and z).
      const y = await h.start(FAST);
      process.env.DSM_TEST_DRAIN_MS = '60000';
      let x: RemoteNode;
      try {
        x = await h.start({ ...FAST, peers: [y.address] });
      } finally {
        delete process.env.DSM_TEST_DRAIN_MS;
      }
      const z = await h.start({ ...FAST, peers: [y.address] });
      const word = await y.run<number>('return dsm.transaction((tx) => tx.alloc(8));');
      await settle([x, y, z]);
      step('x taking the token and allocating with it');
      await takeToken(x, word);
      const ptr = await x.run<number>(`return dsm.transaction((tx) => tx.alloc(4096, { model: 'sequential' }));`);
      expect(await sequentialPages(x)).toBe(1);
      step('stopping x until the others start a recovery');
      await x.stop();
      try {
        await until('a recovery of the stopped node', 30_000, async () => (new RegExp(`recovering from the loss of node\\(s\\) ${x.nodeId}\\b`).test(y.stderr + z.stderr) ? true : undefined));
      } finally {
        x.kill('SIGCONT');
      }
      step('waiting for the outcome');
      await until('x took the outcome', 30_000, async () => (/commit\(s\) its app made with it are void|joining again as a new member/.test(x.stderr) ? true : undefined));
      const stayed = /commit\(s\) its app made with it are void/.test(x.stderr);
      console.log(`x ${stayed ? 'stayed a member and dropped its void commits' : 'was removed and joined again'}`);
      // x commits again: its commit must carry no model of the void one.
      await until('x committing again', 30_000, async () =>
        x.run('try { await dsm.transaction(() => { dsm.u32[args.word / 4] += 1; }); return true; } catch (e) { return undefined; }', { word }),
      );
      // x's commits wait in its ring (the test hook) until y takes the token back.
      const drainX = () => y.run('await dsm.transaction(() => { dsm.u32[args.word / 4] += 1; });', { word });
      await drainX();
      await settle([x, y, z]);
      expect(await Promise.all([x, y, z].map(sequentialPages))).toEqual([0, 0, 0]);
      // The heap hands the void block out again, on every node, without dooming the run forever.
      for (const n of [y, x]) {
        const got = await n.run<number>(`return dsm.transaction((tx) => tx.alloc(4096, { model: 'sequential' }), { maxRetries: 20 });`);
        expect(got).toBe(ptr);
        await n.run(`await dsm.transaction((tx) => tx.free(args.got));`, { got });
        await drainX();
        await settle([x, y, z]);
      }
    });
  });
});
