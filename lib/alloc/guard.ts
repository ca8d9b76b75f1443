// Keeps a transaction from committing stray writes over the heap's metadata: the tables
// below the first data page (superblock, roots, page kinds, links) and the header pages in
// the data area (node allocator headers, small-object chunk headers).
//
// Run after the transaction function, before the commit. Its written pages are classified
// without touching them, and without ever fetching a page: a transaction must not wait
// for, or fail on, a page it did not use (its only holder may have died). The kinds of the
// data pages are read where this node has the current kinds page; otherwise what it saw
// there last stands, and a header another node made (or gave back) since is known as such
// once this node has that kinds page again.
// Only when some written pages are metadata are their committed copies taken from
// the native layer and the heap's journal replayed over them: the result must be exactly
// what the pages hold now, and every write the heap replayed must find the value it
// overwrote (so a program's write the heap later overwrote is caught too). A page the heap
// took as a new header in this run replays from zero (free memory is zero).
import type { Heap } from './heap';
import { HeapCorruptionError } from './errors';
import { PageState } from '../native';
import { FRESH, UNREAD } from './journal';
import { type Geometry, PageKind, ROOT_BYTES, ROOTS, SB, SLOTS } from './layout';

/** What the guard needs from the native layer. */
export interface GuardNative {
  copyCommittedPages(pages: Uint32Array, out: Uint8Array): void;
  copyCurrentPages(pages: Uint32Array, out: Uint8Array): void;
}

/** The page table's states and versions (read only). */
export interface GuardPageTable {
  readonly states: Uint8Array;
  readonly versions: BigUint64Array;
}

export class HeapGuard {
  /** The kind of each header page in the data area this node has seen (0: none seen). */
  private headers?: Uint8Array;
  /** Per kinds page: the version `headers` was read at (-1: never). */
  private seenAt?: Float64Array;
  private pre = new Uint8Array(0);
  private pre32 = new Uint32Array(0);
  private now = new Uint8Array(0);
  private now32 = new Uint32Array(0);
  /** The page versions as u32 pairs: reading them makes no BigInt. */
  private readonly versions: Uint32Array;

  constructor(
    private readonly heap: Heap,
    private readonly u8: Uint8Array,
    private readonly native: GuardNative,
    private readonly table: GuardPageTable,
  ) {
    const v = table.versions;
    this.versions = new Uint32Array(v.buffer, v.byteOffset, v.length * 2);
  }

  /**
   * Throws HeapCorruptionError if the run that wrote `written` (its write set) wrote
   * metadata other than through the heap.
   */
  check(written: Uint32Array): void {
    const g = this.heap.geometry;
    if (g === undefined) return;
    let meta: number[] | undefined;
    let kp = -1;
    let mapped = false;
    for (let i = 0; i < written.length; i++) {
      const p = written[i];
      let isMeta = p < g.dataStart;
      if (!isMeta) {
        const at = g.kindsAt + p;
        const k = Math.floor(at / g.pageSize);
        if (k !== kp) {
          kp = k;
          const state = this.table.states[kp];
          // Written by this run (the heap made a chunk; its written pages lost access as it
          // ended, so a read faults once) or read lately: read the kinds there.
          mapped = state >= PageState.read || includesSorted(written, kp);
          // A current copy here: reading it costs a fault in the handler at most.
          if (state === PageState.validUnmapped) this.refresh(g, kp);
        }
        isMeta = mapped ? isHeaderKind(this.u8[at]) : this.headers !== undefined && this.headers[p] !== 0;
      }
      if (isMeta) (meta ??= []).push(p);
    }
    if (meta !== undefined) this.verify(g, meta);
  }

  /** Makes `headers` current for the pages whose kinds are on kinds page `kp`. */
  private refresh(g: Geometry, kp: number): void {
    this.seenAt ??= new Float64Array(Math.ceil(g.pages / g.pageSize)).fill(-1);
    const version = this.versions[2 * kp] + this.versions[2 * kp + 1] * 2 ** 32;
    if (this.seenAt[kp - g.kindsAt / g.pageSize] !== version) this.learn(g, kp, version);
  }

  /** Reads one kinds page, valid here (the read is outside the transaction: not in its read set). */
  private learn(g: Geometry, kp: number, version: number): void {
    const h = (this.headers ??= new Uint8Array(g.pages));
    const first = kp * g.pageSize - g.kindsAt;
    const end = Math.min(g.pages, first + g.pageSize);
    // The kinds page is current here: what it says stands, a header given back (zones hand
    // spare chunks back to the manager, and a large object may take their pages) included.
    for (let p = Math.max(first, 0); p < end; p++) {
      const k = this.u8[g.kindsAt + p];
      h[p] = isHeaderKind(k) ? k : 0;
    }
    // A newer version read meanwhile is only seen as stale next time: read again then.
    this.seenAt![kp - g.kindsAt / g.pageSize] = version;
  }

