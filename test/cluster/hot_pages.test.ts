// The false-sharing monitor with real nodes: a page two nodes keep conflicting on tops
// `dsm.stats().hotPages` (and `dsm stats --hot`) with the committer that caused each abort
// and the object the page holds; pages nobody conflicts on are not listed.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, SECRET, settle, until } from './harness';
import type { HotPage } from '../../lib/conflict_monitor';

const CLI = path.resolve(__dirname, '../../dist/cli.js');


function cli(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

describe('false-sharing monitor', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('lists the page two nodes conflict on, with the committer and the object it holds, and leaves quiet pages out', async () => {
    const [a, b] = await h.cluster(2);
    // Node 0 allocates the shared counter (a 64-byte object on its own chunk page) and a
    // large object only it writes; node 1 allocates an object only it writes.
    await a.run(`await dsm.transaction((tx) => { tx.setRoot('counter', tx.alloc(64)); tx.setRoot('quiet', tx.alloc(8192)); });`);
    await settle([a, b]);
    await b.run(`await dsm.transaction((tx) => { tx.setRoot('bOwn', tx.alloc(64)); });`);
    await settle([a, b]);
    const ptrs = await a.run<{ counter: number; quiet: number; bOwn: number }>(
      `return { counter: dsm.root('counter'), quiet: dsm.root('quiet'), bOwn: dsm.root('bOwn') };`,
    );
    const pageOf = (p: number) => Math.floor(p / 4096);
    expect(pageOf(ptrs.bOwn)).not.toBe(pageOf(ptrs.counter));
    // Quiet work: node 0 writes its large object, node 1 its own object; no conflict.
    await a.run(`for (let i = 0; i < 5; i++) await dsm.transaction(() => { dsm.u32[dsm.root('quiet') >> 2] += 1; });`);
    await b.run(`for (let i = 0; i < 5; i++) await dsm.transaction(() => { dsm.u32[dsm.root('bOwn') >> 2] += 1; });`);
    await settle([a, b]);
    expect(await a.run<HotPage[]>('return dsm.stats().hotPages;')).toEqual([]);

    const ROUNDS = 5;
    for (let i = 0; i < ROUNDS; i++) {
      // Each round waits for its own 'spinning' line: count them before starting.
      const before = a.lines.filter((l) => l.startsWith('spinning ')).length;
      const run = conflictRound(a, b, 'bOwn');
      await a.waitForLine(() => a.lines.filter((l) => l.startsWith('spinning ')).length > before);
      await run.commit();
      expect(await run.victim).toBe(1);
    }
    // And the other way round, twice: node 1's aborts are caused by node 0.
    for (let i = 0; i < 2; i++) {
      const before = b.lines.filter((l) => l.startsWith('spinning ')).length;
      const run = conflictRound(b, a, 'quiet');
      await b.waitForLine(() => b.lines.filter((l) => l.startsWith('spinning ')).length > before);
      await run.commit();
      expect(await run.victim).toBe(1);
    }

    const hotA = await a.run<HotPage[]>('return dsm.stats().hotPages;');
    expect(hotA).toHaveLength(1);
    expect(hotA[0]).toMatchObject({ page: pageOf(ptrs.counter), ptr: pageOf(ptrs.counter) * 4096, aborts: ROUNDS, byNode: { [b.nodeId]: ROUNDS } });
    expect(hotA[0].holds).toMatch(new RegExp(`^64-byte normal objects of slot \\d+ \\(node ${a.nodeId}\\) \\(chunk at page \\d+`));
    expect(hotA[0].roots).toEqual(['counter']);
    const hotB = await b.run<HotPage[]>('return dsm.stats().hotPages;');
    expect(hotB).toHaveLength(1);
    expect(hotB[0]).toMatchObject({ page: pageOf(ptrs.counter), aborts: 2, byNode: { [a.nodeId]: 2 } });

    // The CLI asks the node's service, which the app thread tells after each abort.
    const listed = await until('dsm stats --hot lists the counter page', 30_000, async () => {
      const r = await cli(['stats', '--connect', a.address, '--secret', SECRET, '--hot', '--json']);
      expect(r.code).toBe(0);
      const hot = JSON.parse(r.out) as HotPage[];
      return hot.length && hot[0].aborts === ROUNDS ? hot : undefined;
    });
    expect(listed).toEqual(hotA);
    const text = await cli(['stats', '--connect', a.address, '--secret', SECRET, '--hot']);
    expect(text.code).toBe(0);
    expect(text.out).toContain(`node ${b.nodeId}: ${ROUNDS}`);
    expect(text.out).toMatch(/64-byte normal objects of slot \d+ \(node 0\)/);
    expect(text.out).toContain('[roots: counter]');
  });
});

/**
 * One forced conflict: `victim` reads the counter and (in its first run only) spins until
 * `committer`'s commit to the counter dooms it; the addon interrupts the spin and the run
 * is retried. The committer also writes `own`, an object the victim never touches, so the
 * abort must be put down to the counter's page alone.
 */
function conflictRound(victim: RemoteNode, committer: RemoteNode, own: string): { victim: Promise<number>; commit: () => Promise<unknown> } {
  return {
    victim: victim.run<number>(
      `return dsm.transaction((tx) => {
         const c = dsm.root('counter') >> 2;
         const v = dsm.u32[c];
         if (tx.attempt === 0) { say('spinning ' + v); for (;;) {} }
         dsm.u32[c + 1] = v;
         return tx.attempt;
       });`,
    ),
    commit: () =>
      committer.run(`await dsm.transaction(() => { dsm.u32[dsm.root('counter') >> 2] += 1; dsm.u32[dsm.root(args.own) >> 2] += 1; });`, { own }),
  };
}
