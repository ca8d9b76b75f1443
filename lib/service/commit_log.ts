// Applies commits in global-time order. Commits travel on different connections, so one
// can arrive before an earlier one: it waits here until the gap closes, and a gap that
// stays open is a missed commit, re-requested from a node that has it.
import type { CommitRecord } from './protocol';

export interface CommitLogLinks {
  apply(rec: CommitRecord): void;
  /** Asks `from` for the commits after `after` up to `upTo`. */
  requestResend(from: number, after: number, upTo: number): void;
  /** Publishes applied/seen to the app thread. */
  publish(applied: number, seen: number): void;
}

/** How long a gap may stay open before the missing commits are asked for again. */
const GAP_RESEND_MS = 250;
/** Commits kept for peers that missed them. */
const KEEP = 20_000;

export class CommitLog {
  applied = 0;
  seen = 0;
  private readonly pending = new Map<number, CommitRecord>();
  private readonly recent = new Map<number, CommitRecord>();
  private waiters: Array<{ time: number; resolve: () => void }> = [];
  private gapTimer?: NodeJS.Timeout;

  constructor(private readonly links: CommitLogLinks) {}

  /** Starts from a known point (join, recovery). */
  reset(time: number): void {
    this.applied = Math.max(this.applied, time);
    this.seen = Math.max(this.seen, time);
    this.drain();
  }

  /** A commit from the network (or made here). Old and duplicate ones are ignored. */
  receive(rec: CommitRecord): void {
    if (rec.time <= this.applied || this.pending.has(rec.time)) return;
    this.pending.set(rec.time, rec);
    this.hear(rec.time);
    this.drain();
  }

  /** A time heard of (token, page version): if ahead, commits are missing. */
  hear(time: number): void {
    if (time > this.seen) {
      this.seen = time;
      this.links.publish(this.applied, this.seen);
    }
    this.armGapTimer();
  }

  /** Resolves once every commit up to `time` is applied here. */
  waitApplied(time: number): Promise<void> {
    this.hear(time);
    if (this.applied >= time) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ time, resolve }));
  }

  /** Commits in (after, upTo] this node still has, for a peer that missed them. */
  since(after: number, upTo: number): CommitRecord[] {
    const out: CommitRecord[] = [];
    for (let t = after + 1; t <= Math.min(upTo, this.applied); t++) {
      const r = this.recent.get(t);
      if (r) out.push(r);
    }
    return out;
  }

  /** The committer of the earliest pending commit: it applied everything before it. */
  private sourceForGap(): number | undefined {
    let best: CommitRecord | undefined;
    for (const r of this.pending.values()) if (!best || r.time < best.time) best = r;
    return best?.node;
  }

  private drain(): void {
    for (;;) {
      const next = this.pending.get(this.applied + 1);
      if (!next) break;
      this.pending.delete(next.time);
      this.links.apply(next);
      this.applied = next.time;
      this.recent.set(next.time, next);
      this.recent.delete(next.time - KEEP);
    }
    if (this.applied > this.seen) this.seen = this.applied;
    this.links.publish(this.applied, this.seen);
    if (this.waiters.length) {
      const ready = this.waiters.filter((w) => w.time <= this.applied);
      this.waiters = this.waiters.filter((w) => w.time > this.applied);
      for (const w of ready) w.resolve();
    }
    this.armGapTimer();
  }

  private armGapTimer(): void {
    if (this.seen <= this.applied) {
      if (this.gapTimer) clearTimeout(this.gapTimer);
      this.gapTimer = undefined;
      return;
    }
    if (this.gapTimer) return;
    const at = this.applied;
    this.gapTimer = setTimeout(() => {
      this.gapTimer = undefined;
      if (this.applied === at && this.seen > this.applied) {
        const src = this.sourceForGap();
        if (src !== undefined) this.links.requestResend(src, this.applied, this.seen);
        else this.links.requestResend(-1, this.applied, this.seen);
      }
      this.armGapTimer();
    }, GAP_RESEND_MS);
    this.gapTimer.unref();
  }

  /**
   * Joined again under a new id: the cluster's time is the truth, even below ours (commits
   * this node made that the cluster never applied are void).
   */
  restart(time: number): void {
    this.pending.clear();
    this.recent.clear();
    this.applied = time;
    this.seen = time;
    this.drain();
  }

  close(): void {
    if (this.gapTimer) clearTimeout(this.gapTimer);
  }
}
