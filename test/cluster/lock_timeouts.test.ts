// Locks whose callers give up: three nodes take one lock over and over, most callers with a
// random time-out (0: only if free; a few ms: often in the queue when it runs out, racing
// the release that hands the lock to them), some without. Mutual exclusion must hold (a
// word marks the critical section), every caller without a time-out must get the lock (a
// hand-over to a node whose caller left would leave it waiting for ever), and at the end
// the lock is free with nobody queued. The seed is printed; replay one with DSM_SEED (the
// interleaving is up to the processes).
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, settle } from './harness';

const ROUNDS = 80;

describe('locks with time-outs', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('callers that give up at random never break exclusion, strand the lock or leave a place in its queue', async () => {
    const seed = process.env.DSM_SEED ? Number(process.env.DSM_SEED) : Math.floor(Math.random() * 2 ** 31);
    console.log(`lock time-outs: seed=${seed} (replay with DSM_SEED=${seed}; the interleaving is up to the processes)`);
    const nodes = await h.cluster(3);
    await nodes[0].run(`await dsm.transaction((tx) => tx.setRoot('cs', tx.alloc(8)));`);
    await settle(nodes);
    const work = `
      let s = (args.seed + 7919 * args.i) >>> 0 || 1;
      const next = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32; };
      const c = dsm.root('cs') >> 2;
      const r = { taken: 0, timedOut: 0, overlaps: 0, untimedTaken: 0, untimed: 0 };
      for (let k = 0; k < args.rounds; k++) {
        const x = next();
        const timeoutMs = x < 0.25 ? 0 : x < 0.8 ? 1 + Math.floor(next() * 6) : undefined;
        if (timeoutMs === undefined) r.untimed++;
        let unlock;
        try { unlock = await dsm.lock('t', timeoutMs === undefined ? {} : { timeoutMs }); }
        catch (e) { if (e.code !== 'ERR_DSM_TIMEOUT') throw e; r.timedOut++; continue; }
        r.taken++;
        if (timeoutMs === undefined) r.untimedTaken++;
        await dsm.transaction(() => { if (dsm.u32[c] !== 0) r.overlaps++; dsm.u32[c] = dsm.nodeId + 1; });
        if (next() < 0.5) await new Promise((res) => setTimeout(res, Math.floor(next() * 4)));
        await dsm.transaction(() => { if (dsm.u32[c] !== dsm.nodeId + 1) r.overlaps++; dsm.u32[c] = 0; dsm.u32[c + 1]++; });
        await unlock();
      }
      return r;`;
    const results = await Promise.all(nodes.map((n, i) => n.run<{ taken: number; timedOut: number; overlaps: number; untimedTaken: number; untimed: number }>(work, { seed, i, rounds: ROUNDS })));
    console.log(`lock time-outs: ${JSON.stringify(results)}`);
    for (const r of results) {
      expect(r.overlaps).toBe(0);
      expect(r.untimedTaken).toBe(r.untimed);
      expect(r.taken + r.timedOut).toBe(ROUNDS);
    }
    // The schedule has teeth: callers did give up, and callers did get it.
    expect(results.reduce((a, r) => a + r.timedOut, 0)).toBeGreaterThan(0);
    await settle(nodes);
    const total = results.reduce((a, r) => a + r.taken, 0);
    const state = await nodes[1].run<number[]>(`const p = await dsm._syncState('lock', 't');
      return dsm.transaction(() => [dsm.u32[p >> 2], dsm.u32[(p >> 2) + 2], dsm.u32[(dsm.root('cs') >> 2) + 1]]);`);
    // Free, nobody queued, and every critical section counted once.
    expect(state).toEqual([0, 0, total]);
    for (const n of nodes) expect(await n.run<string>(`const u = await dsm.lock('t', { timeoutMs: 0 }); await u(); return 'free';`)).toBe('free');
  });
});
