// Replicated durability. A commit record carries each written page's change, and every
// node holding a page's previous version applies it (commits.ts), so copies stay current
// instead of being thrown away. With durability 'replicated' a commit is acknowledged to
// the program only once its backups hold it: the next `backups` members after the
// committer in id order (wrapping), each holding every page of the commit at its version
// or newer. The commit carries the whole page wherever a backup may lack the version it
// replaces (native/dsm.h SetBackups), diffs elsewhere, so a backup fetches a page only when
// it became a backup after the commit (BackupRequest). When a node dies, recovery moves its
// pages to a survivor holding their latest version (membership.ts), so an acknowledged
// commit survives any `replicas` failures.
//
// With durability 'disk' the commit waits instead for a page server (lib/pageserver), which
// answers CommitAck only once the commit is on its disk. Page servers get every commit's
// full changes whatever the durability (they store every page), but back up no one's pages
// in memory for the 'replicated' rotation.
//
// Acknowledgements are pipelined: the program's next transaction runs while earlier
// commits wait for theirs; a commit counts as durable once it and every earlier commit of
// this node are.
import { decode, encode, LOST_OWNER, Msg, NO_NODE } from './protocol';
import type { Cluster } from './cluster';
import { splitAddress, unspecifiedHost } from './transport';

export type Durability = 'none' | 'replicated' | 'disk';

/** The Commit record's backups field when the committer waits for a page server's disk. */
export const DISK = 255;

interface Unacked {
  time: number;
  pages: Uint32Array;
  /** How many backups the commit asked for. */
  want: number;
  /** Members that said they hold it. */
  acks: Set<number>;
}

/** An unacknowledged commit is asked for again this often (an ack can be lost with a connection). */
const RETRY_MS = 1000;
/** Test hook: a request to hold a member's older pages (time 0) waits this long here before its fetches start, as a slow backup's would. */
const OLDER_PAGES_DELAY_MS = Number(process.env.DSM_TEST_OLDER_PAGES_DELAY_MS) || 0;

export class Replication {
  /** This node's commits waiting for their backups, oldest first. */
  private readonly unacked: Unacked[] = [];
  private readonly byTime = new Map<number, Unacked>();
  /** Every commit of this node up to this time is held by its backups. */
  durable = 0;
  private lastOwn = 0;
  private retryTimer?: NodeJS.Timeout;
  /** Pages this node fetched whole to back another node's commit up (dsm stats). */
  backupFetches = 0;

  constructor(
    private readonly n: Cluster,
    readonly durability: Durability,
    readonly replicas: number,
  ) {}

  /** How many backups this node's commits ask for (0: durability 'none'; DISK: a page server). */
  get backups(): number {
    if (this.durability === 'disk') return DISK;
    return this.durability === 'replicated' ? this.replicas : 0;
  }

  /** The page servers of the configuration. */
  pageServers(): number[] {
    const out: number[] = [];
    for (const m of this.n.members.values()) if (m.pageServer) out.push(m.id);
    return out;
  }

  /**
   * The members that back up `node`'s commits when it asks for `want` backups: the next
   * `want` ids after it in id order, wrapping, page servers left out unless there are too
   * few others; with DISK the page servers (every node computes the same set from the
   * configuration in force at the commit's time).
   */
  backupsOf(node: number, want: number, without?: ReadonlySet<number>): number[] {
    const servers = this.pageServers().filter((id) => id !== node && !without?.has(id));
    if (want === DISK) return servers;
    const others = this.n.membership.list().filter((id) => id !== node && !this.n.members.get(id)?.pageServer && !without?.has(id));
    if (want === 0) return [];
    let start = others.findIndex((id) => id > node);
    if (start < 0) start = 0;
    const out: number[] = [];
    for (let i = 0; i < Math.min(want, others.length); i++) out.push(others[(start + i) % others.length]);
    // Too few other nodes: page servers (which hold every page anyway) make up the number.
    for (const id of servers) if (out.length < want) out.push(id);
    return out;
  }

  /** A 'disk' commit found no page server in the cluster: said once, until one joins. */
  private toldNoPageServer = false;

