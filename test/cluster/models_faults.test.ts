// Random work on sequential and migratory pages while nodes are killed (SIGKILL), close and
// join, checked against a plain model of memory. A page may be lost only by a kill (its
// owner died and no node held a copy); then every node's first touch of it must say so
// (ERR_DSM_PAGE_LOST, over zeros) until a node discards it. Any other read returns the last
// value written anywhere: a surviving copy holds it (a write returns only once the other
// copies are gone), and a graceful close hands its pages over. The seed is printed; replay
// one with DSM_SEED.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, settle, until } from './harness';
import { rng } from './rng';

const PAGE_WORDS = 1024;
const STEPS = 150;
// Replicated (the default): the heap's own tables survive a kill.
const OPTS = { heartbeatMs: 100, deadAfterMs: 1000 } as const;


interface Page {
  ptr: number;
  model: 'sequential' | 'migratory';
  /** Word index -> value last written; absent: zero. */
  words: Map<number, number>;
  /** A kill since the page was last seen whole: it may be lost. */
  mayBeLost: boolean;
  /** Lost: the nodes whose touch has said so. */
  lost?: Set<number>;
}

// A touch that reports what it saw and whether the page was lost (the error comes from the next DSM call).
const READ = 'const v = dsm.u32[args.at]; try { dsm.stats(); return { v }; } catch (e) { return { v, code: e.code }; }';
const WRITE = 'dsm.u32[args.at] = args.v; try { dsm.stats(); return {}; } catch (e) { return { code: e.code }; }';
const WRITE_TX = 'try { await dsm.transaction(() => { dsm.u32[args.at] = args.v; }); return {}; } catch (e) { return { code: e.code }; }';

