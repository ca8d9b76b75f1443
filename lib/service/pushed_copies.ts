// Read copies of sequential pages pushed at barriers (README "Consistency models"; the
// ownership protocol itself is in sequential.ts).
//
// An SPMD program reads after a barrier what its neighbours wrote before it (a stencil's
// halo), and its neighbours write those pages again only after a later barrier. Plain IVY
// costs two round trips per page and sweep for that: the reader's fault after the barrier,
// and the owner's invalidation before its next write. Both go:
// - Push. At its arrival at a barrier, an owner sends read copies of the pages it wrote
//   since their readers lost their copies (to its write, or by dropping a pushed copy) to
//   those readers, unasked, before the arrival itself. It is what a read fault would fetch,
//   only earlier: the owner drops its write access first (its next write invalidates the
//   copy as any other), and the copy travels on the same connection as the arrival or the
//   release that follows it, so with two nodes, or with the coordinator at either end, it
//   is in place before the reader goes on. With a third node coordinating, the release may
//   overtake it: the reader's fault then asks the owner as usual, and the copy that answer
//   brings lives until invalidated, like any copy asked for (served()).
// - Self-invalidation (Lebeck and Wood's dynamic self-invalidation). A pushed copy lives
//   until its reader's next arrival at that barrier: the reader drops it then, before the
//   arrival goes out. So once the owner is released from a later round of the barrier with
//   the reader among its parties, the reader holds no such copy any more, and the owner
//   takes it out of its copy set; a page with no copy left is written again without a
//   message. A reader that has already arrived at a later round ignores the push (it would
//   never drop it); a reader fetching, taking or holding the page ignores it too. The owner
//   may then count a copy that is not there, which costs an acknowledged invalidation, never
//   a stale read.
// Pages of other models, and a node's own pages, are never pushed. A push names its pages'
// generation (one per message): a reader that knows another (the block was freed and
// allocated again on one side of the push) ignores it, and a copy of the freed block never
// stands for the new one (test: stale_messages.test.ts).
import { LOST_OWNER, Msg } from './protocol';
import { decodePush, encodePush, type SeqPush } from './sequential_wire';
import type { HeldForTest } from './held_for_test';
import type { Cluster } from './cluster';
import { MODEL_HERE, MODEL_MASK, PageModel, PageState } from '../native';

const SEQUENTIAL = PageModel.sequential;
/** A page written here since its last copy went out (handler-granted writes leave no other trace). */
const WRITTEN = PageState.write;
/**
 * At a barrier arrival an owner pushes read copies of at most this many pages (those its
 * readers lost); more are left to faults.
 */
const PUSH_MAX = 64;
/** Pages pushed in one message (a run of consecutive pages to one reader). */
const PUSH_RUN = 16;
/** A former reader of a page this node has not written for this many barrier arrivals is forgotten. */
const PUSH_IDLE_MAX = 2;

/** The barrier round at whose arrival an owner pushed a copy: a barrier's name and generation. */
interface PushRound {
  name: string;
  gen: number;
}

/** What the push needs of the sequential protocol's state (sequential.ts). */
export interface CopyHost {
  /** The native page table's model bytes. */
  models: Uint8Array;
  /** Owner: the nodes holding a read copy, per page. */
  copies: Map<number, Set<number>>;
  /** The page is being fetched, taken or handed on here. */
  moving(page: number): boolean;
  counts: { pushed: number };
  /** The generation of a page (model_table.ts). */
  generationOf(page: number): number;
  heldForTest: HeldForTest;
}

export class PushedCopies {
  /**
   * Owner: per page, the readers that lost their copies and have not had one back, with how
   * many of this node's barrier arrivals the page went unwritten since.
   */
  private readonly formerReaders = new Map<number, { readers: Set<number>; idle: number }>();
  /** Owner: per page, the readers holding a copy pushed at a barrier arrival here, and that round. */
  private readonly pushedTo = new Map<number, Map<number, PushRound>>();
  /** Reader: the copies pushed here, per page, with the owner's round. */
  private readonly pushedHere = new Map<number, PushRound>();
  private readonly page: Uint8Array;

