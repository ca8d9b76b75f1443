// The regenerations of the commit token a node knows of. A recovery that finds no live
// holder makes a new token of a higher generation at the cluster's latest applied time;
// from then on, a commit made with an older token after that time is void wherever it
// turns up (a stalled or cut-off holder's, arriving late or served from its copies).
// Lease echoes and recovery messages carry the latest one, so nodes that missed it learn.
import type { CommitRecord, Regeneration } from './protocol';

/** How many regenerations are kept: enough for any commit still in flight. */
const KEPT = 64;

/**
 * Whether a commit at `time` made with a token of `generation` is void, given the
 * regenerations of the token (oldest first): the first one of a later generation replaced
 * that token at its time, and gave every time after it to other commits.
 */
export function madeVoid(regenerations: ReadonlyArray<Regeneration>, generation: number, time: number): boolean {
  for (const r of regenerations) if (r.generation > generation) return time > r.time;
  return false;
}

export class Regenerations {
  /** The latest one (0, 0: none). */
  latest: Regeneration = { generation: 0, time: 0 };
  /** Oldest first, the most recent KEPT. */
  private readonly known: Regeneration[] = [];

  remember(generation: number, time: number): void {
    this.latest = { generation, time };
    this.known.push(this.latest);
    if (this.known.length > KEPT) this.known.shift();
  }

  /** Whether `rec` was made with a token one of these replaced before its time. */
  isVoid(rec: CommitRecord): boolean {
    return this.madeVoid(rec.generation ?? 0, rec.time);
  }

  /** Whether a commit at `time` made with a token of `generation` is void. */
  madeVoid(generation: number, time: number): boolean {
    return madeVoid(this.known, generation, time);
  }
}
