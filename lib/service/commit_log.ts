// Applies commits in global-time order. Commits travel on different connections, so one
// can arrive before an earlier one: it waits here until the gap closes, and a gap that
// stays open is a missed commit, re-requested from a node that has it. Everything here is
// bounded: the commits kept for peers (a ring of the most recent), the commits waiting
// for a gap (a window ahead of the last applied; later ones are dropped and asked for
// again once the window has moved on), and what one resend answers.
import type { CommitRecord } from './protocol';
import { replacedVersions } from './changes';

export interface CommitLogLinks {
  apply(rec: CommitRecord): void;
  /**
   * Made with a token a recovery replaced, after the time it was replaced at (recovery.ts
   * isVoid). Checked again as each commit is applied, not only on arrival: one buffered
   * behind a gap while this node had not heard of the regeneration yet must not be applied
   * once it has.
   */
  isVoid?(rec: CommitRecord): boolean;
  /** A buffered commit was found void and dropped (`isVoid`). */
  droppedVoid?(rec: CommitRecord): void;
  /** Asks `from` (-1: everyone) for the commits after `after` up to `upTo`. */
  requestResend(from: number, after: number, upTo: number): void;
  /**
   * Publishes applied/seen to the app thread. Only ever raised there, since the app thread
   * raises them itself as it commits with the lent token, except when `lowered`: this node's
   * own commits past `applied` were void (rollBack), or times heard of only from void
   * commits are forgotten (thaw). Left high, a program that waits for this node's
   * `globalTime` elsewhere would wait for a time the cluster never reaches.
   */
  publish(applied: number, seen: number, lowered?: boolean): void;
}

export interface CommitLogLimits {
  /** Recent commits kept for peers that missed them. */
  keep: number;
  /**
   * Bytes of changes (diffs, whole pages) those keep at most: past it the oldest lose theirs,
   * and a peer that asks for one of them again invalidates its pages instead of updating them.
   */
  keepChangeBytes: number;
  /** Commits buffered ahead of the next one to apply. */
  ahead: number;
}

/** How long a gap may stay open before the missing commits are asked for again. */
const GAP_RESEND_MS = 250;
/** The longest pause between asks for a time a program waits for and nobody announced. */
const PROBE_MAX_MS = 4000;
const DEFAULT_LIMITS: CommitLogLimits = { keep: 20_000, keepChangeBytes: 256 << 20, ahead: 1 << 16 };

interface Waiter {
  time: number;
  resolve: (reached: boolean) => void;
  timer?: NodeJS.Timeout;
}

export class CommitLog {
  applied = 0;
  seen = 0;
  private readonly pending = new Map<number, CommitRecord>();
  /** The last `keep` applied commits, at index time % keep. */
  private readonly recent: Array<CommitRecord | undefined>;
  /** The oldest time `recent` can hold: commits before a reset() jump were never applied here. */
  private firstKept = 1;
  private waiters: Waiter[] = [];
  private gapTimer?: NodeJS.Timeout;
  private frozen = false;
  /** Kept commits that carry changes, oldest first, and the bytes of those changes. */
  private withChanges: CommitRecord[] = [];
  private withChangesHead = 0;
  private changeBytes = 0;
  private probeTimer?: NodeJS.Timeout;
  private readonly limits: CommitLogLimits;

  constructor(
    private readonly links: CommitLogLinks,
    limits: Partial<CommitLogLimits> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.recent = new Array<CommitRecord | undefined>(this.limits.keep);
  }

  /** Starts from a known point (join, recovery). */
  reset(time: number): void {
    if (time > this.applied) {
      this.applied = time;
      this.firstKept = time + 1;
      for (const t of this.pending.keys()) if (t <= time) this.pending.delete(t);
    }
    this.seen = Math.max(this.seen, time);
    this.drain();
  }

  /**
   * Whether receive() keeps `rec` (to apply in its turn): not applied yet, not waiting here
   * already (a void one waiting gives way), and not too far ahead to buffer.
   */
  takes(rec: CommitRecord): boolean {
    if (rec.time <= this.applied || rec.time > this.applied + this.limits.ahead) return false;
    const waiting = this.pending.get(rec.time);
    return !waiting || (this.links.isVoid?.(waiting) ?? false);
  }

  /** A commit from the network (or made here). Old and duplicate ones are ignored. */
  receive(rec: CommitRecord): void {
    if (rec.time <= this.applied) return;
    // A void commit waiting at that time gives way to the cluster's own (isVoid).
    const waiting = this.pending.get(rec.time);
    if (waiting && !this.links.isVoid?.(waiting)) return;
    // Too far ahead to buffer: it is dropped, but heard of, so the gap timer asks for it
    // again once the commits before it are in.
    if (rec.time <= this.applied + this.limits.ahead) this.pending.set(rec.time, rec);
    this.hear(rec.time);
    this.drain();
  }