  constructor(
    private readonly n: Cluster,
    private readonly host: CopyHost,
  ) {
    this.page = new Uint8Array(n.config.pageSize);
  }

  private sequential(page: number): boolean {
    return (this.host.models[page] & MODEL_MASK) === SEQUENTIAL;
  }

  // ---- owner ----

  /** Pages [page, end) are about to lose their readers to this owner's write. */
  rememberReaders(page: number, end: number): void {
    for (let q = page; q < end; q++) {
      const c = this.host.copies.get(q);
      if (c) for (const id of c) this.rememberReader(q, id);
    }
  }

  private rememberReader(page: number, id: number): void {
    let f = this.formerReaders.get(page);
    if (!f) {
      if (this.formerReaders.size >= PUSH_MAX) return;
      this.formerReaders.set(page, (f = { readers: new Set(), idle: 0 }));
    }
    f.readers.add(id);
    f.idle = 0;
  }

  /**
   * This node arrives at round `gen` of barrier `name` (barriers.ts, before the arrival is
   * sent): the pages written since their readers lost their copies go to those readers.
   */
  push(name: string, gen: number): void {
    if (this.formerReaders.size === 0) return;
    const n = this.n;
    const byReader = new Map<number, number[]>();
    for (const [page, f] of this.formerReaders) {
      if (!this.sequential(page) || n.table.owners[page] !== n.id || n.table.states[page] === 0) {
        this.formerReaders.delete(page);
        continue;
      }
      // Only what was written since the readers lost their copies: what they read next.
      if (n.table.states[page] !== WRITTEN || this.host.moving(page)) {
        if (++f.idle > PUSH_IDLE_MAX) this.formerReaders.delete(page);
        continue;
      }
      this.formerReaders.delete(page);
      const holders = this.host.copies.get(page);
      for (const id of f.readers) {
        // A reader holding a copy it asked for keeps that one (it lives until invalidated);
        // one about to leave gets none (leave_intent.ts).
        if (id === n.id || !n.members.has(id) || holders?.has(id) || n.leaving.intent.intends(id)) continue;
        let ps = byReader.get(id);
        if (!ps) byReader.set(id, (ps = []));
        ps.push(page);
      }
    }
    const size = n.config.pageSize;
    for (const [id, pages] of byReader) {
      pages.sort((a, b) => a - b);
      for (let i = 0; i < pages.length; ) {
        // A run of one generation: a push names one.
        const generation = this.host.generationOf(pages[i]);
        let k = 1;
        while (k < PUSH_RUN && i + k < pages.length && pages[i + k] === pages[i] + k && this.host.generationOf(pages[i + k]) === generation) k++;
        const data = new Uint8Array(k * size);
        for (let j = 0; j < k; j++) {
          const q = pages[i + j];
          // Write access goes first: a write after this faults and invalidates the copy.
          n.native.shareSequential(q, this.page, false, 0);
          data.set(this.page, j * size);
          let c = this.host.copies.get(q);
          if (!c) this.host.copies.set(q, (c = new Set()));
          c.add(id);
          let t = this.pushedTo.get(q);
          if (!t) this.pushedTo.set(q, (t = new Map()));
          t.set(id, { name, gen });
          this.host.counts.pushed++;
        }
        n.links.send(id, Msg.SeqPush, encodePush(pages[i], name, gen, generation, data));
        i += k;
      }
    }
  }

