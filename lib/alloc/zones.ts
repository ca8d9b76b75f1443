// Allocator zones (MMS): each node keeps a few spare chunks of its own, carved in advance,
// so taking a chunk for a size class writes only that node's pages. Without them every
// chunk a node took went through the buddy manager (the superblock's free lists, the link
// and page-kind tables), and two nodes taking chunks at the same moment conflicted there.
//
// A zone below ZONE_LOW spare chunks is refilled in one take from the manager: ZONE_FIRST
// chunks the first time, twice as many each next time up to ZONE_MOST_PAGES, so a node that
// allocates a lot goes to the manager (the only place nodes can still conflict) less and
// less often, and one that allocates little keeps little in reserve.
// Balancing: when the manager has no block left for a refill, a spare chunk is taken from
// the zone that has the most; when a large object finds no block, every zone's spare
// chunks go back to the manager (merging with their buddies) and the allocation is tried
// again.
import type { Buddy } from './buddy';
import { OutOfMemoryError } from './errors';
import type { Journal } from './journal';
import { PageKind, SB, SLOTS, SPARE_KIND, tagOf, ZONE_AT, ZONE_FIRST, ZONE_LOW, ZONE_MAX, ZONE_MOST_PAGES, ZONE_REFILLS_AT } from './layout';

export class Zones {
  private readonly pageWords: number;
  private readonly chunkPages: number;

  constructor(
    private readonly u32: Uint32Array,
    pageSize: number,
    private readonly chunkOrder: number,
    private readonly buddy: Buddy,
    private readonly journal: Journal,
  ) {
    this.pageWords = pageSize >>> 2;
    this.chunkPages = 1 << chunkOrder;
  }

  /** Spare chunks in the zone of the allocator slot whose header is `header`. */
  count(header: number): number {
    return this.u32[header * this.pageWords + ZONE_AT];
  }

  /** The first pages of that zone's spare chunks. */
  spares(header: number): number[] {
    const at = header * this.pageWords + ZONE_AT;
    return Array.from(this.u32.subarray(at + 1, at + 1 + Math.min(this.u32[at], ZONE_MAX)));
  }

  /**
   * A chunk for allocator slot `slot` (header page `header`), its page kinds set and its header
   * page all zero but for the tag, which the caller writes. `bytes`: for the error.
   */
  take(slot: number, header: number, bytes: number): number {
    if (this.count(header) < ZONE_LOW) this.refill(slot, header);
    if (this.count(header) === 0 && !this.steal(slot, header)) throw new OutOfMemoryError(bytes);
    return this.pop(header);
  }

  /** Gives every zone's spare chunks back to the buddy manager; returns how many. */
  reclaimAll(): number {
    let n = 0;
    for (let id = 0; id < SLOTS; id++) {
      const h = this.u32[SB.slotHeaders + id];
      if (h === 0) continue;
      while (this.count(h) > 0) {
        const c = this.pop(h);
        this.journal.w32(c * this.pageWords, 0);
        for (let i = 1; i < this.chunkPages; i++) this.buddy.setKind(c + i, PageKind.none);
        // free() clears the first page's kind and merges with free buddies.
        this.buddy.free(c, this.chunkOrder);
        n++;
      }
    }
    return n;
  }

  /** Takes the largest block up to the zone's next refill size the manager has, carved into spares. */
  private refill(slot: number, header: number): void {
    const refills = header * this.pageWords + ZONE_REFILLS_AT;
    const n = this.u32[refills];
    const want = Math.min(ZONE_FIRST * 2 ** Math.min(n, 8), (ZONE_MOST_PAGES >> this.chunkOrder) - this.count(header));
    this.journal.w32(refills, n + 1);
    for (let order = this.chunkOrder + Math.floor(Math.log2(want)); order >= this.chunkOrder; order--) {
      const block = this.buddy.tryAlloc(order);
      if (block === 0) continue;
      for (let c = block; c < block + (1 << order); c += this.chunkPages) this.carve(slot, header, c);
      return;
    }
  }

  /** Balancing: moves one spare chunk from the zone with the most to this slot's. */
  private steal(slot: number, header: number): boolean {
    let from = 0;
    let most = 0;
    for (let id = 0; id < SLOTS; id++) {
      const h = this.u32[SB.slotHeaders + id];
      if (h === 0 || h === header) continue;
      const n = this.count(h);
      if (n > most) {
        most = n;
        from = h;
      }
    }
    if (from === 0) return false;
    const c = this.pop(from);
    this.journal.w32(c * this.pageWords, tagOf(slot, SPARE_KIND, 0));
    this.push(header, c);
    return true;
  }

  /** Makes the free block at `c` (chunkPages pages, zero) a spare chunk of `slot`'s zone. */
  private carve(slot: number, header: number, c: number): void {
    this.journal.fresh(c);
    for (let i = 0; i < this.chunkPages; i++) this.buddy.setKind(c + i, PageKind.chunk | i);
    this.journal.w32(c * this.pageWords, tagOf(slot, SPARE_KIND, 0));
    this.push(header, c);
  }

  private push(header: number, c: number): void {
    const at = header * this.pageWords + ZONE_AT;
    const n = this.u32[at];
    this.journal.w32(at + 1 + n, c);
    this.journal.w32(at, n + 1);
  }

  private pop(header: number): number {
    const at = header * this.pageWords + ZONE_AT;
    const n = this.u32[at] - 1;
    const c = this.u32[at + 1 + n];
    this.journal.w32(at + 1 + n, 0);
    this.journal.w32(at, n);
    return c;
  }
}
