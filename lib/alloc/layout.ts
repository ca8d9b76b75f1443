// Where the heap keeps its state inside the region. All of it lives in the region, so a
// transaction that aborts takes its allocations and frees with it (shadow pages).
//
//   page 0   superblock, u32 words:
//            [0] magic 'DSMH'  [1] layout version  [2] page size  [3] pages in the region
//            [4] first data page  [5] largest buddy order
//            [16 + k]  head of the buddy free list of order k (a page number; 0: empty)
//            [64 + n]  node n's allocator header page (0: none yet), n < MAX_NODES
//   page 1   named roots: ROOTS entries of 64 bytes: u32 name length (0: empty),
//            name bytes (at most ROOT_NAME_MAX), u32 pointer at byte 60
//   page 2.. page kinds, one byte per region page (PageKind)
//   data     buddy blocks of 2^k pages. A free block holds u32 next and prev (page numbers)
//            in its first words. A small-object page holds objects of one size class, each
//            behind an 8-byte header: u32 tag (0xA1 | node << 8 | kind << 16 | class << 20,
//            see tagOf) and u32 state (1 allocated, 2 free); a free object keeps the next free
//            object's address in its first payload word.
//   node n's allocator header page: for each kind and class, ENTRY_WORDS u32: free-list
//            head (object address), bump page, bump offset, end of the current chunk (page).
//            Small-object pages come in chunks of 2^CHUNK_ORDER pages: one buddy operation
//            (and its page faults) per chunk, not per page.

export const MAGIC = 0x48534d44;
export const LAYOUT_VERSION = 1;
export const SB = { magic: 0, version: 1, pageSize: 2, pages: 3, dataStart: 4, maxOrder: 5, freeHeads: 16, nodeHeaders: 64 } as const;
export const MAX_NODES = 256;
export const ROOTS = 64;
export const ROOT_BYTES = 64;
export const ROOT_NAME_MAX = 56;

/** Page kinds (one byte per page). */
export const PageKind = {
  /** Inside a block, or not part of the heap. */
  none: 0,
  /** 1 + order: the first page of a free buddy block. */
  freeBase: 1,
  /** 0x40 | order: the first page of an allocated block (large object or allocator page). */
  allocated: 0x40,
  /** A page of small objects. */
  small: 0x80,
} as const;

/** Small-object size classes: bytes per object including its 8-byte header. */
export const CLASSES = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
export const HEADER = 8;
export const ENTRY_WORDS = 4;
export const CHUNK_ORDER = 3;
/** Allocator kinds (Plurix): ordinary, read-mostly, node-private. Each has its own pages. */
export const KINDS = { normal: 0, readMostly: 1, private: 2 } as const;
export type AllocKind = keyof typeof KINDS;

export function tagOf(node: number, kind: number, cls: number): number {
  return (0xa1 | (node << 8) | (kind << 16) | (cls << 20)) >>> 0;
}
export function tagParts(tag: number): { ok: boolean; node: number; kind: number; cls: number } {
  return { ok: (tag & 0xff) === 0xa1 && tag >>> 24 === 0, node: (tag >>> 8) & 0xff, kind: (tag >>> 16) & 0xf, cls: (tag >>> 20) & 0xf };
}
