// The commit path: commits made under the token (by the service, or by the app thread with
// the lent token and broadcast from the commit ring), commits received and applied in
// global-time order, and re-sending commits a member missed.
import { performance } from 'node:perf_hooks';
import { CommitStatus } from '../native';
import { type CommitRecord, type ConfigChange, decode, encode, LOST_OWNER, type Member, Msg, type TokenState } from './protocol';
import { carried } from './changes';
import { debug } from './debug';
import type { Cluster } from './cluster';
import { FLUSH_NOW } from './messages';

const EMPTY = new Uint8Array(0);

/** The most bytes of changes one commit frame carries (changes.ts); the transport takes 64 MiB frames. */
const CHANGES_LIMIT = 16 << 20;

/** A member whose commit arrived this recently (ms) may get the token pushed after ours (pushToken). */
const PUSH_MS = 5;

/** Commits re-sent between checks of the requester's backlog. */
const RESEND_CHUNK = 1024;
/** How long a member told that commits it misses are gone waits for another member to send them (onResendGone). */
const GONE_WAIT_MS = 1000;
/**
 * Test hook: the id of a member this node's commits are not sent to, as if each were lost
 * on the way (the member learns of them from another member, or from a re-send).
 */
const COMMITS_NOT_TO = Number(process.env.DSM_TEST_COMMITS_NOT_TO) || 0;
/**
 * How long the service waits after the app's first lent-token commit before it broadcasts
 * them (durability 'none'). DSM_TEST_DRAIN_MS sets it for tests that need commits waiting.
 */
const DRAIN_MS = Number(process.env.DSM_TEST_DRAIN_MS) || 1;
/** Test hook: configurations made by other nodes reach this node's log this many ms late, as on a slow member. */
const CONFIGS_LATE_MS = Number(process.env.DSM_TEST_CONFIGS_LATE_MS) || 0;

export class Commits {
  /** Cancels the drain of the app's commits that is scheduled (none: undefined). */
  private cancelDrain?: () => void;
  private reclaiming = false;
  /** The token, held on behalf of the app's next run (holdForApp). */
  private heldForApp?: TokenState;
  /** Commits waiting for a backlogged member to read what was sent (dsm stats). */
  waitingForDrain = 0;
  /** Members asked this node for commits they missed (dsm stats). */
  resendRequests = 0;

  constructor(private readonly n: Cluster) {
    // Woken by the app's first lent-token commit after a drain: wait a millisecond so a run
    // of commits goes out as one batch (one wake-up instead of one per commit). Reclaiming
    // the token and serving a page drain at once, so nothing depends on this delay.
    // With backups ('replicated', 'disk') the app waits for each commit's acknowledgement:
    // drain at once (the app wakes us when its run of transactions ends, client.ts).
    n.localCommits.on('message', (m: unknown) => {
      // Another node waits for what the app committed (client.ts flushCommits): no batch.
      const now = m === FLUSH_NOW;
      // Nor a batch to keep the token for: a node asking for it gets it at once (passSoon).
      if (now) this.lastAppCommit = -Infinity;
      if (this.cancelDrain && !now) return;
      this.cancelDrain?.();
      const drain = () => {
        this.cancelDrain = undefined;
        // A member reads slower than we commit: take the token back, so the app's next
        // commits go through commit(), which waits for the slow member.
        const t = n.token.token;
        if (n.links.backlogged && t && n.gate.lent) this.reclaim(t);
        else this.drainLocal();
        const pass = this.passAfterDrain;
        this.passAfterDrain = undefined;
        pass?.();
        this.pushToken();
      };
      if (n.replication.backups > 0 || now) {
        // The app woke us once its run of transactions ended (client.ts wakeService).
        drain();
      } else {
        const h = setTimeout(drain, DRAIN_MS);
        this.cancelDrain = () => clearTimeout(h);
      }
    });
    // Lending stopped while a member was backlogged (maybeLend): offer it again.
    n.links.onAllDrained(() => {
      if (!n.closing) this.maybeLend();
    });
  }

