// Recovery after members are lost. The lowest member this node still reaches coordinates:
// it asks every other member for its state under a new ballot (each answers only the
// highest ballot it has seen, holds arriving tokens, and stops answering lease pings), and
// goes on only with answers from a quorum of the configuration's voters. Then:
// - the token: still held by a member that answered, it is left alone; in flight to one, the
//   coordinator waits (at most IN_FLIGHT_MS) for that member to report its arrival, since a
//   token sent on a connection that broke never arrives; otherwise it is regenerated at the
//   highest applied time once every lease the old holder could have had has run out
//   (LEASE_MS after the quorum answered). A token arriving late is void: it is held until
//   the outcome, and the regenerated token's generation is higher;
// - the configuration: under the token, the coordinator commits a new one without the lost
//   members. Each page a removed member owned moves to a survivor that reported holding its
//   latest version, or is decided lost, once, for every node (removal.ts, membership.ts).
// A side without a quorum never gets this far: its coordinator keeps asking, and its nodes
// stop committing when their leases run out (ERR_DSM_PARTITIONED).
import { type CommitRecord, decode, encode, Msg, NO_NODE, type Recover, type RecoverState, type Regeneration } from './protocol';
import { Regenerations } from './regenerations';
import { isQuorum } from './membership';
import { LEASE_MS, now } from './lease';
import type { Cluster } from './cluster';
import { removeMembers } from './removal';
import { UNREACHED_MS, Unreached } from './unreached';

type Report = Omit<RecoverState, 'generation'>;

/** A member that does not answer a recovery within this long is counted as lost (given a quorum). */
const ANSWER_MS = 2000;
/** Unanswered queries are asked again this often (a query can be lost with a connection). */
const REASK_MS = 400;
/** A member that answered a recovery stops holding for it after this long without an outcome. */
const HOLD_MS = 3 * ANSWER_MS + LEASE_MS;
/** How long a coordinator waits for a token it believes in flight to be reported arrived. */
const IN_FLIGHT_MS = ANSWER_MS;
/**
 * A node that has waited this long for the token, with nobody suspected, runs a recovery
 * that only looks for it: it may have been lost on a connection that broke and came back,
 * where no member was ever declared dead.
 */
const TOKEN_OVERDUE_MS = 4 * ANSWER_MS;

interface Run {
  generation: number;
  suspects: Set<number>;
  states: Map<number, Report>;
  started: number;
  /** When the query last changed (a suspect came back): members have ANSWER_MS from then. */
  askedAt: number;
  timer: NodeJS.Timeout;
  deciding: boolean;
  /** When the coordinator first saw the token in flight to a member that had not received it. */
  inFlightSince?: number;
}

export class Recovery {
  /** The highest ballot this node answered or ran: it answers no lower one. */
  private promised = 0;
  private run?: Run;
  private holdTimer?: NodeJS.Timeout;
  private pending = false;
  /** The recovery this node answered and holds for: told again when a token arrives meanwhile. */
  private answered?: { to: number; generation: number; suspects: Set<number>; ignored: Set<number> };
  /** The regenerations of the token this node knows of (regenerations.ts). */
  private readonly regenerations = new Regenerations();
  /** Members cut off from another member but not from this node, and the reverse (unreached.ts). */
  private readonly unreached: Unreached;
  /** Configurations without removed members being committed (removal.ts). */
  private removing = 0;

  /**
   * The latest regeneration of the token this node knows of: its ballot and the time the
   * token was regenerated at. Lease echoes carry it (lease.ts), so a node that holds a token
   * from before it learns that its token is void even before the outcome reaches it.
   */
  get regenerated(): Regeneration {
    return this.regenerations.latest;
  }

  /** Joined (again) through an admitter that knew of regeneration `known`: nothing here predates it. */
  learnAtJoin(known: Regeneration): void {
    if (known.generation > this.regenerated.generation) this.regenerations.remember(known.generation, known.time);
  }

