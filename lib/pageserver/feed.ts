// The page server's side of the commit stream, in its service thread: every commit the
// cluster applies goes into the store in global-time order (the commit log applies them in
// that order), and the store is flushed in groups: whatever arrived while one flush was on
// disk goes in the next. A commit whose committer waits for the disk (durability 'disk') is
// acknowledged once a flush covering its time has completed.
//
// The store makes pages from the diffs a commit carries (page servers get every commit's
// full changes, whole pages included, like a backup: replication.ts). A page it cannot make
// (a change left out of a huge commit, or a diff against a version it never had) is taken
// whole from this node's own copy once the region holds it, fetched like any backup's. The
// store is flushed only while no page is missing, so every image on disk is complete.
import { performance } from 'node:perf_hooks';
import type { Cluster } from '../service/cluster';
import { NOT_CARRIED } from '../service/changes';
import { LOST_OWNER } from '../service/protocol';
import type { PageStore } from './store';

export class StoreFeed {
  /** Commits whose pages are still being fetched into the region. */
  private fetching = 0;
  private flushing = false;
  private scheduled = false;
  private unflushed = false;
  /** Committers waiting for the disk: acknowledged once `durableTime` reaches their time. */
  private readonly waiting: Array<{ to: number; time: number }> = [];
  /** Flushes that failed (the disk is full or gone): the page server stops acknowledging. */
  failed?: Error;

  constructor(
    private readonly n: Cluster,
    readonly store: PageStore,
  ) {
    this.fsyncsAtStart = store.stats().fsyncs;
  }

  get durableTime(): number {
    return this.store.durableTime;
  }

  /**
   * A commit was applied here (natively, so this node's copies are current): store it. The
   * caller then makes sure the region holds every page of it and calls `held`.
   */
  hold(time: number, pages: Uint32Array, changes: Uint8Array | undefined): void {
    const store = this.store;
    try {
      store.apply(time, pages, changes && changes.length > 0 ? changes : notCarried(pages));
    } catch (e) {
      // Malformed changes (the native side refused them too): the pages come whole from the region.
      this.n.ev.log('warn', `commit ${time}: ${(e as Error).message}; storing its pages from this node's copies`);
      store.apply(time, pages, notCarried(pages));
    }
    this.unflushed = true;
    if (this.oldestUnflushedAt === 0) this.oldestUnflushedAt = performance.now();
    this.fetching++;
  }

  /** Every page of commit `time` is in the region now; `ackTo`: the committer waits for the disk. */
  held(time: number, pages: Uint32Array, ackTo?: number): void {
    this.fetching--;
    const store = this.store;
    const { versions } = this.n.table;
    for (const p of pages) {
      if (store.missingVersion(p) === undefined) continue;
      store.putPage(p, Number(versions[p]), this.n.native.copyCommitted(p));
    }
    if (ackTo !== undefined) this.ackWhenDurable(ackTo, time);
    this.schedule();
  }

  /** For `dsm stats` and metrics: how far the disk is behind the cluster, and the flush rate. */
  stats(): Record<string, number> {
    const st = this.store.stats();
    const t = performance.now();
    const seconds = (t - this.startedAt) / 1000;
    return {
      ...st,
      lagCommits: Math.max(0, this.n.log.seen - st.durableTime),
      lagMs: this.oldestUnflushedAt === 0 ? 0 : Math.round(t - this.oldestUnflushedAt),
      fsyncsPerSecond: seconds > 0 ? Math.round((st.fsyncs - this.fsyncsAtStart) / seconds) : 0,
    };
  }

  private readonly startedAt = performance.now();
  private readonly fsyncsAtStart: number;
  /** When the oldest commit not yet on disk arrived (0: none). */
  private oldestUnflushedAt = 0;

  /** Acknowledges commit `time` to `to` once it is on disk. */
  ackWhenDurable(to: number, time: number): void {
    if (this.store.durableTime >= time && !this.failed) this.n.replication.ack(to, time);
    else this.waiting.push({ to, time });
  }

  /** Flushes once this turn's commits are in (group commit), and again while more arrive. */
  private schedule(): void {
    if (this.scheduled || this.flushing) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    const store = this.store;
    if (this.flushing || !this.unflushed || this.fetching > 0 || this.failed || this.n.closing) return;
    if (store.missing().length > 0) return; // taken whole when their fetches end (held)
    this.flushing = true;
    this.unflushed = false;
    const since = this.oldestUnflushedAt;
    this.oldestUnflushedAt = 0;
    try {
      const durable = await store.flush();
      this.n.ev.durable(durable);
      const keep: Array<{ to: number; time: number }> = [];
      for (const w of this.waiting) {
        if (w.time <= durable) this.n.replication.ack(w.to, w.time);
        else keep.push(w);
      }
      this.waiting.length = 0;
      this.waiting.push(...keep);
    } catch (e) {
      this.oldestUnflushedAt ||= since;
      this.failed = e as Error;
      this.n.ev.log('error', `the page store could not be written (${(e as Error).message}); commits are no longer acknowledged as durable`);
    } finally {
      this.flushing = false;
    }
    if (this.unflushed) this.schedule();
  }

