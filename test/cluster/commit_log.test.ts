// The commit log's bounds: it keeps a window of recent commits for peers and answers from
// it in time proportional to the answer (never walking every time ever applied), buffers
// only a bounded window of commits ahead of a gap (a node far behind asks again instead),
// and a program's wait for a time nobody announced neither counts as heard of (which
// would hold up every read-only transaction) nor lasts past its time-out.
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const load = createRequire(__filename);
const { CommitLog } = load(path.join(__dirname, '../../dist/service/commit_log.js'));

interface Rec {
  time: number;
  node: number;
  pages: Uint32Array;
  changes?: Uint8Array;
}
const rec = (time: number, node = 1): Rec => ({ time, node, pages: Uint32Array.of(time % 7) });

/** A log with links that record what it did. */
function makeLog(limits?: { keep?: number; ahead?: number; keepChangeBytes?: number }) {
  const applied: number[] = [];
  const resends: Array<{ from: number; after: number; upTo: number }> = [];
  let onResend: (() => void) | undefined;
  const published: Array<[number, number, boolean?]> = [];
  const log = new CommitLog(
    {
      apply: (r: Rec) => applied.push(r.time),
      requestResend: (from: number, after: number, upTo: number) => {
        resends.push({ from, after, upTo });
        onResend?.();
      },
      publish: (a: number, s: number, lowered?: boolean) => published.push(lowered ? [a, s, true] : [a, s]),
    },
    limits,
  );
  const nextResend = () => new Promise<void>((r) => (onResend = r));
  return { log, applied, resends, published, nextResend };
}