  /** Whether a commit was made with a token a regeneration this node knows of replaced before its time. */
  isVoid(rec: CommitRecord): boolean {
    return this.regenerations.isVoid(rec);
  }

  constructor(private readonly n: Cluster) {
    this.unreached = new Unreached((m) => n.ev.log('warn', m));
  }

  /** A member was lost: if this node coordinates, (re)start a recovery soon (several losses make one). */
  suspect(): void {
    if (this.pending || this.n.closing) return;
    this.pending = true;
    setTimeout(() => {
      this.pending = false;
      this.maybeStart();
    }, 20).unref();
  }

  /**
   * A lost member is connected again. The run's query named it, and a member that hears from
   * it refuses such a query (onQuery): ask those that have not answered again, the query now
   * without it, and give them the full time to answer. (After a partition in which the third
   * node heard both sides, it had refused; counted as lost for that the moment the other
   * side answered, it was then refused in turn, and the cluster stalled for good.)
   */
  memberBack(id: number): void {
    this.unreached.back(id);
    const r = this.run;
    if (!r || r.deciding || !r.suspects.delete(id)) return;
    r.askedAt = now();
    this.ask(r, this.unanswered(r));
  }

  /** The members run `r` still waits for: neither suspected nor answered (this node answers itself). */
  private unanswered(r: Run): number[] {
    return [...this.n.members.keys()].filter((id) => !r.suspects.has(id) && !r.states.has(id));
  }

  /** The lowest member that may still answer: not suspected, and not one that said Leave (it answers nothing, and until its successor removes it, it is no suspect either). */
  private coordinator(): number {
    const n = this.n;
    let lowest = n.id;
    for (const id of n.members.keys()) if (id < lowest && !n.membership.suspects.has(id) && !n.leaving.saidLeave(id)) lowest = id;
    return lowest;
  }

  /**
   * Called every lease tick: a node that has waited for the token for long, with nobody
   * suspected, looks for it (it may have been lost on a connection that broke and came back).
   */
  checkToken(): void {
    const n = this.n;
    const t = n.token;
    if (!t.waiting || t.held || t.waitingSince === 0 || now() - t.waitingSince < TOKEN_OVERDUE_MS) return;
    if (this.run || this.holdTimer || this.pending || n.closing || n.id === NO_NODE || n.membership.suspects.size > 0) return;
    n.ev.log('warn', `waited ${Math.round((now() - t.waitingSince) / 1000)} s for the token; looking for it`);
    t.waitingSince = now();
    this.maybeStart(true);
  }

  /**
   * Called every lease tick: members this node has suspected for long, with no recovery
   * asking it about them, are cut off from it but not from its coordinator, which hears
   * them and never starts one; this node recovers itself (unreached.ts, rule 2).
   */
  checkUnreached(): void {
    const n = this.n;
    const overdue = this.unreached.overdue(n.id, n.membership.suspects, now());
    if (overdue.length === 0 || this.run || this.holdTimer || this.pending || this.removing > 0 || n.closing || n.id === NO_NODE) return;
    const coordinator = this.coordinator();
    if (coordinator === n.id) return;
    n.ev.log('warn', `node(s) ${overdue.join(', ')} unreached from here for ${Math.round(UNREACHED_MS / 1000)} s or more while node ${coordinator} hears them; recovering from this node`);
    this.maybeStart(false, true);
  }

