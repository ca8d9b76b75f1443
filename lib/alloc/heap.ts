// The heap inside the region: superblock, named roots, the buddy memory manager and
// per-node allocators (DESIGN.md "Allocators"; layout in layout.ts). All state lives in
// the region, so an aborted transaction's allocations vanish with its shadow pages.
import { Buddy } from './buddy';
import { InvalidOptionError } from '../errors';
import { checkKeys } from '../options';
import { HeapLayoutError, InvalidFreeError, OutOfMemoryError, RootError } from './errors';
import { Journal } from './journal';
import { Zones } from './zones';
import { type AllocKind, type Model, MODELS, CHUNK_BITMAP, CHUNK_TAG, CLASS_OF, CLASSES, ENTRY_WORDS, type Geometry, geometry, KINDS, LAYOUT_VERSION, MAGIC, PageKind, ROOT_BYTES, ROOT_NAME_MAX, ROOTS, SB, SLOTS, SMALL_MAX, SPARE_KIND, tagOf } from './layout';

/** What the heap needs from its node. */
export interface HeapView {
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly nodeId: number;
  readonly pageSize: number;
  readonly regionSize: number;
}

/** Inside a transaction: pages that take a model when it commits (native declareModel). */
export type DeclareModel = (firstPage: number, count: number, model: number) => void;
/** Inside a transaction: pages the buddy manager handed out (native claimFresh). */
export type ClaimFresh = (firstPage: number, count: number) => void;

/** Runs a function as a transaction on the node (used to format or check the superblock). */
export type RunTransaction = <T>(fn: () => T) => Promise<T>;

const encoder = new TextEncoder();
const ALLOC_OPTIONS = ['kind', 'model'];

export class Heap {
  private buddy!: Buddy;
  private zones!: Zones;
  /**
   * @internal Chunks come from per-node zones (zones.ts). Off: straight from the buddy
   * manager, as before zones, reading the superblock on every allocation (the benchmark's
   * baseline).
   */
  zoned = true;
  /**
   * Allocator header pages by slot, as committed. A header page never moves once made,
   * so after the first read the superblock need not be read again: allocating does not
   * put the superblock in the transaction's read set, and another node's chunk take
   * (which writes it) does not doom it.
   */
  private readonly headers = new Map<number, number>();
  /** The node id whose committed slot and header page ownSlot and ownHeader are. */
  private ownNode = -1;
  private ownSlot = -1;
  private ownHeader = 0;
  /** The slot this run allocates through (set with its header page, see slotHeader). */
  private runSlot = -1;
  /** A slot this run claimed, or whose header page it made (known to others once it commits). */
  private claimed?: { node: number; slot: number };
  private opened = false;
  // The node's views are fixed for its life (the region never moves), so keep them at hand.
  private readonly u32: Uint32Array;
  private readonly pageWords: number;
  /** Pages per small-object chunk (the geometry's; set by open()). */
  private chunkPages = 0;
  /** Every write the heap makes to its metadata, for the guard (guard.ts). */
  readonly journal: Journal;
  /** Where the tables are; set by open(). */
  geometry?: Geometry;

  /** `states`: the page table's page states (the journal reads them). */
  constructor(
    private readonly view: HeapView,
    states: Uint8Array,
    private readonly declareModel?: DeclareModel,
    private readonly claimFresh?: ClaimFresh,
    /**
     * Whether allocator slot `slot`, owned by node id `owner`, may be taken over: its owner
     * left the cluster for good, and its header page is not lost.
     */
    private readonly takeable?: (owner: number, header: number) => boolean,
  ) {
    this.u32 = view.u32;
    this.pageWords = view.pageSize >>> 2;
    this.journal = new Journal(view.u8, view.u32, states, view.pageSize);
  }