describe('commit log', () => {
  it('publishes its times once at the end of a batch, not after every commit, and wakes waiters then', async () => {
    const { log, applied, published } = makeLog();
    log.receive(rec(1));
    expect(published.at(-1)).toEqual([1, 1]);
    published.length = 0;
    let woken = false;
    const waiting = log.waitApplied(3).then(() => (woken = true));
    published.length = 0;
    log.batch(() => {
      for (let t = 2; t <= 5; t++) log.receive(rec(t));
      // Applied in order meanwhile, told nobody yet.
      expect(applied).toEqual([1, 2, 3, 4, 5]);
      expect(log.applied).toBe(5);
      expect(published).toEqual([]);
    });
    expect(published).toEqual([[5, 5]]);
    await waiting;
    expect(woken).toBe(true);
    // A batch that throws still publishes what it applied.
    expect(() =>
      log.batch(() => {
        log.receive(rec(6));
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(published.at(-1)).toEqual([6, 6]);
    // Outside a batch, every commit publishes again.
    published.length = 0;
    log.receive(rec(7));
    log.receive(rec(8));
    expect(published.filter(([a]) => a === 7).length).toBeGreaterThan(0);
    expect(published.at(-1)).toEqual([8, 8]);
  });

  it('answers since() from a window of recent commits, in time proportional to the answer', () => {
    const { log } = makeLog({ keep: 100 });
    for (let t = 1; t <= 250; t++) log.receive(rec(t));
    expect(log.applied).toBe(250);
    expect(log.since(0, 1000).map((r: Rec) => r.time)).toEqual(Array.from({ length: 100 }, (_, i) => 151 + i));
    expect(log.since(200, 205).map((r: Rec) => r.time)).toEqual([201, 202, 203, 204, 205]);
    expect(log.since(240, 1000, 3).map((r: Rec) => r.time)).toEqual([241, 242, 243]);
    expect(log.since(250, 1000)).toEqual([]);
    // A node that joined at a late time holds nothing from before it; a peer asking for
    // everything since 0 must not make it walk 2^40 times.
    const late = makeLog().log;
    late.reset(2 ** 40);
    for (let t = 1; t <= 5; t++) late.receive(rec(2 ** 40 + t));
    expect(late.since(0, Number.MAX_SAFE_INTEGER).map((r: Rec) => r.time - 2 ** 40)).toEqual([1, 2, 3, 4, 5]);
    expect(late.since(0, 2 ** 40)).toEqual([]);
  });

  it('keeps at most keepChangeBytes of changes: the oldest kept commits lose theirs (re-sent, their pages are invalidated)', () => {
    const { log } = makeLog({ keep: 100, keepChangeBytes: 10_000 });
    for (let t = 1; t <= 50; t++) log.receive({ ...rec(t), changes: new Uint8Array(1000) });
    const kept = log.since(0, 1000) as Rec[];
    expect(kept).toHaveLength(50);
    const withChanges = kept.filter((r) => r.changes).map((r) => r.time);
    // Exactly the newest ten still carry theirs: 10 x 1,000 bytes.
    expect(withChanges).toEqual(Array.from({ length: 10 }, (_, i) => 41 + i));
    // Commits that fall out of the window stop counting against the budget.
    for (let t = 51; t <= 300; t++) log.receive(rec(t));
    log.receive({ ...rec(301), changes: new Uint8Array(5000) });
    log.receive({ ...rec(302), changes: new Uint8Array(5000) });
    expect((log.since(300, 1000) as Rec[]).map((r) => r.changes?.length)).toEqual([5000, 5000]);
  });

  it('buffers at most `ahead` commits past a gap and asks again for the rest', async () => {
    const { log, applied, resends, nextResend } = makeLog({ ahead: 100 });
    // Commit 1 is missing; 2..5000 arrive.
    for (let t = 2; t <= 5000; t++) log.receive(rec(t, 3));
    expect(log.pendingCount).toBeLessThanOrEqual(100);
    expect(log.seen).toBe(5000);
    // The gap timer asks the committer of the earliest buffered commit, for no more than fits.
    await nextResend();
    expect(resends[0]).toEqual({ from: 3, after: 0, upTo: 100 });
    log.receive(rec(1, 3));
    expect(log.applied).toBe(100);
    expect(applied).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    // Nothing after 100 was kept: asked for again, the window moved on.
    await nextResend();
    expect(resends.at(-1)).toEqual({ from: -1, after: 100, upTo: 200 });
    for (let t = 101; t <= 5000; t++) log.receive(rec(t, 3));
    expect(log.applied).toBe(5000);
    expect(log.pendingCount).toBe(0);
    log.close();
  });

  it('a wait for a time nobody announced leaves seen alone, asks the peers, and ends at its time-out', async () => {
    const { log, resends, nextResend } = makeLog();
    for (let t = 1; t <= 3; t++) log.receive(rec(t));
    const waited = log.waitUntil(1_000_000, 600);
    // Read-only transactions wait for `seen`: it must not move.
    expect(log.seen).toBe(3);
    await nextResend();
    expect(resends[0]).toEqual({ from: -1, after: 3, upTo: 3 + (1 << 16) });
    expect(await waited).toBe(false);
    expect(log.seen).toBe(3);
    // A wait that is reached resolves true, and its timer is gone.
    const reached = log.waitUntil(5, 60_000);
    log.receive(rec(4));
    log.receive(rec(5));
    expect(await reached).toBe(true);
    // The cluster's own waits (token times) still count as heard of.
    void log.waitApplied(7);
    expect(log.seen).toBe(7);
    log.close();
  });
});

describe('the commit log and a regeneration it learns of late', () => {
  it('drops a buffered commit found void when its turn comes, and applies the cluster\'s own commit at that time', () => {
    // Commits 2 and 3 of node 1 wait behind a gap at 1 while the log is frozen for a
    // recovery; the recovery regenerated the token at 1, so node 1's commits after 1 are void.
    const applied: Array<[number, number]> = [];
    const dropped: number[] = [];
    let regeneratedAt = Infinity;
    const log = new CommitLog({
      apply: (r: Rec) => applied.push([r.time, r.node]),
      requestResend: () => undefined,
      publish: () => undefined,
      isVoid: (r: Rec) => r.node === 1 && r.time > regeneratedAt,
      droppedVoid: (r: Rec) => dropped.push(r.time),
    });
    log.freeze();
    log.receive(rec(2, 1));
    log.receive(rec(3, 1));
    log.receive(rec(1, 0));
    expect(applied).toEqual([]);
    regeneratedAt = 1;
    log.thaw();
    expect(applied).toEqual([[1, 0]]);
    expect(dropped).toEqual([2]);
    // The new token's holder commits at 3, then 2: the void 3 waiting gives way to it.
    log.receive(rec(3, 0));
    log.receive(rec(2, 0));
    expect(applied).toEqual([[1, 0], [2, 0], [3, 0]]);
    expect(dropped).toEqual([2]);
  });
});

describe('the versions void commits replaced', () => {
  /** Changes: per page u64 replaces | u32 length | body (WHOLE_AND_DIFF: page | u32 length | diff). */
  function changes(entries: Array<{ replaces: number; kind: 'diff' | 'whole+diff' | 'none' }>, pageSize: number): Uint8Array {
    const parts: number[] = [];
    const u32 = (v: number) => parts.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
    for (const e of entries) {
      u32(e.replaces % 2 ** 32);
      u32(Math.floor(e.replaces / 2 ** 32));
      if (e.kind === 'none') u32(0xffffffff);
      else if (e.kind === 'diff') {
        u32(8);
        for (let i = 0; i < 8; i++) parts.push(i);
      } else {
        u32(0xfffffffe);
        for (let i = 0; i < pageSize; i++) parts.push(7);
        u32(4);
        for (let i = 0; i < 4; i++) parts.push(i);
      }
    }
    return Uint8Array.from(parts);
  }

  it('reads, per page, what the first commit after the time replaced, through every kind of change', () => {
    const PS = 64;
    const { log } = makeLog();
    log.receive({ time: 1, node: 0, pages: Uint32Array.of(5), changes: changes([{ replaces: 0, kind: 'diff' }], PS) });
    log.receive({ time: 2, node: 0, pages: Uint32Array.of(5, 9, 12), changes: changes([{ replaces: 1, kind: 'whole+diff' }, { replaces: 2 ** 33 + 3, kind: 'none' }, { replaces: 0, kind: 'diff' }], PS) });
    log.receive({ time: 3, node: 0, pages: Uint32Array.of(5, 13), changes: changes([{ replaces: 2, kind: 'diff' }, { replaces: 1, kind: 'diff' }], PS) });
    expect(Object.fromEntries(log.versionsBefore(1, PS))).toEqual({ 5: 1, 9: 2 ** 33 + 3, 12: 0, 13: 1 });
    expect(Object.fromEntries(log.versionsBefore(2, PS))).toEqual({ 5: 2, 13: 1 });
    expect(log.versionsBefore(3, PS).size).toBe(0);
  });
  it("lowers the app-visible times when this node's own commits are void, which a raise-only publish left high", () => {
    const { log, published } = makeLog();
    for (let t = 1; t <= 10; t++) log.receive(rec(t, 0));
    // A cluster commit at 14 heard of (buffered behind the gap), then the recovery decides:
    // the token was regenerated at 6, so 7..10 (this node's) and 14 (from the void token) are void.
    log.receive(rec(14, 0));
    published.length = 0;
    log.freeze();
    log.rollBack(6);
    log.thaw(6);
    expect(log.applied).toBe(6);
    expect(log.seen).toBe(6);
    expect(published[0]).toEqual([6, 14, true]);
    expect(published.some((p) => p[0] === 6 && p[1] === 6 && p[2] === true)).toBe(true);
    // The commits the app thread made past the log (never drained) are void too: still lowered.
    published.length = 0;
    log.rollBack(6);
    expect(published).toEqual([[6, 6, true]]);
  });
});