  /** Says (once until a page server joins) that 'disk' commit `time` waits for a page server, if none is a member. */
  private sayNoPageServer(time: number): void {
    if (this.toldNoPageServer || this.pageServers().length > 0) return;
    // Not an error: a page server may join later (dsm pageserver --peers), and then the
    // commits waiting for it are acknowledged. But a program must not hang unexplained.
    this.toldNoPageServer = true;
    // Listening on every interface, this node's address is not one to dial from elsewhere.
    const { host, port } = splitAddress(this.n.address);
    const peer = unspecifiedHost(host) ? `THIS-HOST:${port}` : this.n.address;
    this.n.ev.log(
      'warn',
      `durability 'disk': commit ${time} waits for a page server, and none is in the cluster; start one (dsm pageserver --dir DIR --peers ${peer} --secret ...${peer === this.n.address ? '' : ', THIS-HOST being this machine\'s name or IP'}) or use durability 'replicated'`,
    );
  }

  /** This node made commit `time` (broadcast already): wait for its backups if it asked for any. */
  committed(time: number, pages: Uint32Array, want: number): void {
    this.lastOwn = Math.max(this.lastOwn, time);
    if (want === DISK) this.sayNoPageServer(time);
    if (want > 0) {
      const u: Unacked = { time, pages, want, acks: new Set() };
      this.unacked.push(u);
      this.byTime.set(time, u);
      this.armRetry();
    }
    this.advance();
  }

  /** CommitAck: `from` holds these commits of ours. */
  onAck(from: number, payload: Buffer): void {
    let head = false;
    for (const t of decode.commitAck(payload)) {
      // Time 0: the pages asked for by askToHoldOlderPages.
      if (t === 0) {
        const left = (this.olderPagesAsked.get(from) ?? 0) - 1;
        if (left > 0) this.olderPagesAsked.set(from, left);
        else this.olderPagesAsked.delete(from);
        this.checkHeldElsewhere();
      }
      if (t > 0) this.n.durableReads.acked(from, t);
      const u = this.byTime.get(t);
      if (!u) continue;
      u.acks.add(from);
      if (u === this.unacked[0]) head = true;
    }
    if (head) this.advance();
  }

  /** Acknowledgements made this turn, per committer: sent together once the turn ends. */
  private readonly acksOut = new Map<number, number[]>();

  /** Tells committer `to` that this node holds its commit `time` (page servers: on disk). */
  ack(to: number, time: number): void {
    const q = this.acksOut.get(to);
    if (q) {
      q.push(time);
      return;
    }
    this.acksOut.set(to, [time]);
    if (this.acksOut.size === 1) {
      // Sent as soon as the frames being handled now are: the acknowledgements of every commit
      // that arrived together go in one message, and none waits behind the rest of the event
      // loop's turn (a committer awaiting each commit waits for exactly this).
      queueMicrotask(() => {
        for (const [id, times] of this.acksOut) this.n.links.send(id, Msg.CommitAck, encode.commitAck(times));
        this.acksOut.clear();
      });
    }
  }

  /** Who gets `node`'s commits with every change carried (whole pages too): its backups and the page servers. */
  fullCopiesOf(node: number, want: number): Set<number> {
    const out = new Set(this.backupsOf(node, want));
    for (const id of this.pageServers()) if (id !== node) out.add(id);
    return out;
  }

