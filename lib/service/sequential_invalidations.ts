// The invalidations of sequential pages (IVY's write rule; the protocol in sequential.ts): an
// owner about to write a page, or to hand it on, invalidates every read copy in its copy set
// and goes on once each holder has acknowledged. A holder drops its copy and acknowledges at
// once: an acknowledgement never waits for anything, so invalidations cannot deadlock. An
// invalidation names the generation of its pages: one about an earlier life of a page (its
// block freed and allocated again since, here) is acknowledged and otherwise ignored. Taken
// in, it dropped the new life's copy here, which on the new allocator was the only one.
import { Msg } from './protocol';
import { decodeInvalidate, decodeInvalidateAck, encodeInvalidate } from './sequential_wire';
import type { Cluster } from './cluster';
import type { PushedCopies } from './pushed_copies';
import type { HeldForTest } from './held_for_test';
import { MODEL_MASK, PageModel } from '../native';

export class Invalidations {
  /** Invalidations waiting for acknowledgements, by token, with the message (sent again on a new connection). */
  private readonly acks = new Map<number, { waiting: Set<number>; then: () => void; message: Buffer }>();
  private nextToken = 1;

  constructor(
    private readonly n: Cluster,
    private readonly host: {
      models: Uint8Array;
      /** Owner: the nodes holding a read copy, per page. */
      copies: Map<number, Set<number>>;
      pushes: PushedCopies;
      counts: { invalidationsSent: number };
      /** The generation of a page (model_table.ts). */
      generationOf(page: number): number;
      heldForTest: HeldForTest;
    },
  ) {}

  /**
   * Invalidates every copy of `count` pages from `page` but `except`'s (pages of one
   * generation); `then` runs once all acknowledged.
   */
  send(page: number, count: number, newOwner: number, except: number | undefined, then: () => void): void {
    const { copies, pushes } = this.host;
    const waiting = new Set<number>();
    for (let q = page; q < page + count; q++) {
      const c = copies.get(q);
      pushes.invalidated(q);
      if (!c) continue;
      copies.delete(q);
      for (const id of c) if (id !== except && this.n.members.has(id)) waiting.add(id);
    }
    if (waiting.size === 0) return then();
    const token = this.nextToken;
    this.nextToken = (this.nextToken + 1) >>> 0 || 1;
    const b = encodeInvalidate(page, count, newOwner, token, this.host.generationOf(page));
    this.acks.set(token, { waiting, then, message: b });
    for (const id of waiting) {
      this.host.counts.invalidationsSent++;
      this.n.links.send(id, Msg.SeqInvalidate, b);
    }
  }

  /** SeqInvalidate: drop the copy, acknowledge at once. */
  onInvalidate(from: number, p: Buffer): void {
    const { page, count, owner, generation, ack } = decodeInvalidate(p, this.n.config.numPages);
    if (this.host.heldForTest.hold('invalidation', page, () => this.take(from, page, count, owner, generation, ack))) return;
    this.take(from, page, count, owner, generation, ack);
  }

  private take(from: number, page: number, count: number, owner: number, generation: number, ack: Buffer): void {
    for (let q = page; q < page + count; q++) {
      if (this.host.generationOf(q) > generation) continue;
      this.host.pushes.dropped(q);
      if ((this.host.models[q] & MODEL_MASK) === PageModel.sequential) this.n.native.dropSequential(q, owner);
    }
    this.n.links.send(from, Msg.SeqInvalidateAck, ack);
  }

  /** SeqInvalidateAck. */
  onAck(from: number, p: Buffer): void {
    this.acknowledged(decodeInvalidateAck(p), from);
  }

  /**
   * A connection to member `id` was bound again: the invalidations it has not acknowledged
   * go to it again (one, or its acknowledgement, may have gone down with the connection
   * before; the write waited for good). Taken twice, an invalidation drops nothing more:
   * the pages stay busy here until every acknowledgement is in, so no new copy of them was
   * granted meanwhile, and the second acknowledgement finds nobody waiting.
   */
  linkBound(id: number): void {
    for (const a of this.acks.values()) if (a.waiting.has(id)) this.n.links.send(id, Msg.SeqInvalidate, a.message);
  }

  /** A member left: it holds no copy to acknowledge any more. */
  memberGone(id: number): void {
    for (const [token, a] of [...this.acks]) if (a.waiting.has(id)) this.acknowledged(token, id);
  }

  private acknowledged(token: number, from: number): void {
    const a = this.acks.get(token);
    if (!a || !a.waiting.delete(from) || a.waiting.size > 0) return;
    this.acks.delete(token);
    a.then();
  }

  /** The members each waiting invalidation waits for (a stuck cluster's diagnosis). */
  debugState(): number[][] {
    return [...this.acks.values()].map((a) => [...a.waiting]);
  }
}
