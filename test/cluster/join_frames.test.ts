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
