// A run that allocates a block and fills it, doomed because another node allocated the
// same pages first (both read the heap before either committed), goes on until it returns:
// its pointer then points into the other node's block, whose pages took their model with
// the other node's commit. Its writes there must go nowhere. Before, a write into a
// 'sequential' or 'migratory' page took the page from its owner and stayed (the abort
// rolls back transactional pages only): the other node's block read the doomed run's
// values. A touch of the other node's 'local' page failed the transaction with
// ERR_DSM_LOCAL_PAGE instead of running it again. (examples/kernels: blocks filled in the
// transaction that allocates them, every node allocating at once.)
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, settle } from './harness';

const WORDS = 2048; // two pages of 4 KiB

describe('a doomed run writing the block it allocated', () => {
  const h = new Harness();
  afterEach(() => h.close());

  /** a and b, and a 'sequential' flag both know. */
  async function pair(): Promise<[RemoteNode, RemoteNode, number]> {
    const [a, b] = await h.cluster(2, { durability: 'none' });
    const flag = await a.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4096, { model: 'sequential' }); tx.setRoot('flag', p); return p; });`);
    await settle([a, b]);
    return [a, b, flag / 4];
  }

  for (const model of ['sequential', 'migratory', 'local']) {
    it(`'${model}': its writes reach neither the other node's block nor its own result`, async () => {
      const [a, b, flag] = await pair();
      // a's first run allocates the block, tells b (a sequential write is seen at once,
      // transaction or not), and fills the block again and again until b's allocation of the
      // same pages dooms it (the run is then interrupted); later runs fill it once.
      const filled = a.run<{ ptr: number; attempts: number; first: number }>(
        `let attempts = 0;
        let first = -1;
        const ptr = await dsm.transaction((tx) => {
          attempts++;
          const p = tx.alloc(args.words * 4, { model: args.model });
          const end = tx.attempt === 0 ? Date.now() + 60000 : 0;
          if (tx.attempt === 0) {
            first = p;
            dsm.u32[args.flag] = 1;
          }
          do for (let i = 0; i < args.words; i++) dsm.u32[p / 4 + i] = 0xaaaa;
          while (Date.now() < end);
          tx.setRoot('a', p);
          return p;
        });
        return { ptr, attempts, first };`,
        { model, flag, words: WORDS },
      );
      const theirs = await b.run<number>(
        `while (dsm.u32[args.flag] !== 1) await new Promise((r) => setTimeout(r, 1));
        return dsm.transaction((tx) => {
          const p = tx.alloc(args.words * 4, { model: args.model });
          for (let i = 0; i < args.words; i++) dsm.u32[p / 4 + i] = 0xbbbb;
          tx.setRoot('b', p);
          return p;
        });`,
        { model, flag, words: WORDS },
      );
      const mine = await filled;
      // The race took place: a's first run had the pages b got, and ran again.
      expect(mine.first).toBe(theirs);
      expect(mine.attempts).toBeGreaterThan(1);
      expect(mine.ptr).not.toBe(theirs);
      await settle([a, b]);
      const count = `const v = new Map(); for (let i = 0; i < args.words; i++) { const x = dsm.u32[args.p / 4 + i]; v.set(x, (v.get(x) ?? 0) + 1); } return [...v];`;
      expect(await b.run(count, { p: theirs, words: WORDS })).toEqual([[0xbbbb, WORDS]]);
      expect(await a.run(count, { p: mine.ptr, words: WORDS })).toEqual([[0xaaaa, WORDS]]);
      if (model !== 'local') {
        expect(await a.run(count, { p: theirs, words: WORDS })).toEqual([[0xbbbb, WORDS]]);
        expect(await b.run(count, { p: mine.ptr, words: WORDS })).toEqual([[0xaaaa, WORDS]]);
      }
    });
  }
});
