// Barriers for SPMD programs (dsm.barrier, lib/sync/barrier.ts), the service thread's side:
// one message round between service threads, no transaction and no token.
//
// The protocol. Every node counts, per barrier name, the rounds (generations) it has been
// through: its next generation g. A party's service sends BarrierArrive (name, g, parties,
// the global time it has applied or committed) to the coordinator: the lowest member id
// that is not a page server, the same on every node for a given configuration. Once
// `parties` distinct nodes arrived at g, the coordinator ends the round: BarrierAnswer
// 'released' to each of them, carrying the round (its ids, and the highest time the parties
// arrived with, T). A released party's service answers the app once this node has applied T,
// so every transactional commit a party made before it arrived is visible after the barrier
// (T is at least that commit's time, and commits are applied in time order). Non-
// transactional pages need nothing: a 'sequential' write returns only once no other node
// holds the page's old contents (sequential.ts: the owner invalidates every copy and waits
// for each acknowledgement before the write is granted; a node without a copy fetches it
// from the owner, which copies the page as it is at that moment), and a party arrives only
// after its writes returned, so any read after the release faults and fetches the new
// contents; 'migratory' pages live in one place, 'local' ones are never shared. Each round
// is remembered as the last ended round of its name (on the coordinator, and on every
// party it answered); every arrival carries the sender's last ended round of that name.
//
// Rules, at the coordinator, for an arrival at g from node x (L: the last ended round known):
//  - g <= L.gen: the round x waits for has ended. x is released (or gets the break) if
//    g = L.gen and x is one of L's ids; else x was not part of it (it arrived late, after
//    others filled the round; or it sat out rounds): 'advance', x goes on to L.gen + 1 and
//    arrives again there.
//  - a round open at g with another parties count: 'mismatch', x is refused (the first
//    arrival's count holds) and its counter does not move.
//  - otherwise x joins the open round. An arrival that carries a round newer than what the
//    coordinator knows teaches it: open rounds at or before it end as above.
// While a round is open with more than one arrival, each arrival is told who arrived so far
// ('arrived'): what a party needs to decide alone if the coordinator dies.
//
// Failure rule: a round breaks when a node that arrived is removed from the configuration,
// or when a configuration removes a member and fewer members remain than its parties. The
// coordinator decides it while it lives (on each configuration it applies); its parties then
// get 'broken'. A round with fewer members than parties and nobody removed waits: the nodes
// still to come may be joining (every process of an SPMD program starts, then waits at a
// first barrier; the founder gets there before the others are members). Before, such an
// arrival broke at once, and a program had to wait for the joins some other way.
//
// The coordinator can die (it is removed; ids are never reused, and a joiner gets a higher
// id, so the coordinator changes only when the lowest member is removed). Every state it
// had is then rebuilt from what the parties hold:
//  - Before any arrival reached it, or with some arrived, before it ended the round: each
//    waiting party, on the configuration without it, checks what it was told: if a node
//    it knows arrived (the dead coordinator among them, when it was a party) is gone, or
//    fewer members remain than parties (the coordinator, at least, was removed), it
//    breaks the round itself; otherwise it sends its arrival again to the new
//    coordinator, which has no state and collects the round anew.
//    The parties' knowledge is the same but for 'arrived' answers in flight, so they break
//    alike; one that did not know re-arrives, and learns the break from the next arrival of
//    a party that broke (its last round), or from the round it sends the new coordinator
//    right away (below).
//  - While sending the releases (some parties got theirs, some not): a released party is
//    at g + 1 and holds the round. On the configuration change every node sends the new
//    coordinator the rounds it holds that the dead one decided (and those it broke alone),
//    and every arrival carries its sender's last round too; so the new coordinator learns
//    the round g, and the parties still waiting at g are released by the first rule
//    (arrivals at g + 1 from some and at g from others release g, never hang).
//  - After sending every release: nothing waits; the next arrivals carry round g, and the
//    new coordinator starts from there.
//  - A party dies: the coordinator breaks the round if it had arrived, or if too few
//    members remain; a dead party that had not arrived only counts for the second rule.
//  - A late party (arriving after the others were released, or after sitting out rounds):
//    the first rule sends it to the next round, where it waits for the next callers.
// A new coordinator that lacks round g's record while enough other parties wait at g (more
// members than parties, the released ones gone quiet) may end g again with another set of
// ids; each party it releases still had `parties` nodes arrive with it. The limit of the
// rebuilt state: a party waiting at g < L.gen - 1 whose release died with its coordinator
// is sent on to the next round (only possible with more members than parties).
// A node removed from the configuration (it joins again under a new id) fails its waits.
//
// Messages from peers are checked as they are decoded; a bad one is logged and dropped
// (never a reason to close the connection or to stop the service).
import { BarrierKind, type BarrierAnswer, type BarrierArrival, type BarrierRound, decode, encode, Msg } from './protocol';
import type { Cluster } from './cluster';

