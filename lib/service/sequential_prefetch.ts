// Sequential and migratory pages brought here ahead of the app's touches (dsm.prefetch, and a
// leaving node's pages taken by its successor): through the faults' own protocol
// (sequential.ts), so a touch meanwhile joins the fetch under way.
import { MODEL_HERE, MODEL_MASK, PageModel } from '../native';
import { READ_AHEAD } from './sequential_wire';

/** What a prefetch needs of the protocol: the pages' models and states, and its fault. */
export interface Faulting {
  readonly models: Uint8Array;
  readonly states: Uint8Array;
  /** `wake` runs when the page is here as asked, or when the fault should look again. */
  fault(wake: () => void, page: number, write: boolean, readAhead: number): void;
}

/**
 * Brings pages [first, first + count) here (owned, for a write or a migratory page), then
 * calls `done`. Reads ask for runs of up to READ_AHEAD pages within the range, one request
 * per run; another node's local page is left alone (the touch itself is refused).
 */
export function prefetchPages(f: Faulting, first: number, count: number, write: boolean, done: () => void): void {
  const end = first + count;
  let left = 1;
  const one = () => {
    if (--left === 0) done();
  };
  for (let p = first; p < end; ) {
    const run = write ? 1 : Math.min(READ_AHEAD, end - p);
    left++;
    const q = p;
    // The run's other pages came with its first (or are asked for one by one if not).
    prefetchPage(f, q, write, run, () => {
      left += run - 1;
      for (let r = q + 1; r < q + run; r++) prefetchPage(f, r, write, 1, one);
      one();
    });
    p += run;
  }
  one();
}

function prefetchPage(f: Faulting, page: number, write: boolean, run: number, done: () => void): void {
  const m = f.models[page];
  const model = m & MODEL_MASK;
  const own = write || model === PageModel.migratory;
  if (model === PageModel.local || model === PageModel.transactional || (f.states[page] !== 0 && (!own || m & MODEL_HERE))) return done();
  // Woken like a faulting thread: it looks again (a write joining a read fetch asks again).
  f.fault(() => prefetchPage(f, page, write, run, done), page, own, run);
}
