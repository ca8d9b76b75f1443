// A member without a lease does not serve pages (its copies may be commits a recovery made
// void), and joins leave it without one for a moment: a founder alone, or with one joiner,
// is a quorum (the tie-break), and once a second joiner is a member it needs one of the
// joiners' answers to a ping. A request that came then was dropped, and the requester waited
// for its 1 s retry (2 of 8 three-node starts of examples/kernels). It now waits for the
// lease and is served as soon as it is back.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, protocolState, withEnv } from './harness';

describe('a page request that reaches a member without a lease', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('waits for the lease and is served then, never dropped', async () => {
    const a = await h.start({ durability: 'none' });
    // A word on a page of its own, written by a: a owns that page.
    const ptr = await a.run<number>('return await dsm.transaction((tx) => { const p = tx.alloc(8192); dsm.u32[p >>> 2] = 4242; return p; });');
    const w = ptr / 4;
    // b and c answer lease pings only once they have sent a request for that page (c never
    // does), b on the same connection as its answers (no data channels). With three
    // members a needs an answer from b or c for its lease: it has b's request without one.
    const hook = { DSM_TEST_PINGS_UNANSWERED_UNTIL_PAGE: String(Math.floor(ptr / 4096)), DSM_TEST_NO_DATA_CHANNELS: '1' };
    const b = await withEnv(hook, () => h.start({ peers: [a.address], durability: 'none' }));
    await withEnv(hook, () => h.start({ peers: [a.address], durability: 'none' }));
    expect(await b.run('return dsm.u32[args.w];', { w })).toBe(4242);
    const state = await protocolState<{ pageRequestsWithoutLease: number; pageRequestsHeldForLease: number }>(a);
    expect(state.pageRequestsHeldForLease).toBeGreaterThanOrEqual(1);
    expect(state.pageRequestsWithoutLease).toBe(0);
    expect(b.stderr).not.toContain('no answer for page');
  }, 60_000);
});