/** How a barrier wait ended, as the app learns it (lib/sync/barrier.ts). */
export type BarrierOutcome = { outcome: 'released' } | { outcome: 'broken'; why: string } | { outcome: 'mismatch'; parties: number } | { outcome: 'partitioned' };

/** What a test sees of one barrier name on this node. */
export interface BarrierState {
  /** As coordinator: the nodes that arrived at the open round. */
  arrived: number[];
  /** As party: the generation waited for (-1: not waiting), and who it was told arrived. */
  waiting: number;
  known: number[];
  /** This node's next generation of the name. */
  next: number;
}

/** A released party that has not applied the round's time yet looks again this often (and asks for missed commits). */
const SETTLE_CHECK_MS = 1000;

interface Waiting {
  gen: number;
  parties: number;
  time: number;
  /** The coordinator the arrival went to. */
  sentTo: number;
  /** The nodes the coordinator said arrived so far. */
  known: number[];
  /** Released: waiting to apply the round's time. */
  settling: boolean;
  answer: (o: BarrierOutcome) => void;
}

interface OpenRound {
  gen: number;
  parties: number;
  /** Arrived node -> the global time it arrived with. */
  arrivals: Map<number, number>;
}

export class Barriers {
  /** Per name: this node's next generation. */
  private readonly next = new Map<string, number>();
  /** Per name: the last ended round known here. */
  private readonly last = new Map<string, BarrierRound>();
  /** Per name: this node's wait (one party per node). */
  private readonly waiting = new Map<string, Waiting>();
  /** As coordinator, per name: the round being collected. */
  private readonly open = new Map<string, OpenRound>();
  private coordinatorId = -1;
  /** The members that run transactions as of the last configuration applied here: a new one that lacks one of them removed it. */
  private lastMembers = new Set<number>();
  /** Per name: the latest round this node has sent an arrival for (-1: none). */
  private readonly arrivedGen = new Map<string, number>();

  constructor(private readonly n: Cluster) {}

  /** The latest round of barrier `name` this node has arrived at (-1: none): copies pushed at earlier ones are dropped (pushed_copies.ts). */
  arrivedAt(name: string): number {
    return this.arrivedGen.get(name) ?? -1;
  }

  /** The app waits at barrier `name`; `time`: the global time the app has applied or committed. */
  wait(name: string, parties: number, time: number, answer: (o: BarrierOutcome) => void): void {
    if (this.waiting.has(name)) throw new Error(`this node already waits at barrier "${name}"`);
    if (this.n.lease.partitioned) return answer({ outcome: 'partitioned' });
    const w: Waiting = { gen: this.next.get(name) ?? 0, parties, time: Math.max(time, this.n.log.applied), sentTo: -1, known: [], settling: false, answer };
    this.waiting.set(name, w);
    // Read copies go to the neighbours that will read them after the barrier, ahead of the
    // arrival on the same connections (pushed_copies.ts).
    this.n.sequential.pushes.push(name, w.gen);
    this.arriveAt(name, w);
  }

  /** The state of `name` here (test hook). */
  state(name: string): BarrierState {
    const w = this.waiting.get(name);
    return { arrived: [...(this.open.get(name)?.arrivals.keys() ?? [])], waiting: w ? w.gen : -1, known: w ? w.known : [], next: this.next.get(name) ?? 0 };
  }

