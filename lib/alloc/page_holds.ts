// What a page of the region holds, in words a user can act on: which of the heap's own
// tables, which node's small objects of which size class, which large object, free memory,
// and the named roots pointing into it. Read outside any transaction (a description for
// the false-sharing monitor, not a decision), from the tables layout.ts describes.
import { CLASSES, type Geometry, KINDS, PageKind, ROOT_BYTES, ROOTS, SB, SLOTS, SPARE_KIND, tagParts } from './layout';

/** The heap's description of one page. */
export interface PageHolds {
  /** One line, e.g. "64-byte normal objects of slot 1 (node 4) (chunk at page 530)". */
  holds: string;
  /** Names of the roots (`dsm.root`) whose pointer lands in what the page holds. */
  roots: string[];
}

export interface RegionWords {
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
}

const KIND_NAMES = Object.keys(KINDS);
const decoder = new TextDecoder();

/** Describes `page`; `g` is undefined while the heap is not open. */
export function describePage(v: RegionWords, g: Geometry | undefined, page: number): PageHolds {
  if (g === undefined) return { holds: 'no heap yet', roots: [] };
  const ps = g.pageSize;
  const pw = ps >>> 2;
  const kindsPage = Math.floor(g.kindsAt / ps);
  const linksPage = Math.floor(g.linksAt / ps);
  if (page === 0) return { holds: 'heap superblock (buddy free lists, allocator headers, shared by every allocating node)', roots: [] };
  if (page === 1) return { holds: 'heap named-roots table', roots: [] };
  if (page < linksPage && page >= kindsPage) return { holds: 'heap page-kind table', roots: [] };
  if (page < g.dataStart) return { holds: 'heap buddy link table', roots: [] };
  if (page >= g.pages) return { holds: 'outside the heap', roots: [] };
  const kind = (p: number) => v.u8[g.kindsAt + p];
  const k = kind(page);
  const rootsIn = (from: number, to: number) => rootNames(v, ps, from, to);
  if (k === PageKind.nodeHeader) {
    for (let n = 0; n < SLOTS; n++) if (v.u32[SB.slotHeaders + n] === page) return { holds: `allocator header of ${slotName(v, n)}`, roots: [] };
    return { holds: 'allocator header of no slot', roots: [] };
  }
  if ((k & 0xc0) === PageKind.chunk) {
    const chunk = page - (k & 0x3f);
    const t = tagParts(v.u32[chunk * pw]);
    if (!t.ok) return { holds: `chunk page without a valid chunk header (at page ${chunk})`, roots: [] };
    if (t.kind === SPARE_KIND) return { holds: `spare chunk in the zone of ${slotName(v, t.slot)} (unused)`, roots: [] };
    const what = `${CLASSES[t.cls]}-byte ${KIND_NAMES[t.kind] ?? `kind-${t.kind}`} objects of ${slotName(v, t.slot)}`;
    if (page === chunk) return { holds: `chunk header (free-slot bitmap) of ${what}`, roots: [] };
    return { holds: `${what} (chunk at page ${chunk}, page ${page - chunk} of ${g.chunkPages})`, roots: rootsIn(page * ps, (page + 1) * ps) };
  }
  // Inside a block: its first page carries the kind. Blocks of order o start at
  // dataStart + a multiple of 2^o, so at most one candidate per order.
  const maxOrder = v.u32[SB.maxOrder];
  for (let o = 0; o <= maxOrder; o++) {
    const start = g.dataStart + ((page - g.dataStart) & ~((1 << o) - 1));
    const sk = kind(start);
    if (sk === PageKind.none) continue;
    if ((sk & 0xc0) === PageKind.allocated) {
      const pages = 1 << (sk & 0x3f);
      if (start + pages <= page) break;
      return { holds: `large object at ${start * ps} (${pages} page${pages > 1 ? 's' : ''})`, roots: rootsIn(start * ps, (start + pages) * ps) };
    }
    if (sk >= PageKind.freeBase && sk < PageKind.allocated) {
      if (start + (1 << (sk - PageKind.freeBase)) <= page) break;
      return { holds: 'free memory', roots: [] };
    }
    break;
  }
  return { holds: 'a page no heap table accounts for', roots: [] };
}

/** Names of the roots whose pointer is in [from, to) bytes. */
/** "slot 3 (node 12)": an allocator slot (layout.ts) and the node that owns it now. */
function slotName(v: RegionWords, slot: number): string {
  const owner = v.u32[SB.slotOwners + slot];
  return owner === 0 ? `slot ${slot} (no owner)` : `slot ${slot} (node ${owner - 1})`;
}

function rootNames(v: RegionWords, pageSize: number, from: number, to: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < ROOTS; i++) {
    const w = (pageSize + i * ROOT_BYTES) >>> 2;
    const len = v.u32[w];
    if (len === 0) continue;
    const ptr = v.u32[w + 15];
    if (ptr >= from && ptr < to) out.push(decoder.decode(v.u8.subarray(w * 4 + 4, w * 4 + 4 + len)));
  }
  return out;
}