  private maybeStart(lookForToken = false, cutOff = false): void {
    const n = this.n;
    // Only the coordinator recovers from losses (or a node cut off from members it still
    // hears: checkUnreached); any node may look for a token it waits for.
    if (n.closing || (lookForToken ? n.membership.suspects.size > 0 : n.membership.suspects.size === 0 || (!cutOff && this.coordinator() !== n.id))) return;
    const r = this.run;
    if (r && !r.deciding) {
      if ([...n.membership.suspects].every((s) => r.suspects.has(s))) {
        this.maybeFinish();
        return;
      }
      // Another member was lost meanwhile. The answers so far report only the pages of the
      // suspects their query named, and their senders still keep the new one's lease alive:
      // ask again under a new ballot naming it. Added to this run, its pages that only a
      // member which had already answered held were decided lost (a five-node cluster with
      // two backups, two members killed at once: now and then on a loaded machine).
      this.abandon();
    } else if (r) return; // deciding: the suspects left over are handled by the next run
    const generation = ((Math.max(this.promised, n.token.generation) >>> 16) + 1) * 65536 + n.id;
    this.promised = generation;
    n.token.holdArrivals();
    n.lease.hold(n.membership.suspects);
    n.log.freeze();
    const run: Run = {
      generation,
      suspects: new Set(n.membership.suspects),
      states: new Map(),
      started: now(),
      askedAt: now(),
      timer: setInterval(() => this.reask(), REASK_MS),
      deciding: false,
    };
    run.timer.unref();
    this.run = run;
    run.states.set(n.id, this.report(run.suspects));
    this.unreached.asked(run.suspects, run.started);
    this.unreached.named(run.suspects, run.started, HOLD_MS, false);
    n.sequential.heldForTest.recovering();
    n.ev.log('warn', run.suspects.size ? `recovering from the loss of node(s) ${[...run.suspects].join(', ')} (ballot ${generation})` : `looking for the token (ballot ${generation})`);
    this.ask(run, [...n.members.keys()].filter((id) => id !== n.id && !run.suspects.has(id)));
    this.maybeFinish();
  }

  private ask(r: Run, ids: number[]): void {
    const n = this.n;
    const q = encode.recover({ generation: r.generation, time: n.log.applied, source: n.id, regenerated: false, suspects: [...r.suspects], known: this.regenerated });
    for (const id of ids) n.links.send(id, Msg.RecoverQuery, q);
  }

  private reask(): void {
    const r = this.run;
    if (!r || r.deciding) return;
    this.ask(r, this.unanswered(r));
    this.maybeFinish();
  }

  /** What this node tells a recovery: the token, and which pages of the suspects it holds. */
  private report(suspects: Set<number>): Report {
    const { token, log, id, table } = this.n;
    const held: number[] = [];
    const versions: number[] = [];
    const { states, owners } = table;
    for (let p = 0; p < owners.length; p++) {
      if (states[p] !== 0 && suspects.has(owners[p]) && table.versions[p] !== 0n) {
        held.push(p);
        versions.push(Number(table.versions[p]));
      }
    }
    return {
      applied: log.applied,
      hasToken: token.held || token.heldForRecovery,
      waiting: token.waiting,
      seq: token.rn.get(id) ?? 0,
      sentTo: token.lastSent.to,
      sentHops: token.lastSent.hops,
      heldPages: Uint32Array.from(held),
      heldVersions: Float64Array.from(versions),
      known: this.regenerated,
    };
  }