  /** Formats the superblock on a fresh region (the first node to open it) or checks an existing one. */
  async open(run: RunTransaction): Promise<void> {
    const v = this.view;
    const g = geometry(v.regionSize, v.pageSize);
    const { pages, dataStart } = g;
    this.geometry = g;
    this.chunkPages = g.chunkPages;
    this.buddy = new Buddy(v, g, this.journal, this.claimFresh);
    this.zones = new Zones(v.u32, v.pageSize, g.chunkOrder, this.buddy, this.journal);
    await run(() => {
      const sb = v.u32;
      if (sb[SB.magic] === 0) {
        // The first node to open the heap formats it: usually the founder, but a cluster
        // founded by a page server has no heap until a node joins. Two nodes racing here
        // format once: the second one's read of page 0 is doomed by the first's commit.
        if (dataStart + 1 >= pages) throw new HeapLayoutError(`a region of ${v.regionSize} bytes is too small for a heap`);
        const j = this.journal;
        j.w32(SB.magic, MAGIC);
        j.w32(SB.version, LAYOUT_VERSION);
        j.w32(SB.pageSize, v.pageSize);
        j.w32(SB.pages, pages);
        j.w32(SB.dataStart, dataStart);
        j.w32(SB.maxOrder, this.buddy.maxOrder);
        this.buddy.format();
        return;
      }
      if (sb[SB.magic] !== MAGIC) throw new HeapLayoutError(`the region's page 0 is not a node-dsm heap (magic ${sb[SB.magic].toString(16)})`);
      if (sb[SB.version] !== LAYOUT_VERSION) {
        throw new HeapLayoutError(`the heap has layout version ${sb[SB.version]}, this node-dsm reads version ${LAYOUT_VERSION}; run the same node-dsm version on every node`);
      }
      if (sb[SB.pageSize] !== v.pageSize || sb[SB.pages] !== pages) {
        throw new HeapLayoutError(
          `the heap was made with page size ${sb[SB.pageSize]} and ${sb[SB.pages]} pages; this node has ${v.pageSize} and ${pages}: use the same pageSize and regionSize on every node`,
        );
      }
    });
    this.opened = true;
  }

  /** Inside a transaction: allocates `size` bytes (zeroed); returns the byte offset into the region. */
  alloc(size: number, opts?: { kind?: AllocKind; model?: Model }): number {
    // The common case first: a small ordinary object, no options.
    if (opts === undefined && size > 0 && size <= SMALL_MAX && (size | 0) === size) return this.allocSmall(0, CLASS_OF[(size + 15) >> 4]);
    if (!Number.isSafeInteger(size) || size <= 0) throw new InvalidOptionError(`tx.alloc: the size must be a positive whole number of bytes, got ${typeof size === 'number' ? size : `${typeof size} ${JSON.stringify(size) ?? String(size)}`}`);
    checkKeys('tx.alloc', opts, ALLOC_OPTIONS);
    const kind = KINDS[opts?.kind ?? 'normal'];
    if (kind === undefined) throw new InvalidOptionError(`tx.alloc: kind must be one of ${Object.keys(KINDS).join(', ')}, got ${String(opts?.kind)}`);
    const model = MODELS[opts?.model ?? 'transactional'];
    if (model === undefined) throw new InvalidOptionError(`tx.alloc: model must be one of ${Object.keys(MODELS).join(', ')}, got ${String(opts?.model)}`);
    if (model !== MODELS.transactional) return this.allocModel(size, model);
    if (size <= SMALL_MAX) return this.allocSmall(kind, CLASS_OF[(size + 15) >> 4]);
    return this.allocPages(size);
  }

  /** Whole pages: free memory is kept zero, so nothing to clear. */
  private allocPages(size: number): number {
    const order = Math.ceil(Math.log2(Math.ceil(size / this.view.pageSize)));
    let page = this.buddy.tryAlloc(order);
    // The zones' spare chunks go back to the manager before a large object is refused.
    if (page === 0 && this.zones.reclaimAll() > 0) page = this.buddy.tryAlloc(order);
    if (page === 0) throw new OutOfMemoryError(size);
    return page * this.view.pageSize;
  }

  /**
   * A non-transactional allocation: whole pages of its own (a block of 2^k pages, all of
   * which take the model), its model recorded in the region and declared to the native
   * page table, which applies it when the transaction commits (an abort forgets it with
   * the allocation).
   */
  private allocModel(size: number, model: number): number {
    if (!this.declareModel) throw new InvalidOptionError('tx.alloc: this node cannot allocate non-transactional pages');
    const ptr = this.allocPages(size);
    const page = ptr / this.view.pageSize;
    this.buddy.setModel(page, model);
    this.declareModel(page, 1 << (this.buddy.kind(page) & 0x3f), model);
    return ptr;
  }

