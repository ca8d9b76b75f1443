// A node that closes hands its pages and the token to a successor: nothing is lost and
// the others go on committing.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, settle } from './harness';

const AT = 3000 * 1024;

describe('leaving', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('pages owned only by a node that closes survive on the others', async () => {
    const [a, b, c] = await h.cluster(3);
    // c writes pages nobody else has read (c owns their only copy), then takes the token
    // with one more commit, and leaves.
    await c.run('await dsm.transaction(() => { for (let p = 0; p < 100; p++) dsm.u32[args.at + p * 1024] = p + 1; });', { at: AT });
    await settle([a, b, c]);
    await c.close();
    await a.waitForLine((l) => l === `peer-leave ${c.nodeId}`);
    await b.waitForLine((l) => l === `peer-leave ${c.nodeId}`);
    const sums = await Promise.all(
      [a, b].map((n) => n.run<number>('return dsm.transaction(() => { let s = 0; for (let p = 0; p < 100; p++) s += dsm.u32[args.at + p * 1024]; return s; });', { at: AT })),
    );
    expect(sums).toEqual([5050, 5050]);
    // The token went to a survivor: both still commit.
    const loop = 'for (let i = 0; i < 50; i++) await dsm.transaction(() => { dsm.u32[args.at] += 1; });';
    await Promise.all([a.run(loop, { at: AT }), b.run(loop, { at: AT })]);
    await settle([a, b]);
    expect(await a.run('return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })).toBe(101);
  });
});