  /** RecoverQuery. */
  onQuery(from: number, payload: Buffer): void {
    const n = this.n;
    const q = decode.recover(payload);
    if (q.generation <= this.promised || q.generation <= n.token.generation) return; // an older ballot
    // This node is deciding a recovery of its own (waiting out a lease before it regenerates
    // the token): it acts on that decision, so it answers no newer ballot until the outcome
    // is out (the asker asks again, and learns the outcome from the answer then). Answering
    // first let the newer ballot decide without it: two tokens.
    if (this.run?.deciding) return;
    // A recovery that would replace a member this node hears from is not answered: its
    // coordinator lost contact with that member, this node did not. Typically it is a node
    // back from a stall whose connections broke meanwhile; answered, it would take the token
    // from a healthy holder (whose commits since this node froze its log would be dropped)
    // on the strength of its own stale view. A member that really died falls silent here
    // too within half the failure detector's time, and the repeated query is answered then.
    // A coordinator that goes on naming such a member is cut off from it, though, and is
    // answered in the end (unreached.ts).
    const t = now();
    const hears = (id: number) => id !== n.id && n.members.has(id) && !n.membership.suspects.has(id) && n.links.lively(id);
    const holdingFor = this.answered && this.holdTimer ? this.answered.to : undefined;
    if (!this.unreached.answerable(from, q.suspects, hears, holdingFor, t)) return;
    this.unreached.named(q.suspects, t, HOLD_MS, true);
    this.promised = q.generation;
    // The coordinator knows of a regeneration this node missed: take it in before reporting
    // (a token held from before it is void, and so is what was applied after its time).
    if (q.known.generation > this.regenerated.generation) this.lateRegeneration(from, q.known.generation, q.known.time);
    if (this.run && this.run.generation < q.generation && !this.run.deciding) this.abandon();
    n.token.holdArrivals();
    // Members an earlier ballot this node answered is still deciding about stay ignored: that
    // recovery may regenerate the token once their leases have run out, and answering their
    // pings again because a newer ballot names others would give the old holder its lease
    // back (a stalled holder committed with its replaced token through such a member).
    const earlier = this.answered && this.holdTimer ? [...this.answered.ignored] : [];
    const ignored = new Set([...earlier, ...q.suspects]);
    n.lease.hold(ignored);
    n.log.freeze();
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = setTimeout(() => {
      // The coordinator died or was cut off: stop holding; whoever coordinates now starts again.
      this.holdTimer = undefined;
      this.answered = undefined;
      n.token.endHold(undefined);
      n.lease.hold(undefined);
      n.log.thaw();
      this.suspect();
    }, HOLD_MS);
    this.holdTimer.unref();
    this.answered = { to: from, generation: q.generation, suspects: new Set(q.suspects), ignored };
    n.links.send(from, Msg.RecoverState, encode.recoverState({ generation: q.generation, ...this.report(this.answered.suspects) }));
    n.sequential.heldForTest.recovering();
  }

  /**
   * A token arrived (and is held, if a recovery is under way): the coordinator may be waiting
   * to learn whether the token it saw in flight arrived or was lost with a connection.
   */
  tokenArrived(): void {
    const a = this.answered;
    const n = this.n;
    if (this.run && !this.run.deciding) {
      this.run.states.set(n.id, this.report(this.run.suspects));
      this.maybeFinish();
    } else if (a && this.holdTimer) {
      n.links.send(a.to, Msg.RecoverState, encode.recoverState({ generation: a.generation, ...this.report(a.suspects) }));
    }
  }

  /** RecoverState. */
  onState(from: number, payload: Buffer): void {
    const s = decode.recoverState(payload);
    const r = this.run;
    if (!r || s.generation !== r.generation || r.deciding) return;
    r.states.set(from, s);
    this.maybeFinish();
  }

  /**
   * Every report of a run must be made knowing the latest regeneration of the token any of
   * them knows of: a decision is carried forward from an earlier ballot, never decided over.
   * A node that missed one reports what it applied after it (its own void commits, if it
   * held the replaced token), and a decision on that report makes the others fetch those
   * void commits: a node back from a stall, its connections broken, ran such a recovery,
   * and the others read lists holding zeros. So a run whose reports disagree takes the
   * newest one in and asks again under a new ballot whose query carries it. False when it
   * did (the run is over).
   */
  private reportsAgree(r: Run): boolean {
    let newest = this.regenerated;
    let from = this.n.id;
    for (const [id, s] of r.states) {
      if (s.known.generation > newest.generation) {
        newest = s.known;
        from = id;
      }
    }
    if (newest.generation === this.regenerated.generation && [...r.states.values()].every((s) => s.known.generation === newest.generation)) return true;
    const n = this.n;
    if (newest.generation > this.regenerated.generation) this.lateRegeneration(from, newest.generation, newest.time);
    this.abandon();
    this.maybeStart(r.suspects.size === 0);
    if (!this.run) {
      // Nothing left to recover from: stop holding.
      n.token.endHold(undefined);
      n.lease.hold(undefined);
      n.log.thaw();
    }
    return false;
  }

