// The page server's side of the commit stream, in its service thread: every commit the
// cluster applies goes into the store in global-time order (the cluster's commit log applies
// them in that order) and into the page server's own log on disk (wal.ts), synced in
// groups: whatever arrived while one fdatasync was under way goes with the next. A commit
// whose committer waits for the disk (durability 'disk') is acknowledged once a sync
// covering its time has completed. The store (LMDB) takes the log in checkpoints, off the
// acknowledgement's path.
//
// The store makes pages from the diffs a commit carries (page servers get every commit's
// full changes, whole pages included, like a backup: replication.ts). A page it cannot make
// (a change left out of a huge commit, or a diff against a version it never had) is taken
// whole from this node's own copy once the region holds it, fetched like any backup's. The
// log is synced only while no page is missing, so every durable image is complete.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Cluster } from '../service/cluster';
import { NOT_CARRIED } from '../service/changes';
import { encode, LOST_OWNER, Msg, type PageVersions } from '../service/protocol';
import { CommitLog, LOG_FILE_BYTES } from './wal';
import { PageStore } from './store';
import { modelBlocks } from '../alloc/buddy';
import { geometry, MODELS } from '../alloc/layout';
import { type ClusterIdentity, newIdentity } from '../service/cluster_identity';
import { ClusterRecord } from './cluster_record';
import { checkPeer, liveCluster, refuseCluster, type Starting } from './live_cluster';
import type { Answer } from '../service/cluster_query';

/**
 * The store takes the log in a checkpoint once this many bytes were logged, or this long after
 * the last. Three quarters of a log file's step (wal.ts), so the next file starts before the
 * current one has to grow (growing costs a sync). DSM_TEST_CHECKPOINT_MS shortens the time
 * for tests whose crashes must fall among checkpoints.
 */
const CHECKPOINT_BYTES = (LOG_FILE_BYTES / 4) * 3;
const CHECKPOINT_MS = Number(process.env.DSM_TEST_CHECKPOINT_MS) || 2000;
/** A failed write of the log or the store is tried again after this long (the disk may get room). */
const RETRY_MS = 1000;

export class StoreFeed {
  /** Commits whose pages are still being fetched into the region. */
  private fetching = 0;
  private flushing = false;
  private scheduled = false;
  private unflushed = false;
  /** Committers waiting for the disk: acknowledged once `durableTime` reaches their time. */
  private readonly waiting: Array<{ to: number; time: number }> = [];
  /** Nodes that asked what the disk holds (DurableQuery): the highest time each asked for. */
  private readonly queries = new Map<number, number>();
  /**
   * The last write of the log that failed (the disk is full or gone), until one succeeds:
   * nothing is acknowledged meanwhile, and the write is tried again every RETRY_MS.
   */
  failed?: Error;

  /** Every commit up to this time is on disk (in the log or the store). */
  durableTime: number;
  private checkpointing = false;
  private lastCheckpoint = performance.now();

  private constructor(
    private readonly n: Cluster,
    readonly store: PageStore,
    private readonly wal: CommitLog,
    private readonly record: ClusterRecord,
  ) {
    this.durableTime = store.appliedTime;
    this.fsyncsAtStart = store.stats().fsyncs;
  }

  /**
   * Opens the store in `dir` with its log: the log is replayed over the store's image and
   * taken in by a checkpoint before anything else, so the store on disk is whole again.
   */
  static async open(n: Cluster, dir: string, geometry: { pageSize: number; regionSize: number }): Promise<StoreFeed> {
    const store = await PageStore.open(dir, geometry);
    try {
      const { log, replay } = CommitLog.open(store.dir, store);
      if (replay.records > 0) n.ev.log('warn', `page store: replayed ${replay.records} logged change(s) up to time ${store.appliedTime}${replay.tornTail ? ' (a torn last record, never acknowledged, left out)' : ''}`);
      const done = log.rotate();
      await store.flush();
      await done();
      return new StoreFeed(n, store, log, ClusterRecord.open(store.dir, (m) => n.ev.log('warn', m)));
    } catch (e) {
      await store.close().catch(() => undefined);
      throw e;
    }
  }

