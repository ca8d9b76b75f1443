// Sequential and migratory blocks freed and allocated again while the other nodes still
// write, read and prefetch them: three nodes act at once in each round, so ownership
// requests, replies, invalidations and pushes of a block's earlier life are in flight when
// the heap hands the same block back. A node touching a block another just freed is the
// program's use-after-free (any value, or a DsmError such as a write outside a transaction),
// but no node may hang, crash or decide a page lost, and once all is quiet every block still
// in the directory must behave sequentially again. The seed is printed; replay one with
// DSM_SEED (the interleaving within a round is up to the processes).
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, settle } from './harness';
import { rng } from './rng';

const PAGE_WORDS = 1024;
const ROUNDS = 1500;
/** Directory slots per node: node k allocates into its own slots, anyone frees from any. */
const SLOTS = 8;

interface Block {
  ptr: number;
  pages: number;
  model: 'sequential' | 'migratory';
  slot: number;
}

/** Runs `body` in the node; a DsmError thrown by it comes back as its code. */
const guarded = (body: string) => `try { ${body} } catch (e) { if (e instanceof pkg.DsmError) return { error: e.code }; throw e; }`;

describe('consistency models under concurrent churn of blocks', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('blocks freed and allocated again under racing accesses lose no page and stay sequential', async () => {
    const seed = process.env.DSM_SEED ? Number(process.env.DSM_SEED) : Math.floor(Math.random() * 2 ** 31);
    console.log(`models churn: seed=${seed} (replay with DSM_SEED=${seed}; the interleaving is up to the processes)`);
    const r = rng(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)];
    const nodes: RemoteNode[] = await h.cluster(3);
    // The directory: slot i holds a block's pointer (0: empty), transactional.
    const dir = await nodes[0].run<number>("return dsm.transaction((tx) => { const p = tx.alloc(args.bytes); tx.setRoot('dir', p); return p; });", { bytes: nodes.length * SLOTS * 4 });
    await settle(nodes);
    // Every node keeps its unawaited prefetches, to await them once the churn is over.
    // A write into a block another node just freed is rolled back and reported by the
    // writer's next transaction, before it runs: that transaction is run again, the report
    // counted as the use after free it is.
    await Promise.all(
      nodes.map((n) =>
        n.run(`globalThis.prefetches = []; globalThis.late = [];
          globalThis.tx = async (fn) => {
            for (;;) {
              try { return await dsm.transaction(fn); } catch (e) { if (e.code !== 'ERR_DSM_WRITE_OUTSIDE_TRANSACTION') throw e; globalThis.late.push(e.code); }
            }
          };`),
      ),
    );
    const blocks = new Map<number, Block>(); // by slot
    /** Blocks freed lately: still touched now and then, as a program with a stale pointer would. */
    const freed: Block[] = [];
    const log: string[] = [];
    const errors = new Map<string, number>();
    const count = (code: string) => errors.set(code, (errors.get(code) ?? 0) + 1);

    /** A random word on each page of `b`, in a random order. */
    const words = (b: Block): number[] =>
      [...Array(b.pages).keys()].map((p) => ({ at: b.ptr / 4 + p * PAGE_WORDS + Math.floor(r() * PAGE_WORDS), key: r() })).sort((p, q) => p.key - q.key).map((w) => w.at);

    // Draws an operation (synchronously, so that a seed replays the same operations) and
    // returns it to run.
    const plan = (n: RemoteNode, k: number, round: number, taken: Set<number>): (() => Promise<void>) => {
      const live = [...blocks.values()];
      const touched = () => (freed.length > 0 && r() < 0.15 ? pick(freed) : pick(live));
      const x = r();
      const mine = [...Array(SLOTS).keys()].map((i) => k * SLOTS + i).filter((s) => !blocks.has(s) && !taken.has(s));
      if (live.length === 0 || (x < 0.2 && mine.length > 0)) {
        if (mine.length === 0) return async () => {};
        const slot = pick(mine);
        taken.add(slot);
        const model = r() < 0.6 ? 'sequential' : 'migratory';
        const pages = 1 + Math.floor(r() * 4);
        return async () => {
          const ptr = await n.run<number>(
            'return globalThis.tx((tx) => { const p = tx.alloc(args.bytes, { model: args.model }); dsm.u32[args.dir / 4 + args.slot] = p; return p; });',
            { bytes: pages * 4096, model, dir, slot },
          );
          // Known to the test (and so to the other nodes' operations) from the next round on.
          blocks.set(slot, { ptr, pages, model, slot });
          log.push(`${round}: node ${n.nodeId} alloc ${model} ${pages}p at ${ptr} (slot ${slot})`);
        };
      } else if (x < 0.35) {
        const b = pick(live);
        return async () => {
          const done = await n.run<boolean>(
            'return globalThis.tx((tx) => { const at = args.dir / 4 + args.slot; if (dsm.u32[at] !== args.ptr) return false; dsm.u32[at] = 0; tx.free(args.ptr); return true; });',
            { dir, slot: b.slot, ptr: b.ptr },
          );
          if (done && blocks.get(b.slot) === b) {
            blocks.delete(b.slot);
            freed.push(b);
            if (freed.length > 6) freed.shift();
          }
          log.push(`${round}: node ${n.nodeId} free ${b.ptr} (slot ${b.slot})${done ? '' : ' already freed'}`);
        };
      } else if (x < 0.65) {
        const b = touched();
        const at = words(b);
        const v = 1 + Math.floor(r() * 1e9);
        return async () => {
          const got = await n.run<{ error?: string }>(guarded('for (const at of args.at) dsm.u32[at] = args.v; return {};'), { at, v });
          if (got.error) count(got.error);
          log.push(`${round}: node ${n.nodeId} write ${b.ptr}${got.error ? ` -> ${got.error}` : ''}`);
        };
      } else if (x < 0.85) {
        const b = touched();
        const at = words(b);
        return async () => {
          const got = await n.run<{ error?: string }>(guarded('for (const at of args.at) dsm.u32[at]; return {};'), { at });
          if (got.error) count(got.error);
          log.push(`${round}: node ${n.nodeId} read ${b.ptr}${got.error ? ` -> ${got.error}` : ''}`);
        };
      } else {
        const b = touched();
        const write = r() < 0.5;
        return async () => {
          await n.run(
            'globalThis.prefetches.push(dsm.prefetch(args.ptr, args.bytes, { write: args.write }).catch((e) => { if (!(e instanceof pkg.DsmError)) throw e; globalThis.late.push(e.code); }));',
            { ptr: b.ptr, bytes: b.pages * 4096, write },
          );
          log.push(`${round}: node ${n.nodeId} prefetch ${b.ptr}${write ? ' to write' : ''}`);
        };
      }
    };

    try {
      for (let round = 0; round < ROUNDS; round++) {
        await h.within(30_000, async (step) => {
          step(`round ${round}`);
          // Two operations per node, one after the other on each node, the nodes at once.
          const taken = new Set<number>();
          const ops = nodes.map((n, k) => [plan(n, k, round, taken), plan(n, k, round, taken)]);
          await Promise.all(
            ops.map(async ([first, second]) => {
              await first();
              await second();
            }),
          );
          step(`settling after round ${round}`);
          // An allocation reaches the other nodes before they touch the block (see
          // models_random.test.ts); frees race the accesses on purpose.
          await settle(nodes);
        });
      }

      await h.within(60_000, async (step) => {
        step('awaiting the prefetches');
        for (const n of nodes) {
          const codes = await n.run<string[]>('await Promise.all(globalThis.prefetches); await globalThis.tx(() => {}); return globalThis.late;');
          for (const c of codes) count(c);
        }
        await settle(nodes);
        const protocol = await Promise.all(nodes.map((n) => n.run<Record<string, number>>('return (await dsm.clusterStats()).sequential;')));
        const sum = (key: string) => protocol.reduce((t, c) => t + c[key], 0);
        console.log(
          `models churn: seed=${seed}, ${blocks.size} blocks left, errors of use after free: ${JSON.stringify(Object.fromEntries(errors))}, ` +
            `ownership moves ${sum('ownershipMoves')}, invalidations ${sum('invalidationsSent')}, searches ${sum('searches')}, stale replies ${sum('staleReplies')}`,
        );
        expect(errors.get('ERR_DSM_PAGE_LOST') ?? 0, `seed ${seed}`).toBe(0);

        step('reading the directory');
        const inDir = await nodes[0].run<number[]>('return dsm.transaction(() => Array.from(dsm.view(Uint32Array, args.dir, args.n)));', { dir, n: nodes.length * SLOTS });
        expect(inDir, `seed ${seed}`).toEqual(inDir.map((_, s) => blocks.get(s)?.ptr ?? 0));

        // (1) Sequential again: a fresh value per page from one node, the same value everywhere.
        let v = 1;
        for (const b of blocks.values()) {
          for (let p = 0; p < b.pages; p++) {
            const at = b.ptr / 4 + p * PAGE_WORDS + Math.floor(r() * PAGE_WORDS);
            const value = (seed % 100_000) * 1000 + v++;
            const w = pick(nodes);
            step(`writing ${value} to page ${p} of ${b.ptr} on node ${w.nodeId}`);
            await w.run('dsm.u32[args.at] = args.value;', { at, value });
            for (const n of nodes) {
              step(`reading page ${p} of ${b.ptr} on node ${n.nodeId}`);
              expect(await n.run<number>('return dsm.u32[args.at];', { at }), `seed ${seed}: ${b.model} ${b.ptr} page ${p}, node ${n.nodeId}\n${log.slice(-40).join('\n')}`).toBe(value);
            }
          }
        }

        // (2) The same model table everywhere, nothing lost; (3) a sound heap.
        step('checking models, lost pages and the heap');
        const states = await Promise.all(
          nodes.map((n) =>
            n.run<{ models: Record<string, number>; lost: unknown[]; heap: string[] }>(`const { checkHeap } = require('../../../dist/alloc/check.js');
              const s = dsm.stats();
              return { models: s.models, lost: dsm.lostPages(), heap: await dsm.transaction(() => checkHeap(dsm.heap, dsm)) };`),
          ),
        );
        const sequential = [...blocks.values()].filter((b) => b.model === 'sequential').reduce((s, b) => s + b.pages, 0);
        const migratory = [...blocks.values()].filter((b) => b.model === 'migratory').reduce((s, b) => s + b.pages, 0);
        for (const [i, s] of states.entries()) {
          const what = `seed ${seed}, node ${nodes[i].nodeId}`;
          expect(s.models, what).toEqual(states[0].models);
          // The heap may round a block up to more pages, all of the block's model.
          expect(s.models.sequential, what).toBeGreaterThanOrEqual(sequential);
          expect(s.models.migratory, what).toBeGreaterThanOrEqual(migratory);
          expect(s.lost, what).toEqual([]);
          expect(s.heap, what).toEqual([]);
        }
      });
    } catch (e) {
      (e as Error).message += `\nlast steps:\n${log.slice(-30).join('\n')}`;
      throw e;
    }
  }, 120_000);
});