  private abandon(): void {
    const r = this.run;
    if (!r) return;
    clearInterval(r.timer);
    this.run = undefined;
  }

  /** Decides once every member still reached has answered, or a quorum has and the rest are late. */
  maybeFinish(): void {
    const n = this.n;
    const r = this.run;
    if (!r || r.deciding) return;
    const voters = n.membership.voters();
    const quorum = isQuorum(voters, (id) => r.states.has(id));
    const awaited = this.unanswered(r);
    if (awaited.length > 0) {
      if (!quorum || now() - r.askedAt < ANSWER_MS) return;
      // Members that do not answer are lost too: ask again under a new ballot naming them,
      // so every member that answers also stops keeping their leases alive. Not one this node
      // still hears from: that one is refusing the query (it hears a suspect, or holds for a
      // newer ballot), and is asked again until it answers.
      const silent = awaited.filter((id) => !n.links.lively(id));
      if (silent.length === 0) return;
      n.ev.log('warn', `node(s) ${silent.join(', ')} did not answer the recovery; counting them as lost`);
      for (const id of silent) n.membership.suspects.add(id);
      this.abandon();
      this.maybeStart();
      return;
    }
    if (!quorum) return; // a minority: keep asking (reask) until the network heals or we are removed
    if (!this.reportsAgree(r)) return;
    let best = n.id;
    let time = n.log.applied;
    let held = false;
    let latest = { to: NO_NODE, hops: -1 };
    for (const [id, s] of r.states) {
      if (s.applied > time) {
        time = s.applied;
        best = id;
      }
      if (s.hasToken) held = true;
      if (s.sentTo !== NO_NODE && s.sentHops > latest.hops) latest = { to: s.sentTo, hops: s.sentHops };
    }
    // In flight to a member that answered without it: it arrives (that member reports it,
    // holding it) or was lost with a broken connection. Wait a while to learn which.
    const inFlight = !held && latest.hops >= 0 && r.states.has(latest.to) && !r.states.get(latest.to)!.hasToken;
    if (inFlight) {
      r.inFlightSince ??= now();
      if (now() - r.inFlightSince < IN_FLIGHT_MS) return;
      n.ev.log('warn', `the token sent to node ${latest.to} did not arrive; taking it as lost`);
    }
    r.deciding = true;
    clearInterval(r.timer);
    const regenerate = !held;
    const finish = () => {
      if (this.run !== r) return;
      this.run = undefined;
      if (regenerate && (now() - r.started > HOLD_MS - LEASE_MS || this.promised > r.generation)) {
        // This node was stalled past the time members hold for this ballot: some may have
        // delivered the old token already. Start over rather than make a second one.
        n.ev.log('warn', `recovery ballot ${r.generation} took too long to decide; starting again`);
        n.token.endHold(undefined);
        n.lease.hold(undefined);
        n.log.thaw();
        this.suspect();
        return;
      }
      if (regenerate) {
        const ln = new Map<number, number>();
        const queue: number[] = [];
        // Members that did not answer are owed nothing: if they come back, they ask again.
        for (const id of n.members.keys()) ln.set(id, n.token.rn.get(id) ?? 0);
        for (const [id, s] of r.states) {
          ln.set(id, s.waiting ? s.seq - 1 : s.seq);
          n.token.rn.set(id, Math.max(n.token.rn.get(id) ?? 0, s.seq));
          if (s.waiting && id !== n.id) queue.push(id);
        }
        n.ev.log('warn', `regenerated the commit token at time ${time} (ballot ${r.generation})`);
        this.regenerations.remember(r.generation, time);
        this.voidAbove(time);
        // Catch up first if another survivor applied more.
        if (time > n.log.applied) n.links.send(best, Msg.ResendRequest, encode.resendRequest(n.log.applied, time));
        n.token.endHold(r.generation);
        n.token.onToken({ generation: r.generation, hops: latest.hops + 1, time, ln, queue, members: [...n.members.values()] });
      } else {
        n.token.endHold(undefined);
        n.log.thaw();
      }
      n.lease.hold(undefined);
      n.links.broadcast(Msg.Recovered, encode.recover({ generation: r.generation, time, source: best, regenerated: regenerate, suspects: [], known: this.regenerated }), n.members.values());
      const removed = [...r.suspects].filter((id) => n.members.has(id));
      if (removed.length > 0) {
        this.removing++;
        void removeMembers(n, removed, r.states, () => this.suspect()).finally(() => this.removing--);
      }
    };
    // A regenerated token must not overlap the old holder's last lease, measured on the old
    // holder's clock: wait it out with a margin for clocks that run at slightly different
    // rates on different machines (and for the timer's own lateness).
    if (regenerate) setTimeout(finish, LEASE_MS * 1.1 + 50).unref();
    else finish();
  }

