// Barriers for SPMD programs, built on transactions (DESIGN.md "Consistency models"). The
// state of barrier `name` is one page of the shared heap (directory.ts), u32 words:
//   [0] generation  [1] parties of the current generation  [2] arrived so far
//   [3] bit g % 32 set: generation g was broken (the last 32 generations)
//   [4 ..] ids of the arrived nodes
// Arriving is a transaction; the arrival that completes the generation bumps it, and that
// commit wakes the waiting parties (a page watch, no polling). Arrivals and the completion
// are ordered commits, so whatever a party committed before arriving was applied on every
// node before it sees the completion.
//
// Failure rule (one party per node): a generation is broken when a node that arrived in it
// is removed from the configuration, or when fewer members remain than its parties. The
// party that notices commits the break (bumps the generation, marks it broken), and every
// party waiting on that generation throws BarrierBrokenError.
import { InvalidOptionError } from '../errors';
import { MAX_NODES } from '../alloc/layout';
import { BarrierBrokenError } from './errors';
import { SyncDirectory } from './directory';
import { MembershipCache, type SyncNode } from './sync_host';

const GEN = 0;
const PARTIES = 1;
const COUNT = 2;
const BROKEN = 3;
const IDS = 4;

type Arrival = { done: true } | { done: false; gen: number; version: number } | { broken: string };

export class Barriers {
  constructor(
    private readonly node: SyncNode,
    private readonly directory: SyncDirectory,
  ) {}

  async wait(name: string, parties: number): Promise<void> {
    if (!Number.isSafeInteger(parties) || parties < 1 || parties > MAX_NODES) {
      throw new InvalidOptionError(`dsm.barrier: parties must be a whole number from 1 to ${MAX_NODES} (one party per node), got ${String(parties)}`);
    }
    const node = this.node;
    const ptr = await this.directory.object('barrier', name);
    const view = new MembershipCache(node);
    await view.refresh();
    if (view.size < parties) throw new BarrierBrokenError(name, `it has ${parties} parties but the cluster has ${view.size} member(s)`);
    const w = ptr >>> 2;
    const page = Math.floor(ptr / node.pageSize);
    const u32 = node.u32;
    const me = node.nodeId();
    const arrival = await node.run((): Arrival => {
      const gen = u32[w + GEN];
      const count = u32[w + COUNT];
      if (count > 0 && u32[w + PARTIES] !== parties) {
        throw new InvalidOptionError(`dsm.barrier("${name}", ${parties}): the parties already waiting passed ${u32[w + PARTIES]} parties; every party must pass the same number`);
      }
      for (let i = 0; i < count; i++) {
        const id = u32[w + IDS + i];
        if (id === me) throw new InvalidOptionError(`dsm.barrier("${name}"): this node is already waiting at it; a barrier takes one party per node`);
        if (view.gone(id)) {
          breakGeneration(u32, w, gen);
          return { broken: `node ${id}, which had arrived, was removed from the cluster` };
        }
      }
      if (count + 1 === parties) {
        u32[w + BROKEN] &= ~(1 << (gen & 31));
        u32[w + GEN] = (gen + 1) >>> 0;
        u32[w + COUNT] = 0;
        return { done: true };
      }
      u32[w + PARTIES] = parties;
      u32[w + IDS + count] = me;
      u32[w + COUNT] = count + 1;
      return { done: false, gen, version: Number(node.versions[page]) };
    });
    if ('broken' in arrival) throw new BarrierBrokenError(name, arrival.broken);
    if (arrival.done) return;
    const gen = arrival.gen;
    let version = arrival.version;
    for (;;) {
      await view.waitChange(page, version);
      const st = await node.run(() => {
        // The object first, then its version: a commit after this read dooms the run.
        const s = { gen: u32[w + GEN], broken: u32[w + BROKEN], ids: Array.from(u32.subarray(w + IDS, w + IDS + u32[w + COUNT])) };
        return { ...s, version: Number(node.versions[page]) };
      });
      version = st.version;
      if (st.gen !== gen) {
        // More than 32 generations on (possible only with more members than parties), the
        // bit is another generation's: taken as completed.
        if (((st.gen - gen) >>> 0) <= 32 && (st.broken >>> (gen & 31)) & 1) throw new BarrierBrokenError(name, 'a party was removed from the cluster while this one waited');
        return;
      }
      const dead = st.ids.find((id) => view.gone(id));
      const why =
        dead !== undefined
          ? `node ${dead}, which had arrived, was removed from the cluster`
          : view.size < parties
            ? `it has ${parties} parties but ${view.size} member(s) remain`
            : undefined;
      if (why === undefined) continue;
      // Committed, so parties that have not noticed yet are woken and fail too.
      const broke = await node.run(() => {
        if (u32[w + GEN] !== gen) return false;
        breakGeneration(u32, w, gen);
        return true;
      });
      if (broke) throw new BarrierBrokenError(name, why);
      // Completed or broken by another party meanwhile: the next read says which.
    }
  }
}

function breakGeneration(u32: Uint32Array, w: number, gen: number): void {
  u32[w + BROKEN] |= 1 << (gen & 31);
  u32[w + GEN] = (gen + 1) >>> 0;
  u32[w + COUNT] = 0;
}
