// Where the heap keeps its state inside the region. All of it lives in the region, so a
// transaction that aborts takes its allocations and frees with it (shadow pages). The
// heap writes these tables and header pages only through its journal (journal.ts); a
// transaction that changes them otherwise does not commit (guard.ts).
//
//   page 0   superblock, u32 words:
//            [0] magic 'DSMH'  [1] layout version  [2] page size  [3] pages in the region
//            [4] first data page  [5] largest buddy order
//            [16 + k]  head of the buddy free list of order k (a page number; 0: empty)
//            [64 + n]  node n's allocator header page (0: none yet), n < MAX_NODES
//   page 1   named roots: ROOTS entries of 64 bytes: u32 name length (0: empty),
//            name bytes (at most ROOT_NAME_MAX), u32 pointer at byte 60
//   page 2.. page kinds, one byte per region page (PageKind)
//   then     the buddy link table: u32 next and prev (page numbers) per region page, used
//            for the first page of each free block
//   data     buddy blocks of 2^k pages. Free memory is all zero (the heap zeroes on free,
//            the links live in the table above), so an allocation never has to touch, and
//            fault in, its object's pages.
//   small-object chunks: 2^chunkOrder pages (Geometry) taken from the buddy manager by one node for
//            one kind and size class; two nodes' objects never share a page. The chunk's
//            first page is its header: u32 tag (CHUNK_TAG | slot << 8 | kind << 16 |
//            class << 20), then from word CHUNK_BITMAP a bitmap with one bit per object
//            slot, set while the slot is free (double frees are caught here). The other
//            pages hold objects with no header, never straddling a page: slot s sits on chunk
//            page 1 + floor(s / perPage) at offset (s % perPage) * class bytes. A free object
//            is zero except its first word, the next free object's address.
//   allocator slots: SLOTS of them, each owned by one node at a time (superblock word
//            slotOwners + s holds the owner's id + 1, 0 for a slot never owned; word
//            slotHeaders + s its header page). A node allocates through the slot it owns,
//            and its first small allocation claims one: one never used, else (all used)
//            the slot of a node that left the cluster for good, whose chunks, free objects
//            and spare chunks come with it (heap.ts claimSlot). Node ids are never reused,
//            so this is what lets a cluster that nodes joined any number of times allocate.
//   slot s's allocator header page: for each kind and class, ENTRY_WORDS u32: free-list
//            head (object address, 0: empty), bump page, bump offset, current chunk's
//            first page (0: none). Slots of older chunks have all been handed out; in the
//            current chunk, those before (bump page, bump offset).
//            Word ZONE_REFILLS_AT counts the zone's refills (they grow, zones.ts).
//            From word ZONE_AT, the slot's zone (zones.ts): u32 count, then the first pages
//            of its spare chunks: carved already (page kinds set, header tagged with kind
//            SPARE_KIND and class 0, all else zero), so taking one writes only pages of
//            this slot's, never the superblock or the page-kind table.

export const MAGIC = 0x48534d44;
export const LAYOUT_VERSION = 5;
export const SB = { magic: 0, version: 1, pageSize: 2, pages: 3, dataStart: 4, maxOrder: 5, freeHeads: 16, slotHeaders: 64, slotOwners: 320 } as const;
/** Nodes at once: allocator slots, and the parties of a barrier. */
export const MAX_NODES = 256;
export const SLOTS = MAX_NODES;
export const ROOTS = 64;
export const ROOT_BYTES = 64;
export const ROOT_NAME_MAX = 56;

/** Page kinds (one byte per page). */
export const PageKind = {
  /** Inside a block, or not part of the heap. */
  none: 0,
  /** 1 + order: the first page of a free buddy block. */
  freeBase: 1,
  /** 0x40 | order: the first page of an allocated block (a large object). */
  allocated: 0x40,
  /** 0x80 | i: page i of a small-object chunk (0: its header page). */
  chunk: 0x80,
  /** A node's allocator header page. */
  nodeHeader: 0xc0,
} as const;

/** Small-object size classes in bytes; objects carry no header. */
export const CLASSES = [16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 4096];
/** The largest small object; larger ones get whole pages from the buddy manager. */
export const SMALL_MAX = 4096;
/** Size class of a small size: CLASS_OF[(size + 15) >> 4]. */
export const CLASS_OF = (() => {
  const t = new Uint8Array((SMALL_MAX >> 4) + 1);
  for (let i = 0, c = 0; i < t.length; i++) {
    while (CLASSES[c] < i * 16) c++;
    t[i] = c;
  }
  return t;
})();
export const ENTRY_WORDS = 4;
export const CHUNK_TAG = 0xa2;
/** First word of a chunk header's free-slot bitmap. */
export const CHUNK_BITMAP = 16;
/** Spare chunks a zone can list (ZONE_MOST_PAGES of the smallest chunks). */
export const ZONE_MAX = 64;
/**
 * Node header word of the zone's spare-chunk count; the chunks' first pages follow, up to
 * the end of a 4 KiB page (the entries for kinds and classes grow from word 0).
 */