  /** Recovered: the outcome, from the coordinator. */
  onRecovered(from: number, payload: Buffer): void {
    const r = decode.recover(payload);
    // An outcome that left the token alone can still tell of an earlier regeneration missed here.
    if (!r.regenerated && r.known.generation > this.regenerated.generation) this.lateRegeneration(from, r.known.generation, r.known.time);
    this.outcome(r);
  }

  /**
   * A lease echo from `from` tells of a regeneration this node has not heard of: its
   * outcome was sent to this node, which was stalled or cut off meanwhile, and may still be
   * on its way (or lost with a connection). Taken as that outcome, so a token this node
   * holds from before is dropped before the echo renews its lease.
   */
  lateRegeneration(from: number, generation: number, time: number): void {
    if (generation <= this.regenerated.generation) return;
    const n = this.n;
    const held = n.token.token;
    if (!held || held.generation >= generation) {
      // No token here that it replaced. If this node never had a token of that generation
      // and applied past its time, what it applied there came from the replaced token (its
      // own commits, made before it passed that token on): void, like the token. Otherwise
      // (a node that joined, or joined again, since; or one that had the new token) only
      // remember it.
      const stale = n.token.generation < generation && n.log.applied > time;
      n.token.generation = Math.max(n.token.generation, generation);
      if (stale) {
        this.n.ev.log('warn', `node ${from} knows of a token regenerated at time ${time} (ballot ${generation}) that this node missed`);
        this.takeRegeneration(generation, time, from);
        if (this.run || this.holdTimer) n.log.freeze();
      } else this.regenerations.remember(generation, time);
      return;
    }
    this.n.ev.log('warn', `node ${from} knows of a token regenerated at time ${time} (ballot ${generation}) that this node missed`);
    if (generation >= this.promised) {
      this.outcome({ generation, time, source: from, regenerated: true, suspects: [], known: { generation, time } });
    } else {
      // A newer recovery is under way here. The token is void whatever that one decides
      // (a member holding the new one answers it): drop it, and keep the log frozen for it.
      this.takeRegeneration(generation, time, from);
      this.n.log.freeze();
    }
  }

  /**
   * The token was regenerated under `generation` at `time`: an older token this node still
   * holds is void, with what its app committed with it, and so is every commit after `time`
   * this node applied (voidAbove).
   */
  private takeRegeneration(generation: number, time: number, source: number): void {
    const n = this.n;
    this.regenerations.remember(generation, time);
    // This node may hold the token the recovery replaced, back from a stall before anyone
    // removed it: that token, and what the app committed with it, are void.
    const replaced = n.token.dropVoid(generation);
    if (replaced) {
      const dropped = n.commits.discardLent(replaced.generation);
      n.ev.log('warn', `the commit token this node held was replaced while it was stalled or cut off (ballot ${generation})${dropped ? `; ${dropped} commit(s) its app made with it are void` : ''}`);
    }
    this.voidAbove(time, source);
  }

