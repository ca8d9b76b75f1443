// A test hook (DSM_TEST_HOLD_SEQUENTIAL=grant,invalidation,push, or some of them): the first
// ownership grant, invalidation or pushed copy of each sequential page a node receives is held until that page's model
// changes here to one outside transactional consistency (its block freed and allocated
// again), then taken in, as if they had been slow on the way. It makes the arrival of a
// message about a page's earlier life after its new one began happen on demand (test:
// stale_messages.test.ts). Off, it holds nothing.
import { PageModel } from '../native';

export type HeldKind = 'grant' | 'invalidation' | 'push';

export class HeldForTest {
  private readonly kinds = new Set((process.env.DSM_TEST_HOLD_SEQUENTIAL ?? '').split(',').filter(Boolean));
  private readonly held = new Map<number, Array<() => void>>();
  private readonly once = new Set<string>();

  /** True if `take` (the message's handling) is held for `page`; it runs later (modelChanged). */
  hold(kind: HeldKind, page: number, take: () => void): boolean {
    if (!this.kinds.has(kind) || this.once.has(`${kind} ${page}`)) return false;
    this.once.add(`${kind} ${page}`);
    let q = this.held.get(page);
    if (!q) this.held.set(page, (q = []));
    q.push(take);
    return true;
  }

  /** Page `page` has model `model` now: its held messages are taken in next tick. */
  modelChanged(page: number, model: number): void {
    const q = this.held.get(page);
    if (!q || model === PageModel.transactional) return;
    this.held.delete(page);
    process.nextTick(() => {
      for (const take of q) take();
    });
  }

  clear(): void {
    this.held.clear();
  }
}
