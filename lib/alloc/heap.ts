// The heap inside the region: superblock, named roots, the buddy memory manager and
// per-node allocators (DESIGN.md "Allocators"; layout in layout.ts). All state lives in
// the region, so an aborted transaction's allocations vanish with its shadow pages.
import { Buddy } from './buddy';
import { HeapLayoutError, InvalidFreeError, RootError } from './errors';
import { type AllocKind, CHUNK_ORDER, CLASSES, ENTRY_WORDS, HEADER, KINDS, LAYOUT_VERSION, MAGIC, MAX_NODES, PageKind, ROOT_BYTES, ROOT_NAME_MAX, ROOTS, SB, tagOf, tagParts } from './layout';

/** What the heap needs from its node. */
export interface HeapView {
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly nodeId: number;
  readonly pageSize: number;
  readonly regionSize: number;
}

/** Runs a function as a transaction on the node (used to format or check the superblock). */
export type RunTransaction = <T>(fn: () => T) => Promise<T>;

const encoder = new TextEncoder();

export class Heap {
  private buddy!: Buddy;
  private opened = false;

  constructor(private readonly view: HeapView) {}

  /** Formats the superblock on a fresh region (the founding node) or checks an existing one. */
  async open(run: RunTransaction): Promise<void> {
    const v = this.view;
    const pages = Math.floor(v.regionSize / v.pageSize);
    const kindsAt = 2 * v.pageSize;
    this.buddy = new Buddy(v, v.pageSize, kindsAt);
    await run(() => {
      const sb = v.u32;
      if (sb[SB.magic] === 0) {
        if (v.nodeId !== 0) throw new HeapLayoutError('the cluster has no heap: the founding node did not format its region');
        const dataStart = 2 + Math.ceil(pages / v.pageSize);
        if (dataStart + 1 >= pages) throw new HeapLayoutError(`a region of ${v.regionSize} bytes is too small for a heap`);
        sb[SB.magic] = MAGIC;
        sb[SB.version] = LAYOUT_VERSION;
        sb[SB.pageSize] = v.pageSize;
        sb[SB.pages] = pages;
        sb[SB.dataStart] = dataStart;
        sb[SB.maxOrder] = Math.floor(Math.log2(pages - dataStart));
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
  alloc(size: number, opts: { kind?: AllocKind } = {}): number {
    if (!Number.isSafeInteger(size) || size <= 0) throw new RangeError(`alloc size must be a positive integer, got ${size}`);
    const kind = KINDS[opts.kind ?? 'normal'];
    if (kind === undefined) throw new RangeError(`alloc kind must be one of ${Object.keys(KINDS).join(', ')}`);
    const v = this.view;
    if (size + HEADER > v.pageSize) {
      const pages = Math.ceil(size / v.pageSize);
      const order = Math.ceil(Math.log2(pages));
      const page = this.buddy.alloc(order, size);
      const at = page * v.pageSize;
      v.u8.fill(0, at, at + (v.pageSize << order));
      return at;
    }
    let cls = 0;
    while (CLASSES[cls] < size + HEADER) cls++;
    return this.allocSmall(kind, cls);
  }

  private allocSmall(kind: number, cls: number): number {
    const v = this.view;
    const u32 = v.u32;
    const e = (this.nodeHeader() * v.pageSize) / 4 + (kind * CLASSES.length + cls) * ENTRY_WORDS;
    const bytes = CLASSES[cls];
    let obj = u32[e];
    if (obj !== 0) {
      u32[e] = u32[(obj + HEADER) / 4]; // pop: the next free object
      v.u8.fill(0, obj + HEADER, obj + bytes); // reused memory: zero it
    } else {
      let page = u32[e + 1];
      let off = u32[e + 2];
      if (page === 0 || off + bytes > v.pageSize) {
        page += 1;
        off = 0;
        if (page >= u32[e + 3]) {
          // A fresh chunk, this node's alone: two nodes' objects never share a page.
          page = this.buddy.alloc(CHUNK_ORDER, bytes);
          const n = 1 << CHUNK_ORDER;
          for (let i = 0; i < n; i++) this.buddy.setKind(page + i, PageKind.small);
          v.u8.fill(0, page * v.pageSize, (page + n) * v.pageSize);
          u32[e + 3] = page + n;
        }
        u32[e + 1] = page;
      }
      obj = page * v.pageSize + off;
      u32[e + 2] = off + bytes;
      u32[obj / 4] = tagOf(v.nodeId, kind, cls);
    }
    u32[obj / 4 + 1] = 1;
    return obj + HEADER;
  }

  /** This node's allocator header page, made on first use. */
  private nodeHeader(): number {
    const v = this.view;
    if (v.nodeId >= MAX_NODES) throw new RangeError(`the heap serves node ids below ${MAX_NODES}`);
    let h = v.u32[SB.nodeHeaders + v.nodeId];
    if (h === 0) {
      h = this.buddy.alloc(0, v.pageSize);
      v.u8.fill(0, h * v.pageSize, (h + 1) * v.pageSize);
      v.u32[SB.nodeHeaders + v.nodeId] = h;
    }
    return h;
  }

  /** Inside a transaction: frees an allocation. */
  free(ptr: number): void {
    const v = this.view;
    if (!Number.isSafeInteger(ptr) || ptr <= 0 || ptr >= v.regionSize) throw new InvalidFreeError(ptr, 'not a pointer into the region');
    const page = Math.floor(ptr / v.pageSize);
    const k = page >= this.buddy.dataStart && page < this.buddy.pages ? this.buddy.kind(page) : PageKind.none;
    if ((k & 0xc0) === PageKind.allocated && ptr % v.pageSize === 0 && !this.isHeaderPage(page)) {
      this.buddy.free(page, k & 0x3f);
      return;
    }
    if (k !== PageKind.small || (ptr - HEADER) % 8 !== 0) {
      throw new InvalidFreeError(ptr, (k & 0x3f) === k && k >= PageKind.freeBase ? 'double free (the block is free)' : 'not the start of an allocation');
    }
    const hdr = (ptr - HEADER) / 4;
    const t = tagParts(v.u32[hdr]);
    if (!t.ok || t.cls >= CLASSES.length || (ptr - HEADER - page * v.pageSize) % CLASSES[t.cls] !== 0) {
      throw new InvalidFreeError(ptr, 'not the start of an allocation');
    }
    if (v.u32[hdr + 1] === 2) throw new InvalidFreeError(ptr, 'double free');
    if (v.u32[hdr + 1] !== 1) throw new InvalidFreeError(ptr, 'not the start of an allocation');
    v.u32[hdr + 1] = 2;
    // Back to its owner's list, so the object stays on the owner's pages.
    const owner = v.u32[SB.nodeHeaders + t.node];
    const e = (owner * v.pageSize) / 4 + (t.kind * CLASSES.length + t.cls) * ENTRY_WORDS;
    v.u32[hdr + 2] = v.u32[e];
    v.u32[e] = ptr - HEADER;
  }

  private isHeaderPage(page: number): boolean {
    for (let n = 0; n < MAX_NODES; n++) if (this.view.u32[SB.nodeHeaders + n] === page) return true;
    return false;
  }

  /** Inside a transaction: names a pointer so other nodes can find it; 0 removes the name. */
  setRoot(name: string, ptr: number): void {
    const bytes = encoder.encode(name);
    if (bytes.length === 0 || bytes.length > ROOT_NAME_MAX) throw new RootError(`a root name is 1 to ${ROOT_NAME_MAX} UTF-8 bytes, got ${bytes.length}`);
    if (!Number.isSafeInteger(ptr) || ptr < 0 || ptr >= this.view.regionSize) throw new RootError(`root "${name}": ${ptr} is not a pointer into the region`);
    let slot = this.findRoot(bytes);
    if (slot < 0) {
      if (ptr === 0) return;
      for (let i = 0; i < ROOTS && slot < 0; i++) if (this.view.u32[this.rootWord(i)] === 0) slot = i;
      if (slot < 0) throw new RootError(`the root table is full (${ROOTS} names); remove one with setRoot(name, 0)`);
    }
    const w = this.rootWord(slot);
    const u8 = this.view.u8;
    if (ptr === 0) {
      u8.fill(0, w * 4, w * 4 + ROOT_BYTES);
      return;
    }
    this.view.u32[w] = bytes.length;
    u8.set(bytes, w * 4 + 4);
    this.view.u32[w + 15] = ptr;
  }

  /** Anywhere: the pointer named `name`, or undefined. */
  root(name: string): number | undefined {
    if (!this.opened) return undefined;
    const slot = this.findRoot(encoder.encode(name));
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

  /** After an abort: the state is in the region, rolled back with it; nothing is cached here. */
  afterAbort(): void {}

  /** After a commit. */
  afterCommit(): void {}

  /** @internal The buddy manager, for the checker. */
  get manager(): Buddy {
    return this.buddy;
  }
}