  /**
   * The token, for a commit: only while this node's lease is valid (a quorum hears it). A
   * node without a quorum, or that loses it while waiting, gets `Partitioned`; a token that
   * arrives after that is passed on at once.
   */
  private async acquire(recovery = false): Promise<TokenState> {
    const n = this.n;
    // A recovery's configuration has its own authority (a quorum answered it under its ballot).
    if (recovery) return n.token.acquire();
    await n.lease.whenValid().catch(() => {
      throw new Partitioned();
    });
    const got = n.token.acquire();
    const t = await n.unlessPartitioned(got).catch((e) => {
      void got.then((t) => n.token.release(t));
      throw e;
    });
    if (!(await this.leaseValid())) {
      n.token.release(t);
      throw new Partitioned();
    }
    return t;
  }

  /**
   * Waits (holding the token) until the lease is valid again; false once this node is
   * partitioned. A lease can lapse briefly on the majority's side too (answers to pings late
   * on a loaded machine, a recovery that regenerates the token waiting out a whole lease), so
   * only a lease invalid for long (lease.partitioned: no quorum) refuses a commit.
   */
  private async leaseValid(): Promise<boolean> {
    const n = this.n;
    while (!n.lease.valid()) {
      try {
        await n.lease.whenValid();
      } catch {
        return false;
      }
    }
    return true;
  }

  /**
   * Takes the token for the app's next run of a transaction that keeps losing to other
   * nodes' commits: while we hold it nobody else commits, so that run cannot be doomed.
   */
  async holdForApp(): Promise<[number, number]> {
    if (!this.heldForApp) {
      let t: TokenState;
      try {
        t = await this.acquire();
      } catch (e) {
        if (e instanceof Partitioned) return [CommitStatus.partitioned, 0];
        throw e;
      }
      await this.n.log.waitApplied(t.time);
      // Joined again meanwhile (rejoin reset the token): this one is the old configuration's.
      if (this.n.token.token !== t) return [CommitStatus.partitioned, 0];
      this.heldForApp = t;
    }
    return [CommitStatus.committed, this.heldForApp.time];
  }

  /**
   * A page the held run faulted on waits for a configuration, which needs the token: give
   * it up (the run then commits the usual way, and may be doomed like any other).
   */
  yieldHeldToken(): void {
    const t = this.heldForApp;
    if (!t) return;
    this.heldForApp = undefined;
    this.n.token.release(t);
  }

  /** The held run committed nothing: give the token back. */
  async releaseForApp(): Promise<[number, number]> {
    const t = this.heldForApp;
    if (t) {
      this.heldForApp = undefined;
      this.n.token.release(t);
    }
    return [CommitStatus.committed, this.n.log.applied];
  }

  /** Commits the app's ended transaction (its write set is in the native layer). */
  async commit(): Promise<[number, number]> {
    const n = this.n;
    // A slow member slows the committer: commits wait until every member reads what was
    // sent. Bounded: a member that never reads is closed at the transport's hard limit or
    // by the failure detector, and then no longer counts.
    if (n.links.backlogged) {
      this.waitingForDrain++;
      try {
        await n.links.whenAllDrained();
      } finally {
        this.waitingForDrain--;
      }
    }
    const held = this.heldForApp;
    this.heldForApp = undefined;
    let committed = false;
    let t: TokenState;
    try {
      t = held ?? (await this.acquire());
    } catch (e) {
      if (e instanceof Partitioned) return [CommitStatus.partitioned, 0];
      throw e;
    }
    try {
      await n.log.waitApplied(t.time);
      if (!(await this.leaseValid())) return [CommitStatus.partitioned, 0];
      // A token held for the app across a rejoin belongs to the old configuration, and one
      // a recovery replaced is void (token.dropVoid): a commit made with it would reuse a
      // time the cluster gave another commit, and wait for backups that refuse it (the app
      // hung on it). Refused like any commit then (release(t) leaves the token this node
      // may hold by now alone).
      if (n.token.token !== t) return [CommitStatus.partitioned, 0];
      if (n.native.doomed()) return [CommitStatus.doomed, 0];
      if (!n.lease.valid()) return [CommitStatus.partitioned, 0];
      const time = t.time + 1;
      t.time = time;
      const [pages, changes] = n.native.commit(time, n.id, true);
      this.lastAppCommit = performance.now();
      this.made({ time, node: n.id, pages, changes, backups: n.replication.backups, generation: t.generation }, t.members);
      committed = true;
      return [CommitStatus.committed, time];
    } finally {
      n.token.release(t);
      if (committed) this.pushToken();
    }
  }

