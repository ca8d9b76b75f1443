// The ring that carries the app thread's lent-token commits to the service thread: records
// the addon writes come out of the service's JavaScript drain as they went in, and the app learns when the service has left a commit
// unbroadcast for longer than AHEAD_MS (it then commits through the service instead).
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { AHEAD_MS, CommitRing } from '../../lib/service/commit_ring';
import { loadNativeHooks } from '../../lib/native';

const clock = () => performance.timeOrigin + performance.now();
const hooks = loadNativeHooks();
/** Pushes a record as the app thread does, written by the addon's own writer. */
const push = (ring: CommitRing, time: number, pages: Uint32Array, changes: Uint8Array) =>
  ring.push((words, w) => hooks.putCommitRecord(words, w, time, pages, changes));

describe('the commit ring', () => {
  it('hands every commit to the drain as pushed, oldest first, waking the service once per batch', () => {
    const ring = CommitRing.create();
    const recs = [
      { time: 1, pages: Uint32Array.of(3), changes: Uint8Array.of(1, 2, 3, 4, 5) },
      { time: 2 ** 33 + 7, pages: Uint32Array.of(), changes: new Uint8Array(0) },
      { time: 9, pages: Uint32Array.of(0, 1, 65535), changes: Uint8Array.of(255, 0, 7) },
    ];
    expect(recs.map((r) => push(ring, r.time, r.pages, r.changes))).toEqual([true, false, false]);
    const out: Array<{ time: number; pages: number[]; changes: number[] }> = [];
    ring.drain((time, pages, changes) => out.push({ time, pages: [...pages], changes: [...changes] }));
    expect(out).toEqual(recs.map((r) => ({ time: r.time, pages: [...r.pages], changes: [...r.changes] })));
    expect(push(ring, 10, Uint32Array.of(1), new Uint8Array(0))).toBe(true);
  });

  it('is behind once its oldest waiting commit is older than AHEAD_MS, and not after a drain', () => {
    const ring = CommitRing.create();
    expect(ring.behind(clock() + 1000)).toBe(false); // empty: nothing waits
    const before = clock();
    push(ring, 1, Uint32Array.of(0), new Uint8Array(0));
    const after = clock();
    expect(ring.behind(before)).toBe(false);
    expect(ring.behind(after + AHEAD_MS + 1)).toBe(true);
    // A later push does not make the oldest commit younger.
    push(ring, 2, Uint32Array.of(0), new Uint8Array(0));
    expect(ring.behind(after + AHEAD_MS + 1)).toBe(true);
    ring.drain(() => undefined);
    expect(ring.behind(after + AHEAD_MS + 1)).toBe(false);
    // The next batch is timed from its own first commit.
    const next = clock();
    push(ring, 3, Uint32Array.of(0), new Uint8Array(0));
    expect(ring.behind(next + AHEAD_MS / 2)).toBe(false);
  });
});