  /** A time heard of (token, page version): if ahead, commits are missing. */
  hear(time: number): void {
    if (time > this.seen) {
      this.seen = time;
      if (this.batching > 0) this.settleAfterBatch = true;
      else this.links.publish(this.applied, this.seen);
    }
    if (this.batching === 0) this.armGapTimer();
  }

  private batching = 0;
  private settleAfterBatch = false;

  /**
   * Runs `fn`, which hands this log a batch of commits (the app's, drained from the commit
   * ring), and publishes the times, wakes the waiters and checks for gaps once at its end
   * instead of after every commit: the app has raised its own times as it committed, and
   * pages become servable a batch later at most. Per commit that was a native call and
   * two shared-memory BigInt stores twice over.
   */
  batch(fn: () => void): void {
    this.batching++;
    try {
      fn();
    } finally {
      if (--this.batching === 0 && this.settleAfterBatch) {
        this.settleAfterBatch = false;
        this.settle();
      }
    }
  }

  /** Resolves once every commit up to `time` is applied here; `time` comes from the cluster (it is heard of). */
  waitApplied(time: number): Promise<void> {
    this.hear(time);
    if (this.applied >= time) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ time, resolve: () => resolve() }));
  }

  /**
   * Resolves with true once every commit up to `time` is applied here, or with false after
   * `timeoutMs`. For times the program names: such a time is not taken as heard of, since
   * raising `seen` to a time nobody reaches would make every read-only transaction (which
   * waits for `seen`) wait for it too. While it is ahead of anything heard of, peers are
   * asked now and then for commits this node may have missed.
   */
  waitUntil(time: number, timeoutMs: number): Promise<boolean> {
    if (this.applied >= time) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w: Waiter = { time, resolve };
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        resolve(false);
      }, timeoutMs);
      this.waiters.push(w);
      this.armProbe();
    });
  }

  /**
   * Commits in (after, upTo] this node still has, oldest first, at most `max` of them, for a
   * peer that missed them. Costs O(answer), however wide the range asked for.
   */
  since(after: number, upTo: number, max = this.limits.keep): CommitRecord[] {
    const from = Math.max(after + 1, this.applied - this.limits.keep + 1, this.firstKept);
    const to = Math.min(upTo, this.applied, from + max - 1);
    const out: CommitRecord[] = [];
    for (let t = from; t <= to; t++) {
      const r = this.recent[t % this.limits.keep];
      if (r && r.time === t) out.push(r);
    }
    return out;
  }

  /** The oldest commit this node can still send a member that missed it (since). */
  get oldestKept(): number {
    return Math.max(this.applied - this.limits.keep + 1, this.firstKept);
  }

  /** A recovery is deciding (freeze): nothing is applied, gap or not. */
  get isFrozen(): boolean {
    return this.frozen;
  }

  /** Commits waiting for a gap to close (bounded by the `ahead` limit). */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** The committer of the earliest pending commit: it applied everything before it. */
  private sourceForGap(): number | undefined {
    let best: CommitRecord | undefined;
    for (const r of this.pending.values()) if (!best || r.time < best.time) best = r;
    return best?.node;
  }

  /**
   * A recovery is deciding the cluster's time from what the members reported: apply
   * nothing meanwhile (a commit waiting behind a gap here may be one the recovery drops).
   */
  freeze(): void {
    this.frozen = true;
  }

  /**
   * For each page the commits applied here after `time` wrote, the version the first of
   * them replaced: the page's latest version at `time` (this node had applied every commit
   * before it). Pages of commits kept without their changes are left out.
   */
  versionsBefore(time: number, pageSize: number): Map<number, number> {
    const out = new Map<number, number>();
    for (let t = Math.max(time + 1, this.applied - this.limits.keep + 1); t <= this.applied; t++) {
      const rec = this.recent[t % this.limits.keep];
      if (rec?.time !== t || !rec.changes) continue;
      const replaced = replacedVersions(rec.changes, pageSize);
      rec.pages.forEach((page, i) => {
        if (i < replaced.length && !out.has(page)) out.set(page, replaced[i]);
      });
    }
    return out;
  }

  /**
   * The commits this node applied after `time` are void: a recovery regenerated the token at
   * `time` while they had reached none of the members that decided (they were this node's
   * own, made with the old token while it was stalled or cut off; recovery.ts voidAbove
   * invalidated the pages they wrote). The cluster's commits at those times are applied in
   * their place, so the log goes back to `time`.
   */
  rollBack(time: number): void {
    if (this.applied > time) {
      for (let t = Math.max(time + 1, this.applied - this.limits.keep + 1); t <= this.applied; t++) {
        if (this.recent[t % this.limits.keep]?.time === t) this.recent[t % this.limits.keep] = undefined;
      }
      this.applied = time;
    }
    // Also when the log never took them in: the app thread raised its own times as it made them.
    this.links.publish(this.applied, this.seen, true);
  }

  /**
   * The recovery is decided. `droppedAbove`: the token was regenerated at that time, so
   * commits beyond it (the dead holder's, which no survivor had applied) are void.
   */
  thaw(droppedAbove?: number): void {
    this.frozen = false;
    if (droppedAbove !== undefined) {
      for (const t of this.pending.keys()) if (t > droppedAbove) this.pending.delete(t);
      if (this.seen > droppedAbove) {
        this.seen = Math.max(this.applied, droppedAbove);
        this.links.publish(this.applied, this.seen, true);
      }
    }
    this.drain();
  }

  private drain(): void {
    for (;;) {
      if (this.frozen) break;
      const next = this.pending.get(this.applied + 1);
      if (!next) break;
      this.pending.delete(next.time);
      if (this.links.isVoid?.(next)) {
        // The cluster's own commit at that time comes from the new token's holders.
        this.links.droppedVoid?.(next);
        continue;
      }
      this.links.apply(next);
      this.applied = next.time;
      this.recent[next.time % this.limits.keep] = next;
      if (next.changes) this.keepChanges(next);
    }
    if (this.applied > this.seen) this.seen = this.applied;
    if (this.batching > 0) this.settleAfterBatch = true;
    else this.settle();
  }

  /** Publishes the times, wakes the waiters they reach and watches for gaps. */
  private settle(): void {
    this.links.publish(this.applied, this.seen);
    if (this.waiters.length) {
      const ready = this.waiters.filter((w) => w.time <= this.applied);
      this.waiters = this.waiters.filter((w) => w.time > this.applied);
      for (const w of ready) {
        if (w.timer) clearTimeout(w.timer);
        w.resolve(true);
      }
    }
    this.armGapTimer();
  }

  private keepChanges(rec: CommitRecord): void {
    const q = this.withChanges;
    q.push(rec);
    this.changeBytes += rec.changes!.length;
    let h = this.withChangesHead;
    while (this.changeBytes > this.limits.keepChangeBytes && h < q.length) {
      const old = q[h++];
      this.changeBytes -= old.changes?.length ?? 0;
      old.changes = undefined; // re-sent without them: receivers invalidate (correct, just dearer)
    }
    // Records that fell out of the ring were dropped with it: forget them too.
    const oldest = this.applied - this.limits.keep;
    while (h < q.length && q[h].time <= oldest) this.changeBytes -= q[h++].changes?.length ?? 0;
    this.withChangesHead = h;
    if (h > 1024 && h * 2 > q.length) {
      this.withChanges = q.slice(h);
      this.withChangesHead = 0;
    }
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
        // No more than fits the window: the rest would only be dropped.
        const upTo = Math.min(this.seen, this.applied + this.limits.ahead);
        const src = this.sourceForGap();
        this.links.requestResend(src ?? -1, this.applied, upTo);
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
    this.frozen = false;
    this.pending.clear();
    this.recent.fill(undefined);
    this.withChanges = [];
    this.withChangesHead = 0;
    this.changeBytes = 0;
    this.applied = time;
    this.seen = time;
    this.firstKept = time + 1;
    this.drain();
  }

  /** While a program waits for a time beyond anything heard of, asks everyone for it now and then. */
  private armProbe(delay = GAP_RESEND_MS): void {
    if (this.probeTimer) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      let want = 0;
      for (const w of this.waiters) if (w.timer && w.time > want) want = w.time;
      if (want <= this.seen) return; // the gap timer asks for what is heard of
      this.links.requestResend(-1, this.applied, Math.min(want, this.applied + this.limits.ahead));
      // Backing off: a time nobody reaches must not keep the peers busy.
      this.armProbe(Math.min(delay * 2, PROBE_MAX_MS));
    }, delay);
    this.probeTimer.unref();
  }

  close(): void {
    if (this.gapTimer) clearTimeout(this.gapTimer);
    if (this.probeTimer) clearTimeout(this.probeTimer);
    for (const w of this.waiters) if (w.timer) clearTimeout(w.timer);
    const timed = this.waiters.filter((w) => w.timer);
    this.waiters = this.waiters.filter((w) => !w.timer);
    for (const w of timed) w.resolve(false);
  }
}