  /**
   * With backups, after this node's commits went out: hands the idle token to the one
   * member that committed in each of the two intervals between this node's last three
   * commits (within PUSH_MS), before it asks; to nobody if two or more did (three nodes
   * taking turns, replicated spread bank, 6 A/B runs: 2.76k-3.00k transfers/s pushing to
   * the latest of them against 2.88k-3.12k without pushes). Two nodes committing in turn, each
   * awaiting its backups, otherwise move the token for every commit on request: the app's
   * next transaction, once its acknowledgement is back, asks its service, which asks the
   * other node, which answers with the token, a round trip of two service threads on the
   * way of every commit. Pushed, the token is there (lent to the app, or taken by the
   * service) when the next transaction ends; this node's app cannot commit again before its
   * own acknowledgement is back anyway, and if it is ready before the token returns it asks
   * as before. A node that commits less often than this one gets nothing (each push would
   * cost this node a round trip to take the token back: with one commit of the other node
   * per twenty of its own, pushing after each of the other's commits cost the busy node
   * 10%), nor does anyone while this node commits alone. Nor while the app has more than
   * one transaction issued and not yet settled (Status.inFlight): it commits again at the
   * first acknowledgement, and pushing after every drain took two nodes with 16 in flight
   * each from 11.8k-14.2k to 7.3k-8.1k replicated transfers/s. (Counting the commits
   * waiting for backups, here or in the app, did not help: once the token moved after
   * every commit, each transaction waited for it, and by then the earlier ones were
   * acknowledged.) Never with
   * durability 'none': the token stays for a batch there (passSoon).
   */
  private pushToken(): void {
    const n = this.n;
    const at = performance.now();
    const [before, last] = this.ownCommits;
    this.ownCommits = [Math.max(last, at - PUSH_MS), at];
    if (n.replication.backups === 0 || n.closing || !n.token.token) return;
    // The app keeps several transactions in flight (this one among them): it commits again
    // as soon as any acknowledgement is back, so the token is wanted here.
    if (n.ev.appInFlight() > 1) return;
    const from = Math.max(before, at - PUSH_MS);
    let to: number | undefined;
    for (const [id, [prev, newest]] of this.theirCommits) {
      if (newest > last && prev > from && id !== n.id && n.links.has(id)) {
        // Two nodes or more take turns with this one: which one comes next is anyone's
        // guess, and a token pushed to the wrong one takes a detour to the right one.
        if (to !== undefined) return;
        to = id;
      }
    }
    if (to !== undefined && n.token.push(to)) this.tokenPushes++;
  }

  /** Times this node handed the token on unasked (pushToken; dsm stats). */
  tokenPushes = 0;

  /** When this node's last two commits went out (pushToken), performance.now(). */
  private ownCommits: [number, number] = [-Infinity, -Infinity];
  /** When the last two commits of each other node were applied here, performance.now(). */
  private readonly theirCommits = new Map<number, [number, number]>();

  /**
   * Makes a new configuration under the token: `make` sees the state at the token's time
   * and returns the change (undefined: nothing to change any more). Applied here and
   * everywhere through the commit log, in global-time order.
   */
  async commitConfig(
    make: (epoch: number, nextId: number) => ConfigChange | undefined,
    then?: (t: TokenState) => void,
    opts: { recovery?: boolean } = {},
  ): Promise<ConfigChange | undefined> {
    const n = this.n;
    const t = await this.acquire(opts.recovery);
    try {
      await n.log.waitApplied(t.time);
      if (n.token.token !== t) throw new Partitioned(); // found void meanwhile (token.dropVoid)
      const change = make(n.membership.epoch + 1, n.membership.nextId);
      if (!change) return undefined;
      this.commitConfigHeld(t, change);
      then?.(t);
      return change;
    } finally {
      n.token.release(t);
    }
  }

  /** Commits `change` with the token `t`, held and caught up with. */
  commitConfigHeld(t: TokenState, change: ConfigChange): void {
    const n = this.n;
    const time = t.time + 1;
    t.time = time;
    const rec: CommitRecord = { time, node: n.id, pages: new Uint32Array(0), config: change, generation: t.generation };
    const removed = new Set(change.removed);
    n.links.broadcast(Msg.Commit, encode.commit(rec), t.members.filter((m) => !removed.has(m.id)));
    t.members = change.members.slice();
    n.log.receive(rec);
  }