  /**
   * Inside a transaction that declared a lost sequential or migratory page's model again
   * (tx.discardLost): writes a count in the heap's tables, so that the transaction commits
   * as a write (a run writing no page commits nothing the others hear of, and its model
   * change would never reach them) and two nodes doing it at once conflict.
   */
  countRedeclared(page: number): void {
    this.buddy.countRedeclared(page);
  }

  /** The allocator header page of `slot` (0: none yet). */
  private headerOf(slot: number): number {
    const known = this.headers.get(slot);
    if (known !== undefined) return known;
    const h = this.u32[SB.slotHeaders + slot];
    if (h !== 0 && this.zoned && this.claimed?.slot !== slot) this.headers.set(slot, h);
    return h;
  }

  /**
   * This node's allocator header page: through the slot the node owns, or one it claims in
   * this run, making the slot's header page if it has none. Sets runSlot. Reads the slot
   * table (page 0) once in a node's life; the committed answer is kept.
   */
  private slotHeader(node: number): number {
    const u32 = this.u32;
    let slot = -1;
    for (let s = 0; s < SLOTS && slot < 0; s++) if (u32[SB.slotOwners + s] === node + 1) slot = s;
    if (slot < 0) slot = this.claimSlot(node);
    let h = u32[SB.slotHeaders + slot];
    if (h === 0) h = this.makeHeader(node, slot);
    this.runSlot = slot;
    if (this.claimed === undefined && this.zoned) {
      this.ownNode = node;
      this.ownSlot = slot;
      this.ownHeader = h;
    }
    return h;
  }

  /**
   * Takes an allocator slot for `node` in this run: one never used, else (once a cluster's
   * nodes have taken all of them, over its life) a departed node's, whose chunks, free
   * objects and spare chunks the node then allocates from. Never used ones first: with
   * durability 'none' a dead node's pages may be lost, and a node taking its slot over
   * would fail its allocations with ERR_DSM_PAGE_LOST (a slot whose header page is lost
   * is not taken; its chunks are not checked).
   */
  private claimSlot(node: number): number {
    const u32 = this.u32;
    let slot = -1;
    for (let s = 0; s < SLOTS && slot < 0; s++) if (u32[SB.slotOwners + s] === 0) slot = s;
    for (let s = 0; s < SLOTS && slot < 0; s++) if (this.takeable?.(u32[SB.slotOwners + s] - 1, u32[SB.slotHeaders + s])) slot = s;
    if (slot < 0) throw new HeapLayoutError(`all ${SLOTS} allocator slots of the heap belong to live nodes (or to departed ones whose pages were lost): at most ${SLOTS} nodes allocate small objects at once`);
    this.journal.w32(SB.slotOwners + slot, node + 1);
    this.claimed = { node, slot };
    return slot;
  }

  private allocSmall(kind: number, cls: number): number {
    const u32 = this.u32;
    const node = this.view.nodeId;
    // The node's own committed header, on every small allocation: no lookup.
    let h: number;
    if (node === this.ownNode) {
      h = this.ownHeader;
      this.runSlot = this.ownSlot;
    } else h = this.slotHeader(node);
    const e = h * this.pageWords + (kind * CLASSES.length + cls) * ENTRY_WORDS;
    const j = this.journal;
    const obj = u32[e];
    if (obj !== 0) {
      // Reuse: pop the free list; a free object is zero but for its link.
      const w = obj >>> 2;
      j.w32(e, u32[w]);
      u32[w] = 0; // the object's own memory, not metadata
      this.flipSlot(obj, cls);
      return obj;
    }
    const bytes = CLASSES[cls];
    let page = u32[e + 1];
    let off = u32[e + 2];
    if (page === 0 || off + bytes > this.view.pageSize) {
      page++;
      off = 0;
      if (page === 1 || page - u32[e + 3] >= this.chunkPages) page = this.newChunk(h, e, kind, cls);
      j.w32(e + 1, page);
    }
    j.w32(e + 2, off + bytes);
    return page * this.view.pageSize + off;
  }

