// A joiner is bound to its admitter inside the JoinAccept callback: the admitter sends
// commits right behind JoinAccept, often in the same read, and a joiner that bound the
// connection a turn later dropped them (then noticed the gap and asked for them again).
// With one committer every commit travels on that one connection in order, so a joiner
// never has a reason to ask for a commit again.
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, SECRET, settle } from './harness';

const load = createRequire(__filename);
const { fetchStats } = load(path.join(__dirname, '../../dist/service/stats_client.js'));

describe('joining while the founder commits', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('frames that arrive with JoinAccept are applied, never dropped and asked for again', async () => {
    const a = await h.start({ durability: 'none' });
    // One-word commits back to back, each broadcast to every member as it is made.
    await a.run(
      `globalThis.stop = false;
       globalThis.loop = (async () => {
         for (let i = 0; !globalThis.stop; i++) {
           await dsm.transaction(() => { dsm.u32[args.w] += 1; });
           if (i % 16 === 0) await new Promise((r) => setImmediate(r)); // let the harness in
         }
       })();`,
      { w: 3000 * 1024 },
    );
    for (let i = 0; i < 4; i++) {
      const b = await h.start({ peers: [a.address], durability: 'none' });
      await settle([a, b]);
      await b.close();
    }
    await a.run('globalThis.stop = true; await globalThis.loop;');
    const { protocol } = (await fetchStats(a.address, SECRET)) as { protocol: { resendRequests: number } };
    expect(protocol.resendRequests).toBe(0);
  });
});

describe('a joiner talking to a member that has not applied its admission yet', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it("what it sends meanwhile is held and handled once the member applies the configuration: a first barrier completes", async () => {
    // a applies configurations made by others 3 s late (a test hook), as a slow member would.
    // c joins through b, connects to a at once and arrives at a barrier a coordinates (the
    // lowest member). a dropped that arrival while c's configuration was on its way, and the
    // barrier, which sends its arrival once, never completed.
    process.env.DSM_TEST_CONFIGS_LATE_MS = '3000';
    let a;
    try {
      a = await h.start({ durability: 'none' });
    } finally {
      delete process.env.DSM_TEST_CONFIGS_LATE_MS;
    }
    const b = await h.start({ peers: [a.address], durability: 'none' });
    const c = await h.start({ peers: [b.address], durability: 'none' });
    const cAt = c.run('await dsm.barrier("first", 2); return dsm.nodeId;');
    const aAt = a.run('await dsm.barrier("first", 2); return dsm.nodeId;');
    expect(await Promise.all([aAt, cAt])).toEqual([a.nodeId, c.nodeId]);
  }, 60_000);
});