  /**
   * A commit was applied here (natively, so this node's copies are current): store it. The
   * caller then makes sure the region holds every page of it and calls `held`.
   */
  hold(time: number, pages: Uint32Array, changes: Uint8Array | undefined): void {
    const store = this.store;
    let c = changes && changes.length > 0 ? changes : notCarried(pages);
    try {
      store.apply(time, pages, c);
    } catch (e) {
      // Malformed changes (the native side refused them too): the pages come whole from the region.
      this.n.ev.log('warn', `commit ${time}: ${(e as Error).message}; storing its pages from this node's copies`);
      c = notCarried(pages);
      store.apply(time, pages, c);
    }
    this.wal.appendCommit(time, pages, c);
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
      this.putPage(p, Number(versions[p]), this.committedCopy(p));
    }
    if (ackTo !== undefined) this.ackWhenDurable(ackTo, time);
    this.schedule();
  }

  /**
   * This node's committed copy of `page`, for the store. A page outside transactional
   * consistency is never fetched here (its model's protocol keeps it, and a page request
   * for it goes unanswered): the store takes it as zeros, what an allocation holds.
   */
  private committedCopy(page: number): Uint8Array {
    if (this.n.sequential.handles(page)) return new Uint8Array(this.n.config.pageSize);
    return this.n.native.copyCommitted(page);
  }

  /** A whole page for the store, logged like every change. */
  private putPage(page: number, version: number, data: Uint8Array): void {
    if (this.store.putPage(page, version, data) !== 'ignored') this.wal.appendPage(page, version, data);
  }

  /** For `dsm stats` and metrics: how far the disk is behind the cluster, and the flush rate. */
  stats(): Record<string, number> {
    const st = this.store.stats();
    const t = performance.now();
    const seconds = (t - this.startedAt) / 1000;
    const fsyncs = st.fsyncs + this.wal.syncs;
    return {
      ...st,
      durableTime: this.durableTime,
      storeTime: st.durableTime,
      fsyncs,
      logFsyncs: this.wal.syncs,
      commitsPerFsync: this.wal.recordsPerSync,
      logBytes: this.wal.bytes,
      lagCommits: Math.max(0, this.n.log.seen - this.durableTime),
      lagMs: this.oldestUnflushedAt === 0 ? 0 : Math.round(t - this.oldestUnflushedAt),
      fsyncsPerSecond: seconds > 0 ? Math.round((fsyncs - this.fsyncsAtStart) / seconds) : 0,
    };
  }

  private readonly startedAt = performance.now();
  private readonly fsyncsAtStart: number;
  /** When the oldest commit not yet on disk arrived (0: none). */
  private oldestUnflushedAt = 0;

  /** Where the store stands (the debug state of a stuck cluster). */
  debugState(): Record<string, unknown> {
    return {
      applied: this.store.appliedTime,
      durable: this.durableTime,
      waiting: this.waiting.slice(0, 4),
      fetching: this.fetching,
      missing: this.store.missing().length,
      flushing: this.flushing,
      unflushed: this.unflushed,
      failed: this.failed?.message,
    };
  }

  /**
   * DurableQuery: `from` waits until every commit up to `time` is on disk (lib/service/durable_reads.ts).
   * Asked once this node has applied that far (a configuration's commit, which the disk need
   * not hold, may be the latest), and answered then or after the flush that takes it.
   */
  onDurableQuery(from: number, time: number): void {
    void this.n.log.waitApplied(time).then(() => {
      if (this.onDisk() >= time) this.n.links.send(from, Msg.DurableAt, encode.time(this.onDisk()));
      else this.queries.set(from, Math.max(time, this.queries.get(from) ?? 0));
    });
  }

  /**
   * Every commit up to this time is on disk as far as it must be: the durable time, or every
   * commit applied here when the store took nothing since its last sync (the store takes each
   * commit with data as it is applied; the configurations' commits need no disk).
   */
  private onDisk(): number {
    if (this.failed) return this.durableTime;
    return this.store.appliedTime === this.durableTime ? Math.max(this.durableTime, this.n.log.applied) : this.durableTime;
  }

  /** Acknowledges commit `time` to `to` once it is on disk. */
  ackWhenDurable(to: number, time: number): void {
    if (this.durableTime >= time && !this.failed) this.n.replication.ack(to, time);
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
    if (this.flushing || !this.unflushed || this.fetching > 0 || this.retrying || this.n.closing) return;
    if (store.missing().length > 0) return; // taken whole when their fetches end (held)
    this.flushing = true;
    this.unflushed = false;
    const since = this.oldestUnflushedAt;
    this.oldestUnflushedAt = 0;
    try {
      // Everything applied so far is in the log once this sync completes.
      const durable = store.appliedTime;
      await this.wal.sync();
      if (this.failed) this.n.ev.log('warn', `the page store is written again (${this.failed.message} is over); commits are acknowledged as durable`);
      this.failed = undefined;
      this.durableTime = durable;
      this.n.ev.durable(durable);
      const keep: Array<{ to: number; time: number }> = [];
      for (const w of this.waiting) {
        if (w.time <= durable) this.n.replication.ack(w.to, w.time);
        else keep.push(w);
      }
      this.waiting.length = 0;
      this.waiting.push(...keep);
      const onDisk = this.onDisk();
      for (const [id, t] of this.queries) {
        if (t > onDisk) continue;
        this.queries.delete(id);
        this.n.links.send(id, Msg.DurableAt, encode.time(onDisk));
      }
    } catch (e) {
      this.oldestUnflushedAt ||= since;
      this.unflushed = true;
      this.writeFailed(e as Error);
    } finally {
      this.flushing = false;
    }
    if (this.retrying) return;
    if (this.unflushed) this.schedule();
    else this.maybeCheckpoint();
  }

  /** The last checkpoint failed (said once until one succeeds). */
  private checkpointFailed = false;
  /** A retry of a failed write is due: flushes wait for it. */
  private retrying = false;

  /** The log or the store could not be written: say so (once until it works again) and try again in a while. */
  private writeFailed(e: Error): void {
    if (!this.failed) this.n.ev.log('error', `the page store could not be written (${e.message}); commits are not acknowledged as durable until it can be (tried again every ${RETRY_MS} ms: free some disk space)`);
    this.failed = e;
    if (this.retrying) return;
    this.retrying = true;
    setTimeout(() => {
      this.retrying = false;
      this.unflushed = true;
      this.schedule();
    }, RETRY_MS).unref();
  }

  /**
   * The store takes in the log: a new log file starts, the store flushes everything applied
   * (one synced LMDB transaction), and the older files go. Runs beside the syncs.
   */
  private maybeCheckpoint(): void {
    if (this.checkpointing || this.failed || this.retrying || this.n.closing) return;
    if (this.wal.bytes < CHECKPOINT_BYTES && performance.now() - this.lastCheckpoint < CHECKPOINT_MS) return;
    if (this.store.missing().length > 0) return;
    void this.checkpoint().catch(() => undefined);
  }

  /**
   * A checkpoint now (a snapshot wants the store's image current): resolves once the store
   * on disk holds everything durable when it was called.
   */
  async checkpoint(): Promise<void> {
    while (this.checkpointing) await new Promise((r) => setTimeout(r, 2));
    this.checkpointing = true;
    this.lastCheckpoint = performance.now();
    try {
      const done = this.wal.rotate();
      await this.store.flush();
      await done();
      if (this.checkpointFailed) this.n.ev.log('warn', 'the page store took in its log again');
      this.checkpointFailed = false;
    } catch (e) {
      // The log still holds everything (its older files stay until a flush retires them), so
      // acknowledgements go on; the next checkpoint is due CHECKPOINT_MS from this one.
      if (!this.checkpointFailed) this.n.ev.log('error', `the page store could not take in its log (${(e as Error).message}); the log grows until it can (tried again every ${CHECKPOINT_MS} ms: free some disk space)`);
      this.checkpointFailed = true;
      throw e;
    } finally {
      this.checkpointing = false;
    }
  }

  /**
   * Started without peers: the addresses to join the store's cluster through, if it still
   * runs (live_cluster.ts); none: found it again.
   */
  async liveCluster(): Promise<string[]> {
    const id = this.record.data?.identity.id;
    this.starting = { id: id ?? '', time: this.store.appliedTime, rank: randomBytes(8).toString('hex'), waiting: false };
    try {
      return await liveCluster(this.n, this.store.dir, this.record.data, this.starting);
    } finally {
      this.starting = undefined;
    }
  }

  /**
   * Before joining through `peer` (started with peers, or joining again), with what it said
   * of its cluster: throws StoreError when the cluster there cannot take this store (live_cluster.ts checkPeer), so nothing
   * in the store changes.
   */
  checkPeer(peer: string, answer: Answer): void {
    const mine = this.lineage(peer);
    if (mine) checkPeer(this.store.dir, mine, this.store.appliedTime, peer, answer);
  }

  /** Admitted to `identity` at `time` through `via`: the same rule, on what admitted it, before anything changes (a cluster can change between the question and the join). */
  checkAdmission(identity: ClusterIdentity, time: number, via: string): void {
    const mine = this.lineage(via);
    if (mine) refuseCluster(this.store.dir, mine, this.store.appliedTime, via, identity, time);
  }

  /**
   * The cluster whose commits the store holds, for a join's check; undefined: any cluster
   * may take it. A store that holds no commit (a new or empty directory: how a page server
   * is added) loses nothing. One that records no cluster (made by an older version, or
   * restored from a snapshot an older version wrote) cannot be told apart: it joins as
   * before, and says so.
   */
  private lineage(peer: string): ClusterIdentity | undefined {
    if (this.store.appliedTime === 0) return undefined;
    if (!this.record.data && !this.saidNoRecord) {
      this.saidNoRecord = true;
      this.n.ev.log('warn', `the page store in ${this.store.dir} records no cluster (made by an older version, or restored from a snapshot an older version wrote): joining the cluster at ${peer} replaces its heap (time ${this.store.appliedTime}) with that cluster's, unchecked`);
    }
    return this.record.data?.identity;
  }

  private saidNoRecord = false;

  /** The cluster whose heap the store holds, as recorded (a snapshot names it); undefined: none recorded. */
  get cluster(): ClusterIdentity | undefined {
    return this.record.data?.identity;
  }

  /** While asking whether the store's cluster runs: what this page server tells others asking the same (live_cluster.ts Starting). */
  starting?: Starting;

  /**
   * This page server founds a cluster: a new one on a new store, or one that goes on from
   * the store's cluster at the store's time. Recorded before any member can join it.
   */
  founding(): ClusterIdentity {
    const t = this.store.appliedTime;
    const identity = t > 0 ? newIdentity(t, this.record.data?.identity.id ?? '') : newIdentity();
    this.record.write({ identity, members: [this.n.address] });
    return identity;
  }

  /** The configuration changed (or this page server joined one): record its members' addresses. */
  membersChanged(): void {
    for (const id of this.queries.keys()) if (!this.n.members.has(id)) this.queries.delete(id);
    this.record.write({ identity: this.n.identity, members: [...this.n.members.values()].map((m) => m.address) });
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
        const mine = new Uint16Array(count).fill(n.id);
        // Installs take only invalid pages: this region starts as valid zero pages.
        n.native.invalidatePages(ps32, new Float64Array(count), mine);
        const installed = n.native.installPages(ps32, versions.subarray(0, count), mine, data.subarray(0, count * ps));
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
    this.declareModels();
    n.log.reset(time);
    if (n.token.token) n.token.token.time = time;
    n.ev.publish(time, time);
    n.ev.durable(time);
    if (n.membership.lostPages.size > 0) n.publishStatus();
    n.ev.log('warn', `founded the cluster again from the page store at time ${time} (${done} pages)`);
  }

  /**
   * Founding again: the heap's blocks outside transactional consistency get their models
   * back (the page table starts knowing none, and a model is a property of pages that
   * travels with commits, not with the pages). The page server owns the sequential and
   * migratory blocks, with what the store holds of them: writes made outside transactions
   * never reach a page server, so that is what the last transaction wrote there (zeros when
   * nothing did). Local blocks belonged to a node of the cluster that stopped: refused
   * everywhere, as a dead node's local pages are.
   */
  private declareModels(): void {
    const n = this.n;
    const ps = n.config.pageSize;
    const g = geometry(n.config.numPages * ps, ps);
    const tables = new Uint8Array(g.dataStart * ps);
    n.native.copyCommittedPages(Uint32Array.from({ length: g.dataStart }, (_, i) => i), tables);
    const blocks = modelBlocks({ u8: tables, u32: new Uint32Array(tables.buffer) }, g);
    for (const b of blocks) {
      if (b.model === MODELS.local) {
        n.native.setModel(b.first, b.count, b.model, LOST_OWNER);
        continue;
      }
      const data = new Uint8Array(b.count * ps);
      n.native.copyCommittedPages(Uint32Array.from({ length: b.count }, (_, i) => b.first + i), data);
      n.native.setModel(b.first, b.count, b.model, n.id);
      for (let i = 0; i < b.count; i++) n.native.installSequential(b.first + i, data.subarray(i * ps, (i + 1) * ps), true, n.id);
    }
    if (blocks.length > 0) n.ev.log('warn', `page store: ${blocks.length} block(s) outside transactional consistency declared again`);
  }

  /**
   * This page server joined a running cluster (or joined again) at `time`, when the cluster's
   * written pages had these versions: the store jumps to that time, and every page it holds
   * at another version is fetched whole (a window at a time) before anything more reaches
   * the disk. Commits after `time` apply meanwhile (diffs on pages still missing leave them
   * missing; their whole copies, fetched at the latest version, complete them). A page the
   * cluster decided lost is stored as zeros, as a discard would make it.
   */
  joined(time: number, table: PageVersions): void {
    const n = this.n;
    this.membersChanged();
    const written: Array<{ page: number; version: number }> = [];
    for (let i = 0; i < table.pages.length; i++) if (table.owners[i] !== LOST_OWNER) written.push({ page: table.pages[i], version: table.versions[i] });
    const all = this.store.rebase(time, written);
    this.wal.appendRebase(time, written);
    this.unflushed = true;
    const version = new Map(written.map((p) => [p.page, p.version]));
    const need = all.filter((p) => {
      if (!n.sequential.handles(p)) return true;
      this.putPage(p, version.get(p)!, this.committedCopy(p));
      return false;
    });
    if (need.length === 0) return this.schedule();
    n.ev.log('warn', `page store at time ${time}: fetching ${need.length} page(s) the cluster changed since it was written`);
    this.fetching++;
    // A fetch can end without its page: a read-ahead reply leaves out pages the owner
    // cannot serve, and a newer commit can cross a reply. Those go round again (as a
    // backup's fetches do, replication.ts ensureHeld): one left missing would keep every
    // later sync, and so every 'disk' acknowledgement, waiting for good. A page decided
    // lost is not asked for again.
    const queue = Array.from(need);
    let next = 0;
    let inFlight = 0;
    let done = 0;
    let pumping = false;
    const fetched = (p: number): boolean => {
      const { states, versions, owners } = n.table;
      if (this.store.missingVersion(p) === undefined) return true;
      if (states[p] !== 0) {
        this.putPage(p, Number(versions[p]), this.committedCopy(p));
        return true;
      }
      return owners[p] === LOST_OWNER || n.closing;
    };
    const WINDOW = 256;
    const pump = (): void => {
      // Fetches that end at once (the page is here already) would otherwise recurse a page deep each.
      if (pumping) return;
      pumping = true;
      try {
        while (inFlight < WINDOW && next < queue.length) {
          const p = queue[next++];
          inFlight++;
          n.pager.fetchFor(p, () => {
            inFlight--;
            if (!fetched(p)) {
              queue.push(p);
              return pump();
            }
            done++;
            if (done % 1024 === 0 || done === need.length) n.ev.progress('catching-up', done, need.length);
            if (done === need.length) {
              this.fetching--;
              n.ev.log('warn', `page store caught up: ${need.length} page(s) fetched${queue.length > need.length ? ` (${queue.length - need.length} asked for again)` : ''}`);
              this.schedule();
            } else pump();
          });
        }
      } finally {
        pumping = false;
      }
    };
    pump();
  }

  /** Everything applied so far on disk, and the store closed (a clean close). */
  async close(): Promise<void> {
    while (this.flushing || this.scheduled || this.checkpointing) await new Promise((r) => setTimeout(r, 5));
    if (!this.failed && this.fetching === 0 && this.store.missing().length === 0) {
      const done = this.wal.rotate();
      await this.store.flush();
      await done();
    }
    this.wal.close();
    await this.store.close();
  }
}

/** Changes that carry nothing for each page (the store takes them whole from the region). */
function notCarried(pages: Uint32Array): Uint8Array {
  const out = new Uint8Array(pages.length * 12);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < pages.length; i++) dv.setUint32(i * 12 + 8, NOT_CARRIED, true);
  return out;
}
