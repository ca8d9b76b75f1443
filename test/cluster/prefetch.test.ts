// dsm.prefetch with real node processes: pages come here ahead of the touch (the touch then
// needs no message), owned for a write, with the data a touch would have read; a touch made
// while the prefetch is under way waits for the same transfer; bad ranges are refused.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, settle } from './harness';

const allocRoot = (model: string, bytes: number, root: string) =>
  `return dsm.transaction((tx) => { const p = tx.alloc(${bytes}, { model: '${model}' }); tx.setRoot('${root}', p); return p; });`;

const rootOn = (node: RemoteNode, name: string) => node.run<number>('return dsm.transaction(() => dsm.root(args.name));', { name });

/** Faults this node's service resolved so far. */
const serviceFaults = (node: RemoteNode) => node.run<number>('return dsm.stats().faults.service;');

describe('dsm.prefetch', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('brings sequential pages here: the reads after it need no message and see the writer’s values', async () => {
    const [a, b] = await h.cluster(2);
    const pages = 6;
    const ptr = await a.run<number>(allocRoot('sequential', pages * 4096, 'seq'));
    expect(await rootOn(b, 'seq')).toBe(ptr);
    for (let round = 1; round <= 5; round++) {
      await a.run('for (let p = 0; p < args.pages; p++) dsm.u32[args.ptr / 4 + p * 1024] = args.v * 100 + p;', { ptr, pages, v: round });
      const before = await serviceFaults(b);
      const seen = await b.run<number[]>(
        'await dsm.prefetch(args.ptr, args.pages * dsm.pageSize); const f = dsm.stats().faults.service; ' +
          'const v = []; for (let p = 0; p < args.pages; p++) v.push(dsm.u32[args.ptr / 4 + p * 1024]); ' +
          'return [dsm.stats().faults.service - f, ...v];',
        { ptr, pages },
      );
      // The prefetch itself goes through the service, never through a fault.
      expect(await serviceFaults(b)).toBe(before);
      expect(seen).toEqual([0, ...Array.from({ length: pages }, (_, p) => round * 100 + p)]);
    }
  });

  it('with write, takes ownership: the write after it needs no message, and the old owner reads the new value', async () => {
    const [a, b] = await h.cluster(2);
    const ptr = await a.run<number>(allocRoot('sequential', 2 * 4096, 'own'));
    expect(await rootOn(b, 'own')).toBe(ptr);
    // a owns both pages and reads them; b takes them over ahead of its writes.
    expect(await a.run<number>('dsm.u32[args.at] = 7; dsm.u32[args.at + 1024] = 8; return dsm.u32[args.at] + dsm.u32[args.at + 1024];', { at: ptr / 4 })).toBe(15);
    const extra = await b.run<number>(
      'await dsm.prefetch(args.ptr, 2 * dsm.pageSize, { write: true }); const f = dsm.stats().faults.service; ' +
        'dsm.u32[args.ptr / 4] += 10; dsm.u32[args.ptr / 4 + 1024] += 10; return dsm.stats().faults.service - f;',
      { ptr },
    );
    expect(extra).toBe(0);
    expect(await a.run<number[]>('return [dsm.u32[args.at], dsm.u32[args.at + 1024]];', { at: ptr / 4 })).toEqual([17, 18]);
  });

  it('a touch while the prefetch is under way reads the same data; migratory pages come owned', async () => {
    const [a, b] = await h.cluster(2);
    const seq = await a.run<number>(allocRoot('sequential', 4 * 4096, 'seq'));
    const mig = await a.run<number>(allocRoot('migratory', 4096, 'mig'));
    expect(await rootOn(b, 'seq')).toBe(seq);
    expect(await rootOn(b, 'mig')).toBe(mig);
    for (let round = 1; round <= 10; round++) {
      await a.run('for (let p = 0; p < 4; p++) dsm.u32[args.seq / 4 + p * 1024] = args.v + p; dsm.u32[args.mig / 4] = args.v;', { seq, mig, v: round });
      // Not awaited: the reads fault while the request is on the wire and join it.
      const seen = await b.run<number[]>(
        'const p = dsm.prefetch(args.seq, 4 * dsm.pageSize); const m = dsm.prefetch(args.mig, 4); ' +
          'const v = [0, 1, 2, 3].map((k) => dsm.u32[args.seq / 4 + k * 1024]); await p; await m; v.push(dsm.u32[args.mig / 4]); return v;',
        { seq, mig },
      );
      expect(seen).toEqual([round, round + 1, round + 2, round + 3, round]);
    }
    // A migratory page comes owned with the prefetch alone (no touch): a, which wrote it
    // last, must fetch it back to read it.
    await a.run('dsm.u32[args.at] = 11;', { at: mig / 4 });
    await b.run('await dsm.prefetch(args.mig, 4);', { mig });
    const before = await serviceFaults(a);
    expect(await a.run<number>('return dsm.u32[args.at];', { at: mig / 4 })).toBe(11);
    expect(await serviceFaults(a)).toBeGreaterThan(before);
  });

  it('brings transactional pages another node changed, then reads them without a fetch', async () => {
    const [a, b] = await h.cluster(2, { durability: 'none' });
    const ptr = await a.run<number>('return dsm.transaction((tx) => { const p = tx.alloc(3 * 4096); tx.setRoot("t", p); return p; });');
    await settle([a, b]);
    expect(await rootOn(b, 't')).toBe(ptr);
    // Every word of each page changes: the commit carries whole pages, which go only to
    // backups (none with durability 'none'), so b's copies are invalidated, not updated.
    const t = await a.run<number>(
      'await dsm.transaction(() => { for (let p = 0; p < 3; p++) dsm.u32.fill(40 + p, args.ptr / 4 + p * 1024, args.ptr / 4 + (p + 1) * 1024); }); return dsm.globalTime;',
      { ptr },
    );
    await b.run('await dsm.waitForGlobalTime(args.t);', { t });
    const seen = await b.run<number[]>(
      'await dsm.prefetch(args.ptr, 3 * dsm.pageSize); const f = dsm.stats().faults.service; ' +
        'const v = await dsm.transaction(() => [0, 1, 2].map((k) => dsm.u32[args.ptr / 4 + k * 1024])); return [dsm.stats().faults.service - f, ...v];',
      { ptr },
    );
    expect(seen).toEqual([0, 40, 41, 42]);
  });

  it("refuses ranges outside the region; leaves another node's local pages alone", async () => {
    const [a, b] = await h.cluster(2);
    const local = await a.run<number>(allocRoot('local', 4096, 'mine'));
    expect(await rootOn(b, 'mine')).toBe(local);
    for (const [ptr, len] of [
      [-1, 10],
      [0, -1],
      [1.5, 10],
      ['x', 10],
      [0, 2 ** 40],
    ]) {
      const code = await b.run<string>('try { await dsm.prefetch(args.ptr, args.len); return "resolved"; } catch (e) { return e.code; }', { ptr, len });
      expect(code, `prefetch(${ptr}, ${len})`).toBe('ERR_DSM_INVALID_OPTION');
    }
    await a.run('dsm.u32[args.at] = 42;', { at: local / 4 });
    expect(await b.run<string>('await dsm.prefetch(0, 0); await dsm.prefetch(args.p, 4096); return "ok";', { p: local })).toBe('ok');
    // The prefetch fetched nothing: the touch is still refused, as without it.
    const touched = await b.run<{ value: number; code?: string }>(
      'const value = dsm.u32[args.at]; try { dsm.stats(); return { value }; } catch (e) { return { value, code: e.code }; }',
      { at: local / 4 },
    );
    expect(touched).toEqual({ value: 0, code: 'ERR_DSM_LOCAL_PAGE' });
    expect(await a.run<number>('return (await dsm.clusterStats()).sequential.readFetches;')).toBe(0);
  });
});
