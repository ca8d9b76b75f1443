// Page watches: the app waits for a commit to change one of a few pages, or for the
// configuration to change, without polling (locks, lib/sync). A watch is
// answered as soon as a page's version passes the one the app saw, or the configuration
// epoch differs from the one it knew; checked whenever commits are applied here.

/** What the app learns about the configuration from a watch's answer. */
export interface MembershipView {
  epoch: number;
  /** The ids of the configuration's members that run transactions (page servers left out). */
  members: number[];
  /** Every id below this was given out; one of them not in `members` is gone for good. */
  nextId: number;
}

interface Watch {
  pages: number[];
  since: number[];
  epoch: number;
  answer: (view: MembershipView) => void;
}

/** Watches live in the service thread; `versions` is the native page table's. */
export class PageWatches {
  private watches: Watch[] = [];

  constructor(
    private readonly versions: () => BigUint64Array | undefined,
    private readonly membership: () => MembershipView,
  ) {}

  /** Answers at once if a page already changed or the configuration did. */
  add(pages: number[], since: number[], epoch: number, answer: (view: MembershipView) => void): void {
    const w = { pages, since, epoch, answer };
    if (!this.fire(w)) this.watches.push(w);
  }

  /** After commits or configurations were applied here. */
  check(): void {
    if (this.watches.length) this.watches = this.watches.filter((w) => !this.fire(w));
  }

  /** Answers every watch (the service is closing): the app then finds itself closed. */
  flush(): void {
    const ws = this.watches;
    this.watches = [];
    const view = this.membership();
    for (const w of ws) w.answer(view);
  }

  private fire(w: Watch): boolean {
    const view = this.membership();
    let changed = view.epoch !== w.epoch;
    const v = this.versions();
    for (let i = 0; !changed && v && i < w.pages.length; i++) changed = w.pages[i] < v.length && v[w.pages[i]] > BigInt(w.since[i]);
    if (changed) w.answer(view);
    return changed;
  }
}