  private verify(g: Geometry, meta: number[]): void {
    const ps = g.pageSize;
    const pw = ps >>> 2;
    const bytes = meta.length * ps;
    if (this.pre.length < bytes) {
      this.pre = new Uint8Array(bytes);
      this.pre32 = new Uint32Array(this.pre.buffer);
      this.now = new Uint8Array(bytes);
      this.now32 = new Uint32Array(this.now.buffer);
    }
    const pages = Uint32Array.from(meta);
    this.native.copyCommittedPages(pages, this.pre.subarray(0, bytes));
    // What they hold now, copied natively: End() took the app view's access to the pages
    // the run wrote, and reading them there cost a fault and an mprotect each (a fresh
    // chunk's header, every ~1,000 small objects), then another to revoke it at the next Begin.
    this.native.copyCurrentPages(pages, this.now.subarray(0, bytes));
    const slot = new Map<number, number>();
    meta.forEach((p, i) => slot.set(p, i * pw));
    const shift = Math.log2(pw);
    const exp = this.pre32;
    const log = this.heap.journal.entries();
    const n = this.heap.journal.length;
    for (let i = 0; i < n; i += 3) {
      const flagged = log[i];
      if (flagged === FRESH) {
        const fresh = slot.get(log[i + 1]);
        if (fresh !== undefined) exp.fill(0, fresh, fresh + pw);
        continue;
      }
      const w = (flagged & ~UNREAD) >>> 0;
      const base = slot.get(w >>> shift);
      if (base === undefined) continue; // the heap never writes a page outside the write set
      const at = base + (w & (pw - 1));
      if (flagged === w && exp[at] !== log[i + 1]) this.fail(g, w, exp[at], log[i + 1]);
      exp[at] = log[i + 2];
    }
    const now = this.now32;
    for (const p of meta) {
      const base = slot.get(p)!;
      const from = p * pw;
      for (let k = 0; k < pw; k++) if (now[base + k] !== exp[base + k]) this.fail(g, from + k, exp[base + k], now[base + k]);
    }
  }

  private fail(g: Geometry, word: number, expected: number, found: number): never {
    let b = 0;
    while (b < 3 && ((expected >>> (8 * b)) & 0xff) === ((found >>> (8 * b)) & 0xff)) b++;
    const address = word * 4 + b;
    throw new HeapCorruptionError(address, this.describe(g, address));
  }

  /** What lives at a metadata address, in words a user can act on. */
  private describe(g: Geometry, a: number): string {
    const ps = g.pageSize;
    const page = Math.floor(a / ps);
    if (page === 0) {
      const w = a >>> 2;
      const names = ['magic number', 'layout version', 'page size', 'page count', 'first data page', 'largest block order'];
      if (w < names.length) return `the heap superblock's ${names[w]}`;
      if (w >= SB.freeHeads && w < SB.freeHeads + 32) return `the heap superblock's free list of order ${w - SB.freeHeads}`;
      if (w >= SB.slotHeaders && w < SB.slotHeaders + SLOTS) return `the heap superblock's allocator header of slot ${w - SB.slotHeaders}`;
      if (w >= SB.slotOwners && w < SB.slotOwners + SLOTS) return `the heap superblock's owner of allocator slot ${w - SB.slotOwners}`;
      return 'the heap superblock';
    }
    if (page === 1) {
      const r = Math.floor((a - ps) / ROOT_BYTES);
      return r < ROOTS ? `named root slot ${r}` : 'the named-root table';
    }
    if (a < g.linksAt) return a - g.kindsAt < g.pages ? `the page-kind entry of page ${a - g.kindsAt}` : 'the page-kind table';
    if (page < g.dataStart) {
      const entry = Math.floor((a - g.linksAt) / 8);
      return entry < g.pages ? `the free-block link entry of page ${entry}` : 'the free-block link table';
    }
    const kp = Math.floor((g.kindsAt + page) / ps);
    const kind = this.table.states[kp] >= PageState.read ? this.u8[g.kindsAt + page] : this.headers?.[page];
    return kind === PageKind.nodeHeader ? `a node's allocator header (page ${page})` : `the header of the small-object chunk at page ${page}`;
  }
}

function isHeaderKind(k: number): boolean {
  return k === PageKind.chunk || k === PageKind.nodeHeader;
}

/** Whether sorted `a` holds `v` (write sets come sorted from the native layer). */
function includesSorted(a: Uint32Array, v: number): boolean {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo < a.length && a[lo] === v;
}