  /** Takes a fresh chunk for one kind and class of this node; returns its first object page. */
  private newChunk(header: number, e: number, kind: number, cls: number): number {
    let chunk: number;
    if (this.zoned) {
      // Carved already: kinds set, header zero but for the spare tag replaced here.
      chunk = this.zones.take(this.runSlot, header, CLASSES[cls]);
    } else {
      chunk = this.buddy.alloc(this.geometry!.chunkOrder, CLASSES[cls]);
      this.journal.fresh(chunk);
      for (let i = 0; i < this.chunkPages; i++) this.buddy.setKind(chunk + i, PageKind.chunk | i);
    }
    this.journal.w32(chunk * this.pageWords, tagOf(this.runSlot, kind, cls));
    this.journal.w32(e + 3, chunk);
    return chunk + 1;
  }

  /** Flips the free bit of an object's slot in its chunk header (set: free). Returns the new bit. */
  private flipSlot(obj: number, cls: number): number {
    const ps = this.view.pageSize;
    const page = Math.floor(obj / ps);
    const inChunk = this.buddy.kind(page) & 0x3f;
    const chunk = page - inChunk;
    const bytes = CLASSES[cls];
    const slot = (inChunk - 1) * Math.floor(ps / bytes) + (obj - page * ps) / bytes;
    const w = chunk * this.pageWords + CHUNK_BITMAP + (slot >>> 5);
    const bit = 1 << (slot & 31);
    this.journal.w32(w, this.u32[w] ^ bit);
    return this.u32[w] & bit;
  }

  /** The header page of allocator slot `slot`, made in this run for `node`. */
  private makeHeader(node: number, slot: number): number {
    const h = this.buddy.alloc(0, this.view.pageSize);
    this.journal.fresh(h);
    this.buddy.setKind(h, PageKind.nodeHeader);
    this.journal.w32(SB.slotHeaders + slot, h);
    this.claimed = { node, slot };
    return h;
  }

  /** Inside a transaction: frees an allocation. */
  free(ptr: number): void {
    const v = this.view;
    const ps = v.pageSize;
    const u32 = this.u32;
    if (!(ptr > 0 && ptr < v.regionSize && Math.floor(ptr) === ptr)) throw new InvalidFreeError(ptr, 'not a pointer into the region');
    const page = Math.floor(ptr / ps);
    const k = page >= this.buddy.dataStart && page < this.buddy.pages ? this.buddy.kind(page) : PageKind.none;
    if ((k & 0xc0) === PageKind.allocated) {
      if (ptr % ps !== 0) throw new InvalidFreeError(ptr, 'not the start of an allocation');
      const order = k & 0x3f;
      const model = this.buddy.model(page);
      if (model === MODELS.transactional) {
        v.u8.fill(0, ptr, ptr + (ps << order)); // free memory is kept zero
      } else {
        // Not transactional pages: the commit zeroes them on every node (native SetModel)
        // and they are transactional again from then on.
        this.declareModel?.(page, 1 << order, MODELS.transactional);
      }
      this.buddy.free(page, order);
      return;
    }
    if ((k & 0xc0) !== PageKind.chunk || (k & 0x3f) === 0) {
      throw new InvalidFreeError(ptr, k >= PageKind.freeBase && k < PageKind.allocated ? 'double free (the block is free)' : 'not the start of an allocation');
    }
    const chunk = page - (k & 0x3f);
    const tag = u32[chunk * this.pageWords];
    const cls = (tag >>> 20) & 0xf;
    const bytes = CLASSES[cls];
    const off = ptr - page * ps;
    if ((tag & 0xff) !== CHUNK_TAG || off % bytes !== 0 || off + bytes > ps) throw new InvalidFreeError(ptr, 'not the start of an allocation');
    if (((tag >>> 16) & 0xf) === SPARE_KIND) throw new InvalidFreeError(ptr, 'not an allocation (a spare chunk of a zone)');
    // Back to its owner's list, so the object stays on the owner's pages.
    const e = this.headerOf((tag >>> 8) & 0xff) * this.pageWords + (((tag >>> 16) & 0xf) * CLASSES.length + cls) * ENTRY_WORDS;
    if (u32[e + 3] === chunk && (page > u32[e + 1] || (page === u32[e + 1] && off >= u32[e + 2]))) {
      throw new InvalidFreeError(ptr, 'not the start of an allocation (never allocated)');
    }
    if (this.flipSlot(ptr, cls) === 0) {
      this.flipSlot(ptr, cls);
      throw new InvalidFreeError(ptr, 'double free');
    }
    // Free memory is kept zero; small objects are cleared word by word (cheaper than fill()).
    const w = ptr >>> 2;
    if (bytes <= 256) for (let i = w + (bytes >>> 2) - 1; i > w; i--) u32[i] = 0;
    else v.u8.fill(0, ptr + 4, ptr + bytes);
    u32[w] = u32[e]; // the freed object's own memory holds the link
    this.journal.w32(e, ptr);
  }