  /** BarrierArrive from a member. */
  onArrive(from: number, p: Buffer): void {
    let a: BarrierArrival;
    try {
      a = decode.barrierArrive(p);
    } catch (e) {
      this.n.ev.log('warn', `dropped a malformed barrier arrival from node ${from}: ${(e as Error).message}`);
      return;
    }
    this.arrive(from, a);
  }

  /** BarrierAnswer from a coordinator. */
  onAnswer(from: number, p: Buffer): void {
    let a: BarrierAnswer;
    try {
      a = decode.barrierAnswer(p);
    } catch (e) {
      this.n.ev.log('warn', `dropped a malformed barrier answer from node ${from}: ${(e as Error).message}`);
      return;
    }
    this.answered(a);
  }

  /** After each configuration applied here (membership.ts). */
  configurationChanged(): void {
    const n = this.n;
    const c = this.coordinator();
    const old = this.coordinatorId;
    this.coordinatorId = c;
    const before = this.lastMembers;
    this.lastMembers = this.transactingMembers();
    const shrank = [...before].some((id) => !this.lastMembers.has(id));
    // As coordinator: rounds with a removed arrival, or with too few members left after a removal, break.
    for (const [name, o] of [...this.open]) this.decide(name, o, false, shrank);
    // As party: the coordinator lives on and decides; if it is gone, decide from what it said.
    const brokenHere: string[] = [];
    for (const [name, w] of [...this.waiting]) {
      if (w.settling || w.sentTo === c) continue;
      const live = this.memberCount();
      const gone = w.known.find((id) => this.gone(id));
      if (gone !== undefined || (shrank && live < w.parties)) {
        const why = gone !== undefined ? `node ${gone}, which had arrived, was removed from the cluster` : `it has ${w.parties} parties but ${live} member(s) remain`;
        this.learn(name, { gen: w.gen, broken: true, time: 0, reporter: n.id, decider: n.id, ids: w.known.length ? w.known : [n.id], why });
        this.finish(name, w, { outcome: 'broken', why }, w.gen + 1);
        brokenHere.push(name);
      } else {
        this.arriveAt(name, w);
      }
    }
    // What this node holds of rounds the dead coordinator ended (or that broke here) goes to
    // the new one: it may be the only trace of a round whose releases were cut short.
    if (old === c || c === n.id || c < 0) return;
    for (const [name, r] of this.last) {
      if (r.decider !== old && !brokenHere.includes(name)) continue;
      n.links.send(c, Msg.BarrierArrive, encode.barrierArrive({ name, gen: this.next.get(name) ?? 0, parties: 0, time: 0, waiting: false, last: r }));
    }
  }

  /**
   * A connection to member `id` was bound again: the arrivals this node sent it (as their
   * coordinator) go again. The arrival, or the coordinator's answer, may have gone down with
   * the connection before (the coordinator stalled past the failure detector and back, never
   * removed), and the round waited for good. An arrival sent twice counts once, and a round
   * it finds ended is answered again (arrive, late).
   */
  linkBound(id: number): void {
    for (const [name, w] of this.waiting) {
      if (!w.settling && w.sentTo === id) this.n.links.send(id, Msg.BarrierArrive, encode.barrierArrive(this.arrival(name, w)));
    }
  }

  /** This node was removed from the configuration (it joins again under a new id): its waits fail. */
  removed(): void {
    this.open.clear();
    this.coordinatorId = -1;
    this.lastMembers = new Set();
    for (const [name, w] of [...this.waiting]) {
      this.waiting.delete(name);
      if (!w.settling) w.answer({ outcome: 'broken', why: 'this node was removed from the cluster while it waited (it joins again as a new member)' });
    }
  }

  /**
   * This node lost its quorum: its waits fail as its transactions do (ERR_DSM_PARTITIONED),
   * rather than hang while nobody it can reach may end or break them (with the others dead,
   * never). Its generation stays: called again after the heal, it arrives at the same round,
   * and is released at once if the others ended it with it among the parties.
   */
  partitioned(): void {
    for (const [name, w] of [...this.waiting]) if (!w.settling) this.finish(name, w, { outcome: 'partitioned' }, w.gen);
  }