  private outcome(r: Recover): void {
    const n = this.n;
    if (r.generation < this.promised) {
      // A newer recovery is under way here; a regeneration this one made happened all the
      // same (its token exists): take it in, leaving the newer one's hold alone.
      if (r.regenerated) this.lateRegeneration(r.source, r.generation, r.time);
      return;
    }
    // A higher ballot decided while this node was coordinating a lower one: that run is moot.
    if (this.run && this.run.generation < r.generation) this.abandon();
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    this.answered = undefined;
    n.token.endHold(r.regenerated ? r.generation : undefined);
    n.lease.hold(undefined);
    // Learned twice (a lease echo, then the outcome itself): once is enough.
    if (r.regenerated && r.generation > this.regenerated.generation) this.takeRegeneration(r.generation, r.time, r.source);
    else n.log.thaw();
    if (r.time > n.log.applied) {
      n.log.hear(r.time);
      n.links.send(r.source, Msg.ResendRequest, encode.resendRequest(n.log.applied, r.time));
    }
    if (n.token.waiting && !n.token.held) n.token.request(true);
  }

  /**
   * The token was regenerated at `time`: commits beyond it were the dead holder's and no
   * member that answered had applied them (nobody applies anything while a recovery
   * decides), so they are void. Pages this node took from the dead holder's replies at such
   * versions hold void data: they become invalid (the configuration that follows says who
   * holds their real latest version, or that they are lost).
   */
  private voidAbove(time: number, source = NO_NODE): void {
    const n = this.n;
    // This node may be that holder, back from a stall before anyone removed it: its commits
    // after `time` are void. Never acknowledged (a member that applied another commit at
    // the same time would otherwise answer for it), never applied in the log.
    n.replication.voidAbove(time);
    // What the void commits here replaced is the pages' latest version at `time`: asked for
    // at `time` itself, a page last written before it would never come (a copy older than
    // the version asked for is refused), and the node hung on it.
    const before = n.log.versionsBefore(time, n.config.pageSize);
    n.log.rollBack(time);
    n.log.thaw(time);
    n.sequential.modelTable.voidDeclarations((token, at) => this.regenerations.madeVoid(token, at));
    const { versions, owners } = n.table;
    let voided = 0;
    const t = BigInt(time);
    for (let p = 0; p < versions.length; p++) {
      if (versions[p] <= t) continue;
      // A page this node's own void commit wrote names this node as its owner, and a fetch
      // would be answered from its own copy: the void data again (a node back from a stall
      // read its void appends after it had dropped them). Ask the node the outcome came
      // from instead; it holds the page's real latest version or knows who does.
      const owner = owners[p] === n.id && source !== NO_NODE && source !== n.id ? source : owners[p];
      // Version 0 first: invalidate refuses to lower the version of a valid copy.
      n.native.invalidate(p, 0, owner);
      n.native.invalidate(p, Math.min(before.get(p) ?? time, time), owner);
      voided++;
    }
    if (voided) n.ev.log('warn', `${voided} page(s) held data of commits after time ${time}, which died with their committer`);
  }

  /** Where recovery stands, for diagnosing a stuck cluster. */
  debugState(): Record<string, unknown> {
    const r = this.run;
    return {
      promised: this.promised,
      holding: this.holdTimer !== undefined,
      run: r && { ballot: r.generation, suspects: [...r.suspects], answered: [...r.states.keys()], deciding: r.deciding, ms: Math.round(now() - r.started) },
    };
  }

  /** Joined again under a new id: forget everything. */
  reset(): void {
    this.abandon();
    this.answered = undefined;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    this.unreached.clear();
  }

  stop(): void {
    this.reset();
  }
}