export const ZONE_AT = 1024 - 1 - ZONE_MAX;
/** Chunk tag kind of a spare chunk in a node's zone (not yet given a kind and class). */
export const SPARE_KIND = 0xf;
/** Node header word counting the zone's refills (each takes twice as many chunks as the last). */
export const ZONE_REFILLS_AT = ZONE_AT - 1;
/** A zone with fewer spare chunks than this is refilled... */
export const ZONE_LOW = 1;
/**
 * ...with this many chunks on its first refill, in one take from the buddy manager, twice
 * as many on each next one, up to ZONE_MOST_PAGES of chunks: a zone's reserve is bounded in
 * memory whatever the chunk size, and a node starting on a handful of size classes takes
 * their chunks from its first refill (2 chunks of 64 pages at first, the same 128 pages,
 * had both nodes of the two-node benchmark refill at once: one conflict a run).
 */
export const ZONE_FIRST = 8;
export const ZONE_MOST_PAGES = 1024;
/**
 * Consistency models of allocations (DESIGN.md "Consistency models"); the numbers are the
 * native page table's (native/page_table.h PageModel). Non-transactional allocations get
 * whole pages, so objects of different models never share a page; the model is recorded
 * in the buddy link table's first word of the block's first page (unused while the block is
 * allocated), tagged with MODEL_TAG (a page number there never reaches bit 24).
 */
export const MODELS = { transactional: 0, local: 1, sequential: 2, migratory: 3 } as const;
export type Model = keyof typeof MODELS;
export const MODEL_TAG = 0x4d000000;

/** Allocator kinds (Plurix): ordinary, read-mostly, node-private. Each has its own pages. */
export const KINDS = { normal: 0, readMostly: 1, private: 2 } as const;
export type AllocKind = keyof typeof KINDS;

/** Where the heap's tables sit in a region; the same on every node of a cluster. */
export interface Geometry {
  readonly pageSize: number;
  /** Pages in the region. */
  readonly pages: number;
  /** Byte offset of the page-kind table (one byte per page). */
  readonly kindsAt: number;
  /** Byte offset of the buddy link table (two u32 per page). */
  readonly linksAt: number;
  /** The first data page: every page below it is the heap's own. */
  readonly dataStart: number;
  /** Small-object chunks are 2^chunkOrder pages (chunkPages). */
  readonly chunkOrder: number;
  readonly chunkPages: number;
}

export function geometry(regionSize: number, pageSize: number): Geometry {
  const pages = Math.floor(regionSize / pageSize);
  const kindsPages = Math.ceil(pages / pageSize);
  const linksPages = Math.ceil((pages * 8) / pageSize);
  const chunkOrder = chunkOrderOf(pages);
  return { pageSize, pages, kindsAt: 2 * pageSize, linksAt: (2 + kindsPages) * pageSize, dataStart: 2 + kindsPages + linksPages, chunkOrder, chunkPages: 1 << chunkOrder };
}

/**
 * The chunk size follows the region's: each chunk a node takes costs a write fault on its
 * header page, fresh memory (~12 us on a 2-vCPU VM), shared by the chunk's objects, while
 * every node keeps up to one partly used chunk per kind and class. 16 pages left 64-byte
 * allocations at 2.1x `new Uint8Array(64)`; 64 pages (regions of 256 MiB and more: at least
 * 1,024 chunks) bring them to 1.3x. Smaller regions keep 16-page chunks (a 4 MiB region
 * would hold 16 of 64 pages). The page index within a chunk must fit a page kind's low 6 bits.
 */
function chunkOrderOf(pages: number): number {
  return Math.min(6, Math.max(4, Math.floor(Math.log2(pages / 1024))));
}

export function tagOf(slot: number, kind: number, cls: number): number {
  return (CHUNK_TAG | (slot << 8) | (kind << 16) | (cls << 20)) >>> 0;
}
export function tagParts(tag: number): { ok: boolean; slot: number; kind: number; cls: number } {
  const cls = (tag >>> 20) & 0xf;
  return { ok: (tag & 0xff) === CHUNK_TAG && tag >>> 24 === 0 && cls < CLASSES.length, slot: (tag >>> 8) & 0xff, kind: (tag >>> 16) & 0xf, cls };
}