  // ---- party ----

  private arriveAt(name: string, w: Waiting): void {
    // Copies pushed here at earlier rounds go before the arrival does (pushed_copies.ts): once
    // their owner is released from this round with us among the parties, it counts on that.
    this.arrivedGen.set(name, Math.max(this.arrivedGen.get(name) ?? -1, w.gen));
    this.n.sequential.pushes.arriving(name, w.gen);
    const c = this.coordinator();
    w.sentTo = c;
    w.known = [];
    const a = this.arrival(name, w);
    if (c === this.n.id) this.arrive(c, a);
    else if (c >= 0) this.n.links.send(c, Msg.BarrierArrive, encode.barrierArrive(a));
  }

  /** This node's arrival at the round it waits for, with the last round it knows ended. */
  private arrival(name: string, w: Waiting): BarrierArrival {
    return { name, gen: w.gen, parties: w.parties, time: w.time, waiting: true, last: this.last.get(name) };
  }

  private answered(a: BarrierAnswer): void {
    if (a.kind !== BarrierKind.arrived && a.kind !== BarrierKind.mismatch) this.learn(a.name, a.round);
    const w = this.waiting.get(a.name);
    // An answer to an arrival this node no longer waits with (a re-sent one answered twice).
    if (!w || w.gen !== a.gen || w.settling) return;
    const me = this.n.id;
    switch (a.kind) {
      case BarrierKind.arrived:
        w.known = a.ids;
        return;
      case BarrierKind.mismatch:
        this.finish(a.name, w, { outcome: 'mismatch', parties: a.parties }, w.gen);
        return;
      case BarrierKind.broken:
        this.finish(a.name, w, { outcome: 'broken', why: a.round.why || 'a party was removed from the cluster' }, Math.max(w.gen, a.round.gen) + 1);
        return;
      case BarrierKind.released:
        if (a.round.gen === w.gen && a.round.ids.includes(me)) {
          this.next.set(a.name, w.gen + 1);
          this.n.sequential.pushes.expired(a.name, a.round.gen, a.round.ids);
          w.settling = true;
          void this.settle(a.round).then(() => this.finish(a.name, w, { outcome: 'released' }, w.gen + 1));
          return;
        }
        break;
      case BarrierKind.advance:
        break;
    }
    // Not in that round: on to the next one.
    if (a.round.gen < w.gen) return;
    w.gen = a.round.gen + 1;
    this.next.set(a.name, w.gen);
    this.arriveAt(a.name, w);
  }

  /** Resolves once this node applied the round's time, or the party that brought it is gone (what it had and others did not died with it). */
  private async settle(r: BarrierRound): Promise<void> {
    const n = this.n;
    while (n.log.applied < r.time && !this.gone(r.reporter) && n.members.has(n.id) && !n.closing) await n.log.waitUntil(r.time, SETTLE_CHECK_MS);
  }

  private finish(name: string, w: Waiting, o: BarrierOutcome, next: number): void {
    if (this.waiting.get(name) === w) this.waiting.delete(name);
    this.next.set(name, Math.max(this.next.get(name) ?? 0, next));
    w.answer(o);
  }

  // ---- coordinator ----

  private arrive(from: number, a: BarrierArrival): void {
    if (a.last) this.learn(a.name, a.last);
    if (!a.waiting) return;
    const ended = this.last.get(a.name);
    if (ended && a.gen <= ended.gen) return this.late(from, a.name, a.gen, ended);
    let o = this.open.get(a.name);
    if (o && o.gen !== a.gen) {
      // An arrival at g > 0 carries round g - 1 or later, which ends older open rounds: a
      // mismatch here is a sender breaking that rule.
      this.n.ev.log('warn', `dropped node ${from}'s arrival at round ${a.gen} of barrier "${a.name}": round ${o.gen} is open and its round ${a.gen - 1} is unknown here`);
      return;
    }
    if (!o) this.open.set(a.name, (o = { gen: a.gen, parties: a.parties, arrivals: new Map() }));
    if (o.parties !== a.parties) {
      this.answer(from, { name: a.name, gen: a.gen, kind: BarrierKind.mismatch, parties: o.parties });
      if (o.arrivals.size === 0) this.open.delete(a.name);
      return;
    }
    o.arrivals.set(from, Math.max(a.time, o.arrivals.get(from) ?? 0));
    this.decide(a.name, o, true, false);
  }