  /**
   * Waits until every commit this node has heard of is applied, with a valid lease (read-only
   * commits; see client.ts needsSync).
   */
  async sync(): Promise<[number, number]> {
    const n = this.n;
    if (!(await this.leaseValid())) return [CommitStatus.partitioned, 0];
    await n.log.waitApplied(n.log.seen);
    return [n.native.doomed() ? CommitStatus.doomed : CommitStatus.committed, n.log.applied];
  }

  /** Pages this node just committed: any that were lost are new again (tx.discardLost). */
  private written(pages: Uint32Array): void {
    const lost = this.n.membership.lostPages;
    if (lost.size === 0) return;
    for (const p of pages) this.n.membership.discarded(p);
  }

  /**
   * Another node asked for the token (or waits in its queue as we release it). Handing it
   * over at once makes two nodes that commit back to back move it for every commit, a round
   * trip each, and lets each one's next transaction collide with the other's commit. With
   * tokenBatchMs set (durability 'none'; off by default, see options.ts), while our app is
   * committing (a lent-token commit not yet drained, or a commit the service made for it
   * within tokenBatchMs) it keeps the token, lent, until the next drain of its commits or
   * tokenBatchMs at most, and the batch it commits meanwhile goes out together. A requester
   * waits at most that much longer, and Suzuki-Kasami's queue still serves every node in
   * turn; an idle holder passes at once. Two nodes running bank transfers back to back
   * (1 ms, 3 runs each, alternating): one account per page 10.0k -> 11.5k transfers/s, all
   * accounts on one page 14.9k -> 19.8k.
   *
   * Never with backups: a node whose app waits for them commits once per acknowledgement
   * round trip, so keeping the token only makes the other node wait (replicated, one
   * account per page: 3.7k without, 2.3k-3.2k with).
   */
  passSoon(pass: () => void): void {
    const n = this.n;
    const batchMs = n.config.tokenBatchMs;
    const active = batchMs > 0 && (this.cancelDrain !== undefined || performance.now() - this.lastAppCommit < batchMs);
    if (n.leaving.active) {
      // A leaving node ends its connections as soon as it has handed the token on (leaving.ts):
      // a token it kept for a batch was written after that, never arrived, and its successor
      // waited 8 s before it looked for the token and regenerated it.
      this.passAfterDrain = undefined;
      pass();
      return;
    }
    if (!active || n.closing || n.replication.backups > 0 || this.passAfterDrain) {
      if (!this.passAfterDrain) pass();
      return;
    }
    this.passAfterDrain = pass;
    this.maybeLend();
    // The drain passes it earlier if the app commits meanwhile.
    setTimeout(() => {
      const p = this.passAfterDrain;
      this.passAfterDrain = undefined;
      p?.();
    }, batchMs);
  }

  /** When the service last committed for the app (performance.now()). */
  private lastAppCommit = -Infinity;

  private passAfterDrain?: () => void;

  /** Lends the token to the app thread when nothing can doom its commits (local_token.ts). */
  maybeLend(): void {
    const n = this.n;
    const t = n.token.token;
    if (!t || n.token.busy || n.gate.lent || this.reclaiming) return;
    // Lent, the app would commit past any backpressure; commit() waits for slow members.
    if (n.links.backlogged) return;
    if (n.log.applied !== t.time || n.log.seen !== t.time) return;
    n.gate.lend(t.time);
  }

  /** Takes the token back from the app thread and broadcasts what it committed meanwhile. */
  reclaim(t: TokenState): void {
    if (!this.n.gate.lent) return;
    // Draining applies commits, which would offer the token again (maybeLend) halfway
    // through, at a time the app already used.
    this.reclaiming = true;
    try {
      t.time = Math.max(t.time, this.n.gate.reclaim());
      this.drainLocal();
    } finally {
      this.reclaiming = false;
    }
  }

  /**
   * The token this node held was void (token.dropVoid): take it back from the app thread
   * and drop what the app committed with it since the last drain, telling nobody. Those
   * commits are void like the token; with durability 'none' the app saw them acknowledged
   * (the loss 'none' accepts for a stalled or cut-off holder). Returns how many.
   */
  discardLent(token: number): number {
    const n = this.n;
    if (n.gate.lent) n.gate.reclaim();
    let dropped = 0;
    let last = 0;
    n.ring.drain((time) => {
      dropped++;
      last = Math.max(last, time);
    });
    // Their model changes, made here natively as the app committed, are taken with the void
    // token's generation, for voidAbove to undo (model_table.ts voidDeclarations). Left in
    // the native table, this node's next commit took them and told every member.
    if (last > 0) n.sequential.modelTable.take(last, token);
    return dropped;
  }