  /**
   * Founds the cluster again from the store (a page server started alone on its directory):
   * every stored page is installed here as this node's, at its stored version, and the
   * cluster's time starts at the store's. A page the store was still waiting for whole
   * (only a restored snapshot can hold one) is lost, and reported so like any lost page.
   */
  foundFromStore(): void {
    const n = this.n;
    const ps = n.config.pageSize;
    const view = this.store.openView();
    const time = view.time;
    let done = 0;
    let lastReport = 0;
    try {
      view.batches(1024, (pages, versions, data, count) => {
        const ps32 = pages.subarray(0, count);
        // Installs take only invalid pages: this region starts as valid zero pages.
        for (const p of ps32) n.native.invalidate(p, 0, n.id);
        const installed = n.native.installPages(ps32, versions.subarray(0, count), new Uint16Array(count).fill(n.id), data.subarray(0, count * ps));
        if (installed !== count) throw new Error(`installed ${installed} of ${count} stored pages`);
        done += count;
        if (done - lastReport >= 8192) {
          lastReport = done;
          n.ev.progress('loading', done, view.count);
        }
      });
      if (view.count > done) {
        // Pages the store was still waiting for whole (only a restored snapshot holds them): lost.
        for (const p of view.pages()) {
          if (p.data !== null) continue;
          n.native.invalidate(p.page, p.version, LOST_OWNER);
          n.membership.lostPages.add(p.page);
        }
      }
    } finally {
      view.close();
    }
    n.ev.progress('loading', view.count, view.count);
    n.log.reset(time);
    if (n.token.token) n.token.token.time = time;
    n.ev.publish(time, time);
    n.ev.durable(time);
    if (n.membership.lostPages.size > 0) n.publishStatus();
    n.ev.log('warn', `founded the cluster again from the page store at time ${time} (${done} pages)`);
  }

  /**
   * This page server joined a running cluster (or joined again) at `time`, when the cluster's
   * written pages had these versions: the store jumps to that time, and every page it holds
   * at another version is fetched whole (a window at a time) before anything more reaches
   * the disk. Commits after `time` apply meanwhile (diffs on pages still missing leave them
   * missing; their whole copies, fetched at the latest version, complete them). A page the
   * cluster decided lost is stored as zeros, as a discard would make it.
   */
  joined(time: number, pages: Array<{ page: number; version: number; owner: number }>): void {
    const n = this.n;
    const written = pages.filter((p) => p.owner !== LOST_OWNER).map(({ page, version }) => ({ page, version }));
    const need = this.store.rebase(time, written);
    this.unflushed = true;
    if (need.length === 0) return this.schedule();
    n.ev.log('warn', `page store at time ${time}: fetching ${need.length} page(s) the cluster changed since it was written`);
    this.fetching++;
    let next = 0;
    let inFlight = 0;
    let done = 0;
    const WINDOW = 256;
    const pump = (): void => {
      while (inFlight < WINDOW && next < need.length) {
        const p = need[next++];
        inFlight++;
        n.pager.fetchFor(p, () => {
          inFlight--;
          done++;
          if (done % 1024 === 0 || done === need.length) n.ev.progress('catching-up', done, need.length);
          const { states, versions } = n.table;
          if (states[p] !== 0 && this.store.missingVersion(p) !== undefined) this.store.putPage(p, Number(versions[p]), n.native.copyCommitted(p));
          if (done === need.length) {
            this.fetching--;
            n.ev.log('warn', `page store caught up: ${need.length} page(s) fetched`);
            this.schedule();
          } else pump();
        });
      }
    };
    pump();
  }

  /** Everything applied so far, on disk (for a clean close). */
  async drain(): Promise<void> {
    while (this.flushing || this.scheduled) await new Promise((r) => setTimeout(r, 5));
    if (this.unflushed && this.fetching === 0 && this.store.missing().length === 0 && !this.failed) await this.store.flush();
  }
}

/** Changes that carry nothing for each page (the store takes them whole from the region). */
function notCarried(pages: Uint32Array): Uint8Array {
  const out = new Uint8Array(pages.length * 12);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < pages.length; i++) dv.setUint32(i * 12 + 8, NOT_CARRIED, true);
  return out;
}