  /** Moves the durable mark past every commit whose backups (and predecessors') hold it. */
  private advance(): void {
    const members = this.n.members;
    // (Not computed for durability 'none', which never waits: it sorts the members, per commit.)
    const others = this.unacked.length ? this.backupsOf(this.n.id, this.replicas).length : 0;
    while (this.unacked.length) {
      const u = this.unacked[0];
      let held = 0;
      for (const a of u.acks) if (members.has(a)) held++;
      // 'disk': one page server's disk (none in the configuration: wait for one). Fewer
      // members than backups asked for: every other member must hold it.
      if (u.want === DISK ? held < 1 : held < Math.min(u.want, others)) break;
      this.unacked.shift();
      this.byTime.delete(u.time);
    }
    const mark = this.unacked.length ? this.unacked[0].time - 1 : this.lastOwn;
    if (mark > this.durable) {
      this.durable = mark;
      this.n.ev.durable(mark);
    }
    if (!this.unacked.length && this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
  }

  /**
   * Another node's commit was just applied here: if this node is one of its backups, make
   * sure it holds every page of it, then say so.
   */
  applied(node: number, time: number, pages: Uint32Array, want: number, changes?: Uint8Array): void {
    const store = this.n.store;
    if (store) {
      // A page server holds every commit, and acknowledges one only once it is on disk.
      // Its acknowledgement, 'disk' or 'replicated' alike, waits for its disk.
      const ackTo = want > 0 && this.backupsOf(node, want).includes(this.n.id) ? node : undefined;
      store.hold(time, pages, changes);
      this.ensureHeld(time, pages, () => store.held(time, pages, ackTo));
      return;
    }
    if (want === 0 || !this.backupsOf(node, want).includes(this.n.id)) return;
    this.hold(node, time, pages);
  }

  /** BackupRequest: a member whose backups changed asks us to hold one of its commits. */
  onBackupRequest(from: number, payload: Buffer): void {
    const r = decode.backupRequest(payload);
    if (r.pages.some((p) => p >= this.n.config.numPages)) throw new Error('a backup request names a page outside the region');
    const store = this.n.store;
    const delay = r.time === 0 && OLDER_PAGES_DELAY_MS > 0 ? new Promise((resolve) => setTimeout(resolve, OLDER_PAGES_DELAY_MS)) : undefined;
    void (delay ?? Promise.resolve()).then(() => this.n.log.waitApplied(r.time)).then(() => {
      // The commit at that time is another node's: the asker's was voided by a recovery
      // (recovery.ts voidAbove) and it has not heard yet. Holding pages at that time or
      // newer says nothing about its commit.
      const rec = r.time > 0 ? this.n.log.since(r.time - 1, r.time)[0] : undefined;
      if (rec && rec.node !== from) {
        this.n.ev.log('warn', `node ${from} asked to back up its commit ${r.time}, but commit ${r.time} is node ${rec.node}'s; not acknowledged`);
        return;
      }
      if (store) this.ensureHeld(r.time, r.pages, () => store.ackWhenDurable(from, r.time));
      else this.hold(from, r.time, r.pages);
    });
  }

  /** Fetches what is missing of `pages` at `time` or newer, then acknowledges to `to`. */
  private hold(to: number, time: number, pages: Uint32Array): void {
    if (!this.n.members.has(to)) return;
    this.ensureHeld(time, pages, () => this.ack(to, time));
  }

  /** Fetches what is missing of `pages` (of commit `time`) at `time` or newer, then calls `done`. */
  private ensureHeld(time: number, pages: Uint32Array, done: () => void): void {
    const n = this.n;
    if (n.closing) return;
    const { states, versions, owners } = n.table;
    const missing: number[] = [];
    for (const p of pages) {
      // A page decided lost is nobody's to hold (a later discard makes it new again).
      if (owners[p] === LOST_OWNER) continue;
      // A page the commit allocated outside transactional consistency (written in the
      // allocating transaction): its model's own protocol keeps it, never a backup. Fetched
      // here, it would never become valid, and this would ask again forever.
      if (n.sequential.handles(p)) continue;
      if (states[p] === 0) missing.push(p);
      else if (Number(versions[p]) < time) {
        // Applying the commit updated or invalidated every page of it: a valid older copy
        // here means the commit was not applied, and a fetch would not help.
        n.ev.log('warn', `cannot back up commit ${time}: page ${p} is at version ${versions[p]}`);
        return;
      }
    }
    if (missing.length === 0) {
      done();
      return;
    }
    let left = missing.length;
    this.backupFetches += missing.length;
    for (const p of missing) {
      n.pager.fetchFor(p, () => {
        // Installed (or crossed by a newer commit, which a current copy would have taken):
        // look again once every fetch has ended.
        if (--left === 0) this.ensureHeld(time, pages, done);
      });
    }
  }

  /** The configuration changed: commits waiting on members that left ask their new backups. */
  configurationChanged(): void {
    for (const id of [...this.olderPagesAsked.keys()]) if (!this.n.members.has(id)) this.olderPagesAsked.delete(id);
    if (this.pageServers().length > 0) this.toldNoPageServer = false;
    // The last page server left or died while commits wait for it.
    const waiting = this.unacked.find((u) => u.want === DISK);
    if (waiting) this.sayNoPageServer(waiting.time);
    this.tellNative();
    this.advance();
    this.askAgain();
    this.checkHeldElsewhere();
  }

  /**
   * Members `leaving` are about to leave (leave_intent.ts): this node's backups in the
   * configuration without them are asked now to hold every page it owns (and `pages`, handed
   * over to it by a leaver: leaving.ts), while the leavers still hold their copies; `done`
   * runs once those backups have them (or are gone, or this node closes). A leaver that was
   * this node's backup held the second copy of its pages: before, it took that copy along,
   * and until the backup after it had fetched them a failure of this node lost them. So did
   * a successor that was its leaver's backup, for the pages handed to it (the model fault
   * workload, seed 39200001: a node closed, its successor was killed at once, and five heap
   * pages were lost with one failure). Durability 'replicated' only: 'none' keeps no
   * second copy, and a page server takes every commit of every node.
   */
  holdWithoutLeavers(leaving: ReadonlySet<number>, pages: number[], done: () => void): void {
    const n = this.n;
    if (this.durability !== 'replicated' || n.closing || leaving.has(n.id)) return done();
    const future = this.backupsOf(n.id, this.replicas, leaving).filter((id) => !n.members.get(id)?.pageServer);
    // Backups that stay hold its pages already (or are fetching them since they became its
    // backups): asked again, a stalled one would hold the acknowledgement (and the leaver's
    // close) until it runs again.
    const current = new Set(this.backupsOf(n.id, this.replicas));
    this.askToHoldOlderPages(future.filter((id) => !current.has(id)));
    if (pages.length > 0) {
      const b = encode.backupRequest(0, Uint32Array.from(pages));
      for (const id of future) {
        n.links.send(id, Msg.BackupRequest, b);
        this.olderPagesAsked.set(id, (this.olderPagesAsked.get(id) ?? 0) + 1);
      }
    }
    this.heldElsewhere.push({ backups: future, done });
    this.checkHeldElsewhere();
  }

  /** Waits of holdWithoutLeavers. */
  private readonly heldElsewhere: Array<{ backups: number[]; done: () => void }> = [];

  private checkHeldElsewhere(): void {
    const n = this.n;
    for (let i = 0; i < this.heldElsewhere.length; ) {
      const w = this.heldElsewhere[i];
      if (!n.closing && w.backups.some((id) => n.members.has(id) && (this.olderPagesAsked.get(id) ?? 0) > 0)) {
        i++;
        continue;
      }
      this.heldElsewhere.splice(i, 1);
      w.done();
    }
  }

  /**
   * The native commit path sends whole pages our backups may not hold (native/dsm.h
   * SetBackups). Page servers are left out of that set: they take every commit of every
   * node in order, so they hold each page's previous version already, and the rare page
   * one cannot make from a diff (one it had not caught up with on joining) it fetches like
   * any backup (pageserver/feed.ts). Counting them in sent a page whole whenever another
   * node had written it last, and the other nodes got nothing to update their copies with:
   * every page written on two nodes was invalidated and fetched again (~5x slower banks).
   */
  tellNative(): void {
    if (this.n.id === NO_NODE) return;
    const partial = [...this.fullCopiesOf(this.n.id, this.backups)].filter((id) => !this.n.members.get(id)?.pageServer);
    this.n.native.setBackups(Uint16Array.from(partial));
    this.askToHoldOlderPages(partial);
  }

  /**
   * Commits reach the backups of their time only: pages this node wrote before its backups
   * were these (the heap a founder formatted while alone, pages a recovery moved here) are
   * held by nobody else, and would be lost with this node. So on every configuration its
   * backups are asked to hold every page it owns (a BackupRequest naming them, at time 0:
   * any version will do); each fetches those it lacks. Until they have, a failure of this
   * node can still lose them. Page servers catch up on their own when they join (feed.ts).
   */
  private askToHoldOlderPages(backups: number[]): void {
    const n = this.n;
    if (backups.length === 0 || n.closing) return;
    const { owners, versions, states } = n.table;
    const pages: number[] = [];
    for (let p = 0; p < owners.length; p++) {
      if (owners[p] === n.id && versions[p] !== 0n && states[p] !== 0 && !n.sequential.handles(p)) pages.push(p);
    }
    if (pages.length === 0) return;
    const b = encode.backupRequest(0, Uint32Array.from(pages));
    for (const id of backups) {
      n.links.send(id, Msg.BackupRequest, b);
      // Each request at time 0 is answered by one acknowledgement of time 0, in any order.
      this.olderPagesAsked.set(id, (this.olderPagesAsked.get(id) ?? 0) + 1);
    }
  }

  /** Per backup: requests of askToHoldOlderPages not answered yet. */
  private readonly olderPagesAsked = new Map<number, number>();

  /** The backups still fetching pages this node owns from before they were its backups (dsm.clusterStats().backupsCatchingUp). */
  catchingUp(): number[] {
    return [...this.olderPagesAsked.keys()].filter((id) => this.n.members.has(id)).sort((a, b) => a - b);
  }

  /** Sends each unacknowledged commit to its backups that have not answered. */
  private askAgain(): void {
    const n = this.n;
    for (const u of this.unacked) {
      for (const id of this.backupsOf(n.id, u.want)) {
        if (!u.acks.has(id)) n.links.send(id, Msg.BackupRequest, encode.backupRequest(u.time, u.pages));
      }
    }
  }

  private armRetry(): void {
    if (this.retryTimer) return;
    const head = this.unacked[0]?.time;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.unacked.length || this.n.closing) return;
      // Still waiting for the same commit: its acknowledgement (or the commit) was lost.
      if (this.unacked[0].time === head) this.askAgain();
      this.armRetry();
    }, RETRY_MS);
    this.retryTimer.unref();
  }

  /**
   * This node left the configuration (it joins again under a new id): whether its waiting
   * commits are in the cluster's history is unknown. They are reported so, never as durable.
   */
  reset(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.unacked.length = 0;
    this.byTime.clear();
    this.lastOwn = 0;
    this.durable = 0;
    this.n.ev.durable(0); // its times start over from the cluster's
    this.n.ev.uncertain(true);
    this.n.durableReads.uncertain();
  }

  /**
   * A recovery regenerated the token at `time` without this node's commits after it (this
   * node held the old token and was stalled or cut off while the others decided): they are
   * void, never in the cluster's history. Their waiters are told so (as uncertain: the app
   * cannot tell them from commits that may have survived), and no acknowledgement counts
   * for them any more: the member that commits at the same time next would answer a
   * re-sent BackupRequest for its own commit.
   */
  voidAbove(time: number): void {
    if (this.lastOwn <= time) return; // every unacknowledged commit is one of ours, at most lastOwn
    for (const u of this.unacked) if (u.time > time) this.byTime.delete(u.time);
    while (this.unacked.length && this.unacked[this.unacked.length - 1].time > time) this.unacked.pop();
    this.lastOwn = Math.min(this.lastOwn, time);
    this.n.ev.log('warn', `this node's commits after time ${time} were made with a token the cluster replaced while it was away: they are void`);
    this.n.ev.uncertain(true);
    this.n.durableReads.uncertain();
    this.advance();
  }

  /**
   * This node lost its quorum: its backups may never answer, and the majority may go on
   * without its latest commits. The program is told now rather than left waiting (an
   * acknowledgement that comes later still moves the durable time on).
   */
  partitioned(): void {
    if (this.unacked.length) this.n.ev.uncertain(false);
    this.n.durableReads.uncertain();
  }

  stop(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.checkHeldElsewhere();
  }

  /** Commits waiting for their backups (dsm stats). */
  get waiting(): number {
    return this.unacked.length;
  }

  /** The oldest commits waiting, whom they wait for and who answered (the debug state of a stuck cluster). */
  debugState(): Array<{ time: number; want: number; backups: number[]; acks: number[] }> {
    return this.unacked.slice(0, 4).map((u) => ({ time: u.time, want: u.want, backups: this.backupsOf(this.n.id, u.want), acks: [...u.acks] }));
  }
}
