// Pages the cluster decided lost, as the app thread sees them: their owner in the page
// table is LOST_OWNER (written by the service when a configuration decides them lost), and
// the service keeps a count in the shared status words, so a transaction that touches no
// lost page pays one load to know it.
import { InvalidOptionError, PageLostError } from './errors';
import { MODEL_MASK, type NativeRegion, PageModel } from './native';
import { Status } from './service/messages';
import { LOST_OWNER } from './service/protocol';

/** A range of the region whose contents were lost (byte offsets, page-aligned). */
export interface LostRange {
  ptr: number;
  length: number;
}

export class LostPages {
  constructor(
    private readonly region: NativeRegion,
    private readonly status: BigUint64Array,
    private readonly u8: Uint8Array,
    /** The page table's model bytes (native pageModels). */
    private readonly models: Uint8Array,
  ) {}

  get any(): boolean {
    return this.status[Status.lostPages] !== 0n;
  }

  /** Whether `page` is lost. */
  has(page: number): boolean {
    return this.any && this.region.owners[page] === LOST_OWNER;
  }

  /** Every lost range, merged. */
  ranges(): LostRange[] {
    const out: LostRange[] = [];
    if (!this.any) return out;
    const { owners, pageSize } = this.region;
    for (let p = 0; p < owners.length; p++) {
      if (owners[p] !== LOST_OWNER) continue;
      const last = out[out.length - 1];
      if (last && last.ptr + last.length === p * pageSize) last.length += pageSize;
      else out.push({ ptr: p * pageSize, length: pageSize });
    }
    return out;
  }

  /** Throws PageLostError for the first of `pages` that is lost (and not being discarded). */
  check(pages: Uint32Array, discarded: Set<number>): void {
    if (!this.any) return;
    const owners = this.region.owners;
    for (const p of pages) if (owners[p] === LOST_OWNER && !discarded.has(p)) throw new PageLostError(p);
  }

  /**
   * Accepts the loss of the pages under [ptr, ptr + length): they start from zero, written
   * by the running transaction (so its commit makes them new on every node). A sequential or
   * migratory page is declared again instead (`redeclare`, as an allocation is): the commit
   * makes this node its owner, of a zero page, on every node.
   */
  discard(ptr: number, length: number, discarded: Set<number>, redeclare: (page: number, model: number) => void): void {
    const { pageSize, owners } = this.region;
    const size = this.u8.length;
    if (!Number.isSafeInteger(ptr) || !Number.isSafeInteger(length) || ptr < 0 || length < 0 || ptr + length > size) {
      throw new InvalidOptionError(`discardLost needs a range inside the region (0..${size}), got ptr ${String(ptr)}, length ${String(length)}`);
    }
    if (length === 0) return;
    const first = Math.floor(ptr / pageSize);
    const end = Math.ceil((ptr + length) / pageSize);
    this.status[Status.discardFrom] = BigInt(first);
    this.status[Status.discardTo] = BigInt(end);
    try {
      for (let p = first; p < end; p++) {
        if (owners[p] !== LOST_OWNER) continue;
        const model = this.models[p] & MODEL_MASK;
        if (model === PageModel.sequential || model === PageModel.migratory) {
          // Its copy here, if any, is zeroed by `redeclare`; one that is not here is made zero
          // by the commit.
          redeclare(p, model);
          continue;
        }
        discarded.add(p);
        this.u8.fill(0, p * pageSize, (p + 1) * pageSize);
      }
    } finally {
      this.status[Status.discardFrom] = 0n;
      this.status[Status.discardTo] = 0n;
    }
  }
}