  /**
   * Ends the round if it is complete or broken; else (`notify`) tells the arrived who they
   * are. `shrank`: a configuration that removed a member was just applied.
   */
  private decide(name: string, o: OpenRound, notify: boolean, shrank: boolean): void {
    const gone = [...o.arrivals.keys()].find((id) => this.gone(id));
    const live = this.memberCount();
    if (gone !== undefined) return this.end(name, o, `node ${gone}, which had arrived, was removed from the cluster`);
    if (shrank && live < o.parties) return this.end(name, o, `it has ${o.parties} parties but ${live} member(s) remain`);
    if (o.arrivals.size >= o.parties) return this.end(name, o, undefined);
    if (!notify || o.arrivals.size < 2) return;
    const ids = [...o.arrivals.keys()];
    for (const id of ids) this.answer(id, { name, gen: o.gen, kind: BarrierKind.arrived, ids });
  }

  private end(name: string, o: OpenRound, why: string | undefined): void {
    let time = 0;
    let reporter = this.n.id;
    for (const [id, t] of o.arrivals) {
      if (t > time) {
        time = t;
        reporter = id;
      }
    }
    const round: BarrierRound = { gen: o.gen, broken: why !== undefined, time, reporter, decider: this.n.id, ids: [...o.arrivals.keys()], why: why ?? '' };
    this.open.delete(name);
    this.learn(name, round);
    // The other parties first: answering this node runs its own release on the spot (pushed
    // copies expire, the app is answered), and their releases would wait behind it.
    const answer = { name, gen: o.gen, kind: why === undefined ? BarrierKind.released : BarrierKind.broken, round };
    for (const id of round.ids) if (id !== this.n.id && !this.gone(id)) this.answer(id, answer);
    if (round.ids.includes(this.n.id) && !this.gone(this.n.id)) this.answer(this.n.id, answer);
  }

  /** A round ended (decided here or elsewhere): keeps the latest, and ends the open rounds it settles. */
  private learn(name: string, r: BarrierRound): void {
    const known = this.last.get(name);
    if (known && known.gen >= r.gen) return;
    this.last.set(name, r);
    const o = this.open.get(name);
    if (!o || o.gen > r.gen) return;
    this.open.delete(name);
    for (const id of o.arrivals.keys()) if (!this.gone(id)) this.late(id, name, o.gen, r);
  }

  /** Node `id` arrived at `gen`, and round `r` (at `gen` or later) has ended. */
  private late(id: number, name: string, gen: number, r: BarrierRound): void {
    const kind = gen === r.gen && r.ids.includes(id) ? (r.broken ? BarrierKind.broken : BarrierKind.released) : BarrierKind.advance;
    this.answer(id, { name, gen, kind, round: r });
  }

  private answer(to: number, a: BarrierAnswer): void {
    if (to === this.n.id) this.answered(a);
    else this.n.links.send(to, Msg.BarrierAnswer, encode.barrierAnswer(a));
  }

  // ---- the configuration ----

  /** The lowest member that runs transactions (-1: none known, e.g. while joining again). */
  private coordinator(): number {
    let c = -1;
    for (const m of this.n.members.values()) if (!m.pageServer && (c < 0 || m.id < c)) c = m.id;
    return c;
  }

  private memberCount(): number {
    return this.transactingMembers().size;
  }

  private transactingMembers(): Set<number> {
    const ids = new Set<number>();
    for (const m of this.n.members.values()) if (!m.pageServer) ids.add(m.id);
    return ids;
  }

  /** An id given out that is no longer a member: removed, never to come back. An id newer than this configuration is not gone. */
  private gone(id: number): boolean {
    return id < this.n.membership.nextId && !this.n.members.has(id);
  }
}