  /**
   * This node was released from round `gen` of barrier `name` with `ids` as its parties:
   * each of them arrived there, and so dropped the copies pushed to it at earlier rounds.
   * They leave the copy sets; a page with no copy left is written here again without a
   * message.
   */
  expired(name: string, gen: number, ids: readonly number[]): void {
    const n = this.n;
    for (const [q, readers] of this.pushedTo) {
      for (const [id, r] of readers) {
        if (r.name !== name || r.gen >= gen || !ids.includes(id)) continue;
        readers.delete(id);
        this.host.copies.get(q)?.delete(id);
        this.rememberReader(q, id);
      }
      if (readers.size > 0) continue;
      this.pushedTo.delete(q);
      if (this.host.copies.get(q)?.size) continue;
      this.host.copies.delete(q);
      if (this.sequential(q) && n.table.owners[q] === n.id && n.table.states[q] !== 0 && !this.host.moving(q)) n.native.ownSequential(q);
    }
  }

  /** The owner invalidates every copy of `page` (its write, or a hand-over). */
  invalidated(page: number): void {
    this.pushedTo.delete(page);
  }

  /** The owner sends `reader` a copy it asked for: that one lives until invalidated, whatever was pushed before (the push may still be on its way, and be ignored there). */
  served(page: number, reader: number): void {
    this.pushedTo.get(page)?.delete(reader);
  }

  // ---- reader ----

  /** SeqPush: read copies pushed by their owner at its arrival at (name, gen). */
  onPush(from: number, p: Buffer): void {
    const push = decodePush(p, this.n.config.numPages, this.n.config.pageSize, PUSH_RUN);
    if (this.host.heldForTest.hold('push', push.page, () => this.take(from, push))) return;
    this.take(from, push);
  }

  private take(from: number, { page, name, gen, generation, data }: SeqPush): void {
    const n = this.n;
    const ps = n.config.pageSize;
    if (n.barriers.arrivedAt(name) > gen) return;
    for (let i = 0; i < data.length / ps; i++) {
      const q = page + i;
      if (!this.sequential(q) || n.table.states[q] !== 0 || n.table.owners[q] === n.id || n.table.owners[q] === LOST_OWNER || this.host.moving(q)) continue;
      // Of another life of the page than this node knows: not a copy of what it now holds.
      if (this.host.generationOf(q) !== generation) continue;
      n.native.installSequential(q, data.subarray(i * ps, (i + 1) * ps), false, from);
      this.pushedHere.set(q, { name, gen });
    }
  }

  /** This node arrives at round `gen` of barrier `name` (before the arrival is sent): the copies pushed at earlier rounds of it go. */
  arriving(name: string, gen: number): void {
    const n = this.n;
    for (const [q, r] of this.pushedHere) {
      if (r.name !== name || r.gen >= gen) continue;
      this.pushedHere.delete(q);
      if (this.sequential(q) && n.table.states[q] !== 0 && !(this.host.models[q] & MODEL_HERE)) n.native.dropSequential(q, n.table.owners[q]);
    }
  }

  /** The copy of `page` here went another way (invalidated, replaced, taken over, lost). */
  dropped(page: number): void {
    this.pushedHere.delete(page);
  }

  // ---- both ----

  /** The page left the sequential model (freed, or its model changed). */
  freed(page: number): void {
    this.formerReaders.delete(page);
    this.pushedTo.delete(page);
    this.pushedHere.delete(page);
  }

  memberGone(id: number): void {
    for (const f of this.formerReaders.values()) f.readers.delete(id);
    for (const t of this.pushedTo.values()) t.delete(id);
  }

  clear(): void {
    this.formerReaders.clear();
    this.pushedTo.clear();
    this.pushedHere.clear();
  }

  debugState(): Record<string, unknown> {
    const round = (r: PushRound) => `${r.name}:${r.gen}`;
    return {
      formerReaders: [...this.formerReaders].slice(0, 32).map(([p, f]) => ({ page: p, readers: [...f.readers], idle: f.idle })),
      pushedTo: [...this.pushedTo].slice(0, 32).map(([p, t]) => ({ page: p, readers: [...t].map(([id, r]) => `${id}@${round(r)}`) })),
      pushedHere: [...this.pushedHere].slice(0, 32).map(([p, r]) => ({ page: p, round: round(r) })),
    };
  }
}
