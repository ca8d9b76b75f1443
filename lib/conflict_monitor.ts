// The false-sharing monitor: how many of this node's aborts each page caused, and whose
// commits caused them. An abort counts once, against the first commit that doomed the
// run (native doomCause). Memory is bounded: a fixed number of pages is tracked; when the
// table is full, a new page replaces the one with the fewest aborts (the least recent of
// those), so the hottest pages stay and their counts are exact since they were taken in.

/** A page the monitor tracks. */
export interface PageConflicts {
  page: number;
  aborts: number;
  /** Aborts by the id of the node whose commit caused them. */
  byNode: Map<number, number>;
}

/** A page that caused aborts on this node, as `dsm.stats().hotPages` lists it. */
export interface HotPage {
  page: number;
  /** The page's first byte as a pointer (byte offset into the region). */
  ptr: number;
  /** Aborts of this node's transactions this page caused. */
  aborts: number;
  /** Those aborts by the id of the node whose commit caused them. */
  byNode: Record<string, number>;
  /** What the page holds (heap table, whose objects of which size, large object, free). */
  holds: string;
  /** Named roots pointing into what the page holds, and "barrier NAME" / "lock NAME" for the state of those on it. */
  roots: string[];
}

/** Hot pages `dsm.stats()` and `dsm stats --hot` list. */
export const HOT_PAGES_SHOWN = 16;

/** Pages tracked at once (each entry costs a few dozen bytes). */
export const TRACKED_PAGES = 256;

export class ConflictMonitor {
  private readonly pages = new Map<number, PageConflicts & { last: number }>();
  private clock = 0;
  /** Aborts with a known cause, in all (also those of pages no longer tracked). */
  total = 0;

  constructor(private readonly capacity = TRACKED_PAGES) {}

  /** One abort of this node, caused by `node`'s commit to `page`. */
  record(page: number, node: number): void {
    this.total++;
    let e = this.pages.get(page);
    if (!e) {
      if (this.pages.size >= this.capacity) this.evict();
      e = { page, aborts: 0, byNode: new Map(), last: 0 };
      this.pages.set(page, e);
    }
    e.aborts++;
    e.last = ++this.clock;
    e.byNode.set(node, (e.byNode.get(node) ?? 0) + 1);
  }

  /** The `n` pages that caused the most aborts, most first. */
  top(n: number): PageConflicts[] {
    return [...this.pages.values()]
      .sort((a, b) => b.aborts - a.aborts || b.last - a.last)
      .slice(0, n)
      .map(({ page, aborts, byNode }) => ({ page, aborts, byNode: new Map(byNode) }));
  }

  private evict(): void {
    let victim: (PageConflicts & { last: number }) | undefined;
    for (const e of this.pages.values()) if (!victim || e.aborts < victim.aborts || (e.aborts === victim.aborts && e.last < victim.last)) victim = e;
    if (victim) this.pages.delete(victim.page);
  }
}