describe('consistency models under failure, random work', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('every read returns the last value written anywhere, or every node says the page was lost, with nodes killed, closing and joining', async () => {
    const seed = process.env.DSM_SEED ? Number(process.env.DSM_SEED) : Math.floor(Math.random() * 2 ** 31);
    console.log(`models under failure: seed=${seed} (replay with DSM_SEED=${seed})`);
    const r = rng(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)];
    let nodes: RemoteNode[] = await h.cluster(4, OPTS);
    const pages: Page[] = [];
    const log: string[] = [];
    const fail = (step: number, what: string) => new Error(`seed ${seed}, step ${step}: ${what}\n${log.slice(-40).join('\n')}`);
    let kills = 0;

    /** Node n touched page p and saw `code`/`v`: checks it against the model. */
    const saw = (step: number, n: RemoteNode, p: Page, code: string | undefined, what: string) => {
      if (code === 'ERR_DSM_PAGE_LOST') {
        if (p.lost?.has(n.nodeId)) throw fail(step, `node ${n.nodeId} was told twice that ${p.ptr} is lost`);
        if (!p.lost && !p.mayBeLost) throw fail(step, `node ${n.nodeId} took ${p.ptr} for lost (${what}), with no kill since it was last seen whole`);
        p.lost ??= new Set();
        p.lost.add(n.nodeId);
        p.words.clear();
        return true;
      }
      if (code !== undefined) throw fail(step, `node ${n.nodeId}: ${code} (${what})`);
      if (p.lost && !p.lost.has(n.nodeId)) throw fail(step, `node ${n.nodeId} touched ${p.ptr}, lost, without being told (${what})`);
      return false;
    };

    for (let step = 0; step < STEPS; step++) {
      const n = pick(nodes);
      const x = r();
      if (pages.length < 3 || x < 0.05) {
        const model = r() < 0.7 ? 'sequential' : 'migratory';
        const ptr = await n.run<number>('return dsm.transaction((tx) => tx.alloc(4096, { model: args.model }));', { model });
        // Every node knows the page's model before it touches it (else it writes a transactional page outside a transaction).
        await settle(nodes);
        pages.push({ ptr, model, words: new Map(), mayBeLost: false });
        log.push(`${step}: node ${n.nodeId} alloc ${model} at ${ptr}`);
      } else if (x < 0.09 && nodes.length >= 3) {
        // Killed: every page may be lost now (which, the model does not know).
        const v = pick(nodes);
        v.kill('SIGKILL');
        nodes = nodes.filter((m) => m !== v);
        for (const m of nodes) await m.waitForLine((l) => l === `peer-leave ${v.nodeId}`);
        // One failure at a time (what 'replicated' with one backup survives): the next waits
        // until every page of the heap has its second copy again (the new backups fetch the
        // pages a node took over, or owned before they were its backups).
        for (const m of nodes) await until(`node ${m.nodeId}'s backups hold its pages`, 60_000, async () => ((await m.run<{ backupsCatchingUp: number[] }>('return dsm.clusterStats();')).backupsCatchingUp.length === 0 ? true : undefined));
        for (const p of pages) if (!p.lost) p.mayBeLost = true;
        kills++;
        log.push(`${step}: node ${v.nodeId} killed`);
      } else if (x < 0.12 && nodes.length >= 3) {
        const v = pick(nodes);
        await v.close();
        nodes = nodes.filter((m) => m !== v);
        // A node gone gracefully was told nothing more: its tellings leave with it.
        for (const p of pages) p.lost?.delete(v.nodeId);
        log.push(`${step}: node ${v.nodeId} closed`);
      } else if (x < 0.17 && nodes.length < 5) {
        const j = await h.start({ ...OPTS, peers: [pick(nodes).address] });
        nodes.push(j);
        log.push(`${step}: node ${j.nodeId} joined`);
      } else if (x < 0.22 && pages.some((p) => p.lost)) {
        // Accepting a loss: the page starts from zero on every node.
        const p = pick(pages.filter((q) => q.lost));
        if (!p.lost!.has(n.nodeId)) {
          // A discard leaves alone pages not lost here. This node may not have heard of the
          // loss yet (it joined as it was announced, or the announcement is on its way): its
          // touch finds out, and must say so.
          const { v, code } = await n.run<{ v: number; code?: string }>(READ, { at: p.ptr / 4 });
          log.push(`${step}: node ${n.nodeId} read ${p.ptr}+0 -> ${v}${code ? ` ${code}` : ''} (before its discard)`);
          if (!saw(step, n, p, code, 'a touch before a discard')) throw fail(step, `node ${n.nodeId} touched lost ${p.ptr} without being told`);
        }
        await n.run('await dsm.transaction((tx) => tx.discardLost(args.ptr, 4096));', { ptr: p.ptr });
        // Its model change reaches every node with the commit (a node that has not applied it
        // yet still takes the page for lost).
        await settle(nodes);
        p.lost = undefined;
        p.mayBeLost = false;
        p.words.clear();
        log.push(`${step}: node ${n.nodeId} discard ${p.ptr}`);
      } else if (x < 0.55) {
        const p = pick(pages);
        if (p.lost?.has(n.nodeId)) continue; // its own zero page: written to nobody
        const w = Math.floor(r() * PAGE_WORDS);
        const v = 1 + Math.floor(r() * 1e9);
        const inTx = r() < 0.2;
        const { code } = await n.run<{ code?: string }>(inTx ? WRITE_TX : WRITE, { at: p.ptr / 4 + w, v });
        log.push(`${step}: node ${n.nodeId} write ${p.ptr}+${w} = ${v}${inTx ? ' (in a transaction)' : ''}${code ? ` -> ${code}` : ''}`);
        if (!saw(step, n, p, code, 'a write')) {
          p.words.set(w, v);
          p.mayBeLost = false;
        }
      } else {
        const p = pick(pages);
        if (p.lost?.has(n.nodeId)) continue;
        const known = [...p.words.keys()];
        const w = known.length > 0 && r() < 0.8 ? pick(known) : Math.floor(r() * PAGE_WORDS);
        const { v, code } = await n.run<{ v: number; code?: string }>(READ, { at: p.ptr / 4 + w });
        log.push(`${step}: node ${n.nodeId} read ${p.ptr}+${w} -> ${v}${code ? ` ${code}` : ''}`);
        if (saw(step, n, p, code, 'a read')) {
          if (v !== 0) throw fail(step, `node ${n.nodeId} read ${v} from lost ${p.ptr}, not zero`);
        } else {
          if (v !== (p.words.get(w) ?? 0)) throw fail(step, `node ${n.nodeId} read ${v} at ${p.ptr}+${w} (${p.model}), expected ${p.words.get(w) ?? 0}`);
          p.mayBeLost = false;
        }
      }
    }

    // Every node touches every page once more: each lost page is said lost by each node not
    // yet told, the others read their last values, and then every node lists the lost ones.
    for (const n of nodes) {
      for (const p of pages) {
        if (p.lost?.has(n.nodeId)) continue;
        const w = [...p.words.keys()][0] ?? 0;
        const { v, code } = await n.run<{ v: number; code?: string }>(READ, { at: p.ptr / 4 + w });
        log.push(`final: node ${n.nodeId} read ${p.ptr}+${w} -> ${v}${code ? ` ${code}` : ''}`);
        if (!saw(STEPS, n, p, code, 'the final read') && v !== (p.words.get(w) ?? 0)) throw fail(STEPS, `node ${n.nodeId} read ${v} at ${p.ptr}+${w}, expected ${p.words.get(w) ?? 0}`);
      }
    }
    // (Listed merged: neighbouring pages make one range.)
    const lost: Array<{ ptr: number; length: number }> = [];
    for (const ptr of pages.filter((p) => p.lost).map((p) => p.ptr).sort((a, b) => a - b)) {
      const last = lost[lost.length - 1];
      if (last && last.ptr + last.length === ptr) last.length += 4096;
      else lost.push({ ptr, length: 4096 });
    }
    for (const n of nodes) expect(await n.run('return dsm.lostPages();'), `seed ${seed}: node ${n.nodeId} lists the lost pages`).toEqual(lost);
    console.log(`models under failure: seed=${seed}: ${kills} kills, ${pages.filter((p) => p.lost).length} pages lost at the end, ${nodes.length} nodes`);
  });
});