  /** Commits the app thread made with the lent token: tell everyone. */
  drainLocal(): void {
    this.n.log.batch(() => this.n.ring.drain((time, pages, changes) => this.applyLocal(time, pages, changes)));
  }

  private applyLocal(time: number, pages: Uint32Array, changes: Uint8Array): void {
    const n = this.n;
    if (time <= n.log.applied) return;
    const t = n.token.token;
    if (t) t.time = Math.max(t.time, time);
    this.made({ time, node: n.id, pages, changes, backups: n.replication.backups, generation: t?.generation ?? n.token.generation }, t?.members ?? n.members.values());
  }

  /** A commit made here (natively committed already): tell everyone, and wait for its backups. */
  private made(rec: CommitRecord, to: Iterable<Member>): void {
    const n = this.n;
    // Pages this commit allocated outside transactional consistency: their models go with it.
    rec.models = n.sequential.modelTable.take(rec.time, rec.generation ?? 0);
    if (COMMITS_NOT_TO) to = [...to].filter((m) => m.id !== COMMITS_NOT_TO);
    const c = rec.changes && carried(rec.changes, n.config.pageSize, CHANGES_LIMIT);
    // The log keeps (and re-sends) what the backups got.
    if (c) rec.changes = c.backups;
    if (!c || c.others === c.backups) {
      n.links.broadcast(Msg.Commit, encode.commit(rec), to);
    } else {
      const backups = n.replication.fullCopiesOf(n.id, rec.backups ?? 0);
      const all = [...to];
      n.links.broadcast(Msg.Commit, encode.commit(rec), all.filter((m) => backups.has(m.id)));
      n.links.broadcast(Msg.Commit, encode.commit({ ...rec, changes: c.others }), all.filter((m) => !backups.has(m.id)));
    }
    this.written(rec.pages);
    n.log.receive(rec);
    n.replication.committed(rec.time, rec.pages, rec.backups ?? 0);
  }

  /**
   * Applies another node's commit: copies of its pages that are current here take its
   * changes (update); older ones become invalid. Either way a transaction that read them is
   * doomed. A backup of the committer then makes sure it holds every page.
   */
  applyRemote(rec: CommitRecord): void {
    const n = this.n;
    if (debug.enabled) debug(`node ${n.id} apply commit ${rec.time} by ${rec.node}: pages ${Array.from(rec.pages).join(',')}`);
    if (rec.config) {
      n.membership.apply(rec.config);
      return;
    }
    if (rec.node === n.id) return; // our own, applied when made
    const seen = this.theirCommits.get(rec.node);
    if (seen) {
      seen[0] = seen[1];
      seen[1] = performance.now();
    } else this.theirCommits.set(rec.node, [-Infinity, performance.now()]);
    if (n.membership.lostPages.size > 0) {
      for (const p of rec.pages) if (p < n.config.numPages && n.table.owners[p] === LOST_OWNER) n.membership.discarded(p);
    }
    const r = n.native.applyCommit(rec.time, rec.node, rec.pages, rec.changes ?? EMPTY);
    if (r < 0) {
      // Checked before anything was applied: the pages are invalidated instead (fetched
      // whole when next needed), so the cluster's order still holds here.
      n.ev.log('warn', `commit ${rec.time} from node ${rec.node} carried malformed changes; its pages are fetched instead`);
      if (n.native.applyCommit(rec.time, rec.node, rec.pages.filter((p) => p < n.config.numPages), EMPTY) > 0) n.native.interruptApp();
    } else if (r > 0) n.native.interruptApp();
    n.replication.applied(rec.node, rec.time, rec.pages, rec.backups ?? 0, rec.changes);
  }

  /** Configurations held back by the test hook CONFIGS_LATE_MS (their times). */
  private readonly lateConfigs = new Set<number>();

