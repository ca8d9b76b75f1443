// A promise rejection nobody handles in the service thread is logged, and the service goes
// on: without that, Node ends the thread, and with it every fault, commit and peer of the
// node. (The real path this was first provoked through, a peer claiming the last node id,
// is closed now that a node's identity comes from the configuration; a test hook leaves a
// rejection unhandled instead.)
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from './harness';

const AT = 3000 * 1024;

async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('service thread', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('survives a rejection nobody handles, logs it, and goes on serving', async () => {
    const a = await h.start();
    await a.run('await dsm.transaction(() => { dsm.u32[args.at] = 1; });', { at: AT });
    await a.run('await dsm._testUnhandledRejection();');
    await until(() => /unhandled rejection in the service thread/.test(a.stderr), 'the logged rejection');
    // The service thread is alive: faults, commits and requests still get answers.
    await a.run('await dsm.transaction(() => { dsm.u32[args.at] += 1; });', { at: AT });
    expect(await a.run('return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })).toBe(2);
    const stats = await a.run<{ members: number[] }>('return dsm.clusterStats();');
    expect(stats.members).toContain(a.nodeId);
    expect(a.proc.exitCode).toBeNull();
  });
});