  /** Inside a transaction: names a pointer so other nodes can find it; 0 removes the name. */
  setRoot(name: string, ptr: number): void {
    const bytes = rootName(name);
    if (!Number.isSafeInteger(ptr) || ptr < 0 || ptr >= this.view.regionSize) throw new RootError(`root "${name}": ${ptr} is not a pointer into the region`);
    let slot = this.findRoot(bytes);
    if (slot < 0) {
      if (ptr === 0) return;
      for (let i = 0; i < ROOTS && slot < 0; i++) if (this.view.u32[this.rootWord(i)] === 0) slot = i;
      if (slot < 0) throw new RootError(`the root table is full (${ROOTS} names); remove one with setRoot(name, 0)`);
    }
    const w = this.rootWord(slot);
    const j = this.journal;
    if (ptr === 0) {
      for (let i = 0; i < ROOT_BYTES / 4; i++) j.w32(w + i, 0);
      return;
    }
    j.w32(w, bytes.length);
    for (let i = 0; i < bytes.length; i++) j.w8(w * 4 + 4 + i, bytes[i]);
    j.w32(w + 15, ptr);
  }

  /** Anywhere: the pointer named `name`, or undefined. */
  root(name: string): number | undefined {
    const bytes = rootName(name);
    if (!this.opened) return undefined;
    const slot = this.findRoot(bytes);
    return slot < 0 ? undefined : this.view.u32[this.rootWord(slot) + 15];
  }

  private rootWord(i: number): number {
    return (this.view.pageSize + i * ROOT_BYTES) / 4;
  }

  private findRoot(bytes: Uint8Array): number {
    const u8 = this.view.u8;
    for (let i = 0; i < ROOTS; i++) {
      const w = this.rootWord(i);
      if (this.view.u32[w] !== bytes.length) continue;
      let same = true;
      for (let j = 0; j < bytes.length && same; j++) same = u8[w * 4 + 4 + j] === bytes[j];
      if (same) return i;
    }
    return -1;
  }

  /** Before each run of a transaction function. */
  beginRun(): void {
    this.journal.reset();
    this.claimed = undefined;
  }

  /** @internal Test hook: writes superblock word `word` as the heap would (to fake another layout). */
  _testWriteSuperblock(word: number, value: number): void {
    this.journal.w32(word, value);
  }

  /** After an abort: the state is in the region, rolled back with it. */
  afterAbort(): void {
    this.claimed = undefined;
  }

  /** After a commit: a header page this run made is now known to every node. */
  afterCommit(): void {
    const c = this.claimed;
    if (c && this.zoned) {
      const h = this.u32[SB.slotHeaders + c.slot];
      this.headers.set(c.slot, h);
      if (c.node === this.view.nodeId) {
        this.ownNode = c.node;
        this.ownSlot = c.slot;
        this.ownHeader = h;
      }
    }
    this.claimed = undefined;
  }

  /** @internal The allocator slot node `node` owns, as committed (-1: none), for tests. */
  slotOf(node: number): number {
    for (let s = 0; s < SLOTS; s++) if (this.u32[SB.slotOwners + s] === node + 1) return s;
    return -1;
  }

  /** @internal The spare chunks in the zone whose node header page is `header`, for the checker. */
  zoneSpares(header: number): number[] {
    return this.zones.spares(header);
  }

  /** @internal The buddy manager, for the checker. */
  get manager(): Buddy {
    return this.buddy;
  }
}

/** A root's name as stored: 1 to ROOT_NAME_MAX bytes of UTF-8 (a number or other value is refused, not turned into text). */
function rootName(name: unknown): Uint8Array {
  if (typeof name !== 'string') throw new RootError(`a root name is a string, got ${name === null ? 'null' : typeof name}`);
  const bytes = encoder.encode(name);
  if (bytes.length === 0 || bytes.length > ROOT_NAME_MAX) throw new RootError(`a root name is 1 to ${ROOT_NAME_MAX} UTF-8 bytes, got ${bytes.length}`);
  return bytes;
}