  /** Commit. */
  onCommit(from: number, payload: Buffer): void {
    const rec = decode.commit(payload);
    if (rec.models) this.n.sequential.modelTable.check(rec.models);
    // Made with a token a recovery replaced, after the time it was replaced at: void. Such a
    // commit can arrive after the recovery, from a holder that was stalled or cut off (its
    // queued frames go out when its connection is back), and land in a gap before the
    // cluster's own commit at that time: a member applied one and read garbage after it.
    if (this.n.recovery.isVoid(rec)) {
      this.n.ev.log('warn', `dropped commit ${rec.time} from node ${from}: made with a token replaced before that time`);
      return;
    }
    if (this.n.sequential.heldForTest.holdCommit(rec.models, () => this.onCommit(from, payload))) return;
    // Its model changes take effect as it arrives, not when it is applied: it may wait
    // behind a gap while the committer's next messages on this connection (a sequential page
    // holding a pointer into the block) are handled, and a touch of the block must find its
    // model then. A commit that came before (re-sent, or from a backup too) says nothing new.
    if (rec.models && this.n.log.takes(rec)) this.n.sequential.modelTable.apply(rec.node, rec.time, rec.generation ?? 0, rec.models);
    if (CONFIGS_LATE_MS && rec.config && rec.node !== this.n.id) {
      // Copies re-sent meanwhile are lost on the way too.
      if (this.lateConfigs.has(rec.time)) return;
      this.lateConfigs.add(rec.time);
      setTimeout(() => this.n.log.receive(rec), CONFIGS_LATE_MS).unref();
      return;
    }
    this.n.log.receive(rec);
  }

  /**
   * ResendRequest: a member missed commits; send those we still have, a chunk at a time,
   * waiting while its connection is backlogged (the records are small; the chunk keeps the
   * encoded copies in memory bounded by the backlog rather than by the log).
   */
  onResendRequest(from: number, payload: Buffer): void {
    const r = decode.resendRequest(payload);
    this.resendRequests++;
    const log = this.n.log;
    // Gone from this log: say so, or the asker waits behind its gap for good.
    if (r.from + 1 < log.oldestKept && r.from < log.applied) this.n.links.send(from, Msg.ResendGone, encode.time(log.oldestKept));
    const recs = log.since(r.from, r.to);
    void this.resend(from, recs).catch((e: Error) => this.n.ev.log('warn', `re-sending commits to node ${from} failed: ${e.message}`));
  }

  private goneCheck?: NodeJS.Timeout;

  /**
   * ResendGone: commits this node misses are gone from the log of a member it asked, which
   * keeps a bounded window (commit_log.ts). Another member may still send them; if none has
   * by GONE_WAIT_MS, this node cannot catch up by commits and joins again as a new member,
   * which hands it the state whole. Before, it waited behind the gap for good: a member cut
   * off from one other member (not from the rest) for a few seconds of a busy cluster's
   * commits could not apply again, and when it was the one to commit the configuration
   * that ended the cut, it held the token for ever and the cluster stopped (unreached.ts).
   */
  onResendGone(from: number, payload: Buffer): void {
    const oldest = decode.time(payload);
    const n = this.n;
    if (n.log.applied + 1 >= oldest || this.goneCheck) return;
    this.goneCheck = setTimeout(() => {
      this.goneCheck = undefined;
      if (n.closing || n.log.applied + 1 >= oldest || n.log.isFrozen) return;
      n.rejoin(`the commits after time ${n.log.applied} are gone from node ${from}'s log (it keeps those from ${oldest} on), and no member sent them`);
    }, GONE_WAIT_MS);
    this.goneCheck.unref();
  }

  private async resend(to: number, recs: CommitRecord[]): Promise<void> {
    const links = this.n.links;
    for (let i = 0; i < recs.length; i += RESEND_CHUNK) {
      const end = Math.min(recs.length, i + RESEND_CHUNK);
      for (let j = i; j < end; j++) links.send(to, Msg.Commit, encode.commit(recs[j]));
      // Closed: the member asks again once back, from what it has by then.
      if (end < recs.length && !(await links.whenDrained(to))) return;
    }
  }

  /** Joined again: the app's next commits go through the service until the token comes. */
  restart(): void {
    this.heldForApp = undefined;
  }

  /** The node is closing: nothing more is drained on a timer. */
  stop(): void {
    this.cancelDrain?.();
    this.cancelDrain = undefined;
    if (this.goneCheck) clearTimeout(this.goneCheck);
    this.goneCheck = undefined;
  }
}

/** This node has no quorum: its commits are refused (ERR_DSM_PARTITIONED on the app side). */
export class Partitioned extends Error {
  constructor() {
    super('this node is cut off from the majority of the cluster');
  }
}
