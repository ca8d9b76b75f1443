// The central memory manager: a buddy allocator over page runs of the region's data area.
// Blocks are 2^order pages, aligned to their size relative to the first data page, so a
// block's buddy is found by flipping one bit. Free lists are doubly linked through a link
// table beside the page kinds (layout.ts), not through the blocks: free memory stays all
// zero, and allocating or splitting a block touches none of its pages.
import { OutOfMemoryError } from './errors';
import type { Journal } from './journal';
import { type Geometry, LAYOUT_VERSION, MAGIC, MODEL_TAG, PageKind, SB } from './layout';

export interface Words {
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
}

export class Buddy {
  // The region's shape, fixed when the heap is formatted (and checked against the
  // superblock when a node opens it): taken from the geometry, not read from the
  // superblock, so that freeing a small object does not put page 0 in the transaction's
  // read set, where every other node's zone refill or large allocation would doom it.
  readonly dataStart: number;
  readonly pages: number;
  readonly maxOrder: number;
  private readonly kindsAt: number; // byte offset of the page-kind array
  private readonly linksAt: number; // byte offset of the link table (u32 next, prev per page)

  constructor(
    private readonly m: Words,
    g: Geometry,
    private readonly journal: Journal, // every write of the manager's goes through it
    // Told of every block handed out: a run reading the tables before another node's
    // allocation of the same pages arrived must not reach that node's block (native claimFresh).
    private readonly taken?: (page: number, count: number) => void,
  ) {
    this.dataStart = g.dataStart;
    this.pages = g.pages;
    this.maxOrder = Math.floor(Math.log2(g.pages - g.dataStart));
    this.kindsAt = g.kindsAt;
    this.linksAt = g.linksAt;
  }

  private get sbWords(): Uint32Array {
    return this.m.u32;
  }
  kind(page: number): number {
    return this.m.u8[this.kindsAt + page];
  }
  setKind(page: number, k: number): void {
    this.journal.w8(this.kindsAt + page, k);
  }
  /** The model of the allocated block starting at `page` (MODELS; 0 for transactional). */
  model(page: number): number {
    const w = this.m.u32[this.link(page)];
    return (w & 0xff000000) === MODEL_TAG ? w & 0xff : 0;
  }
  /** Records a non-transactional block's model (an allocated block's links are unused). */
  setModel(page: number, model: number): void {
    this.journal.w32(this.link(page), (MODEL_TAG | model) >>> 0);
  }
  /**
   * Counts a lost page declared again (tx.discardLost) in the page's second link word, which
   * no allocated block uses (push() sets both words of a block it frees): a change the
   * transaction commits, so two nodes discarding the page at once conflict. (Writing a word
   * unchanged is no change: the commit leaves the page out.)
   */
  countRedeclared(page: number): void {
    const w = this.link(page) + 1;
    this.journal.w32(w, (this.m.u32[w] + 1) >>> 0);
  }
  private link(page: number): number {
    return (this.linksAt >>> 2) + 2 * page;
  }

  /** Carves the data area into the largest aligned free blocks (on a fresh region). */
  format(): void {
    let p = this.dataStart;
    while (p < this.pages) {
      let order = 0;
      while (order < this.maxOrder && ((p - this.dataStart) & ((2 << order) - 1)) === 0 && p + (2 << order) <= this.pages) order++;
      this.push(p, order);
      p += 1 << order;
    }
  }

  /** Allocates 2^order pages, all zero; returns the first page number. */
  alloc(order: number, bytes: number): number {
    const page = this.tryAlloc(order);
    if (page === 0) throw new OutOfMemoryError(bytes);
    return page;
  }

  /** alloc(), or 0 when no free block is large enough. */
  tryAlloc(order: number): number {
    let k = order;
    const heads = this.sbWords;
    while (k <= this.maxOrder && heads[SB.freeHeads + k] === 0) k++;
    if (k > this.maxOrder) return 0;
    const page = heads[SB.freeHeads + k];
    this.unlink(page, k);
    // Split down, returning the upper halves to the free lists.
    while (k > order) {
      k--;
      this.push(page + (1 << k), k);
    }
    this.setKind(page, PageKind.allocated | order);
    this.taken?.(page, 1 << order);
    return page;
  }

  /** Frees the block starting at `page` (2^order pages, zeroed by the caller), merging with free buddies. */
  free(page: number, order: number): void {
    this.setKind(page, PageKind.none);
    let p = page;
    let k = order;
    while (k < this.maxOrder) {
      const buddy = this.dataStart + ((p - this.dataStart) ^ (1 << k));
      if (buddy + (1 << k) > this.pages || this.kind(buddy) !== PageKind.freeBase + k) break;
      this.unlink(buddy, k);
      this.setKind(buddy, PageKind.none);
      p = Math.min(p, buddy);
      k++;
    }
    this.push(p, k);
  }

  private push(page: number, order: number): void {
    const j = this.journal;
    const head = this.sbWords[SB.freeHeads + order];
    const w = this.link(page);
    j.w32(w, head); // next
    j.w32(w + 1, 0); // prev
    if (head) j.w32(this.link(head) + 1, page);
    j.w32(SB.freeHeads + order, page);
    this.setKind(page, PageKind.freeBase + order);
  }

  private unlink(page: number, order: number): void {
    const w = this.link(page);
    const next = this.m.u32[w];
    const prev = this.m.u32[w + 1];
    const j = this.journal;
    if (prev) j.w32(this.link(prev), next);
    else j.w32(SB.freeHeads + order, next);
    if (next) j.w32(this.link(next) + 1, prev);
    this.setKind(page, PageKind.none);
  }

  /** Free blocks of each order, by walking the lists (for the checker). */
  freeLists(): number[][] {
    const out: number[][] = [];
    for (let k = 0; k <= this.maxOrder; k++) {
      const l: number[] = [];
      for (let p = this.sbWords[SB.freeHeads + k]; p && l.length <= this.pages; p = this.m.u32[this.link(p)]) l.push(p);
      out.push(l);
    }
    return out;
  }
}

/**
 * The allocated blocks outside transactional consistency, read from a heap's tables (`m`
 * holds at least the pages below the first data page): what a page server that founds the
 * cluster again from its store must declare to its page table, which starts knowing no
 * models. An unformatted heap has none.
 */
export function modelBlocks(m: Words, g: Geometry): Array<{ first: number; count: number; model: number }> {
  const out: Array<{ first: number; count: number; model: number }> = [];
  // A heap of another layout (chunk sizes differ between versions) is not read: its nodes
  // refuse to open it, saying which version to run.
  if (m.u32[SB.magic] !== MAGIC || m.u32[SB.version] !== LAYOUT_VERSION) return out;
  const end = Math.min(m.u32[SB.pages], g.pages);
  for (let p = m.u32[SB.dataStart]; p < end; ) {
    const k = m.u8[g.kindsAt + p];
    let span = 1;
    if (k >= PageKind.freeBase && k < PageKind.allocated) span = 1 << (k - PageKind.freeBase);
    else if (k === PageKind.chunk) span = g.chunkPages;
    else if ((k & 0xc0) === PageKind.allocated) {
      span = 1 << (k & 0x3f);
      const w = m.u32[(g.linksAt >>> 2) + 2 * p];
      if ((w & 0xff000000) === MODEL_TAG && (w & 0xff) !== 0) out.push({ first: p, count: Math.min(span, end - p), model: w & 0xff });
    }
    p += span;
  }
  return out;
}
