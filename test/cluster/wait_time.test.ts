// waitForGlobalTime with a time the cluster never reaches: it rejects with ERR_DSM_TIMEOUT
// after its time-out, and meanwhile every other transaction of the node (read-only ones
// too, which wait for the commits the node has heard of) goes on.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, settle } from './harness';

const AT = 3000 * 1024;

describe('waitForGlobalTime', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('a time beyond anything announced times out with ERR_DSM_TIMEOUT and wedges nothing meanwhile', async () => {
    const [a, b] = await h.cluster(2);
    await a.run('await dsm.transaction(() => { dsm.u32[args.at] = 1; });', { at: AT });
    await settle([a, b]);
    // b waits for a time a million commits away, in the background.
    await b.run(
      `globalThis.waiting = dsm.waitForGlobalTime(dsm.globalTime + 1_000_000, { timeoutMs: 8000 }).then(
         () => 'reached', (e) => ({ code: e.code, name: e.name, message: e.message }));`,
    );
    // Meanwhile both nodes commit, and b's read-only transactions see a's commits.
    for (let i = 2; i <= 6; i++) {
      await a.run('await dsm.transaction(() => { dsm.u32[args.at] = args.v; });', { at: AT, v: i });
      await settle([a, b]);
      expect(await b.run('return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })).toBe(i);
      await b.run('await dsm.transaction(() => { dsm.u32[args.at + 4096] += 1; });', { at: AT });
    }
    const r = await b.run<{ code: string; name: string; message: string }>('return globalThis.waiting;');
    expect(r).toMatchObject({ code: 'ERR_DSM_TIMEOUT', name: 'TimeoutError' });
    expect(r.message).toMatch(/not reached within 8000 ms/);
    // A time that is reached later still resolves.
    const t = await a.run<number>('return dsm.globalTime;');
    await b.run('globalThis.later = dsm.waitForGlobalTime(args.t + 1).then(() => dsm.globalTime);', { t });
    await a.run('await dsm.transaction(() => { dsm.u32[args.at] = 100; });', { at: AT });
    expect(await b.run<number>('return globalThis.later;')).toBeGreaterThanOrEqual(t + 1);
  });

  it('rejects bad options with ERR_DSM_INVALID_OPTION', async () => {
    const [a] = await h.cluster(1);
    const codes = await a.run<string[]>(`
      const out = [];
      for (const o of [{ timeoutMs: -1 }, { timeoutMs: 1.5 }, { timeout: 5 }]) {
        try { await dsm.waitForGlobalTime(1e9, o); out.push('ok'); } catch (e) { out.push(e.code); }
      }
      return out;`);
    expect(codes).toEqual(['ERR_DSM_INVALID_OPTION', 'ERR_DSM_INVALID_OPTION', 'ERR_DSM_INVALID_OPTION']);
  });
});
