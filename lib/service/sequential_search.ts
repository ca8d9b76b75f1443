// Finding a sequential page's owner when the owner hints lead nowhere (the protocol in
// sequential.ts): Li and Hudak's broadcast fallback, and adoption of a page whose owner
// died by the lowest node holding a read copy of it.
//
// A request goes along the owner hints. When they lead to a node that is gone, or a
// request goes unanswered (unanswered_requests.ts), the requester asks every member at
// once: the owner serves it as any request, the others answer notOwner, or copy if they
// hold a read copy while the owner they know of is gone. When nobody owns the page, the
// lowest holder of a copy adopts it with the other holders as its copy set (copies go
// before any write returns, so every copy holds the last write); with no copy left, the
// search is made again, and after the last round the page is lost for every member.
import { LOST_OWNER, Msg } from './protocol';
import { decodeAdopt, encodeAdopt, ReplyStatus, type SeqRequest } from './sequential_wire';
import type { Cluster } from './cluster';
import type { UnansweredRequests } from './unanswered_requests';
import { MODEL_MASK, PageModel } from '../native';

/**
 * A search that finds no owner is made again this many times before the page is declared
 * lost: a page handed on while the search's messages cross the hand-over's can be missed
 * by one round (the old owner answered after it gave the page up, the new one before it
 * took it).
 */
const SEARCH_ROUNDS = 3;
/** asked.to while a search is under way. */
export const SEARCHING = -1;

/** What a search needs of the ownership protocol's state and actions (sequential.ts). */
export interface SearchHost {
  /** The native page table's model bytes. */
  readonly models: Uint8Array;
  /** Owner: the nodes holding a read copy, per page. */
  readonly copies: Map<number, Set<number>>;
  /** Pages this node is taking or handing on, with the requests held meanwhile. */
  readonly busy: Map<number, SeqRequest[]>;
  /** The node each waiting fault's request went to (SEARCHING while a search runs). */
  readonly asked: Map<number, { to: number; write: boolean }>;
  readonly unanswered: UnansweredRequests;
  readonly counts: { searches: number };
  send(to: number, r: SeqRequest): void;
  reply(to: number, page: number, status: ReplyStatus, data: Uint8Array | undefined): void;
  /** The page is here as its faults wanted (or lost): wake them, serve what waited. */
  done(page: number): void;
  /** The page's data is gone; `decided`: this node found it, and tells every member. */
  lose(page: number, decided: boolean): void;
}

export class SequentialSearch {
  /** Searches under way: the members yet to answer, and what the answers said so far. */
  private readonly searching = new Map<number, { waiting: Set<number>; round: number; write: boolean; holders: number[]; adoptions: number }>();

  constructor(
    private readonly n: Cluster,
    private readonly host: SearchHost,
  ) {}

  /** Whether this node searches for `page` now. */
  has(page: number): boolean {
    return this.searching.has(page);
  }

  /** The search for `page` is over (the page came, or this node stopped fetching). */
  forget(page: number): void {
    this.searching.delete(page);
  }

  /**
   * While this node searches for a page it holds only searches of higher nodes. A searcher
   * does not know where the page is, and one that held every request would wait for the
   * nodes whose requests it holds while they wait for it: two nodes touching a page whose
   * owner died each held the other's search, or its request, and both threads waited for
   * good. Ranked by id, the lowest searcher's search is answered by every other searcher,
   * it alone takes the page (found, adopted or lost), and then serves the searches it held;
   * a plain request answered so makes its requester search too.
   */
  holds(r: SeqRequest): boolean {
    return r.search === true && r.requester > this.n.id;
  }

  /**
   * Says this node does not own the page. A copy held here of a page whose owner is gone is
   * said to a search: it is the last write's (copies go before any write returns), and the
   * page lives on in it.
   */
  notOwner(r: SeqRequest): void {
    const n = this.n;
    const owner = n.table.owners[r.page];
    const copy = r.search && owner !== n.id && !n.members.has(owner) && owner !== LOST_OWNER &&
      (this.host.models[r.page] & MODEL_MASK) === PageModel.sequential && n.table.states[r.page] !== 0;
    this.host.reply(r.requester, r.page, copy ? ReplyStatus.copy : ReplyStatus.notOwner, undefined);
  }

  /**
   * The hints lead to a node that is gone: ask every member at once (Li and Hudak's
   * broadcast fallback). The owner serves the request as any other; the others answer
   * notOwner; a node handing the page on or taking it holds the search like any request,
   * and a node searching itself holds only the searches of higher nodes.
   */
  start(page: number, write: boolean, round = 1, adoptions = 0): void {
    const n = this.n;
    const others = [...n.members.keys()].filter((id) => id !== n.id);
    if (others.length === 0) {
      this.host.lose(page, false);
      this.host.done(page);
      return;
    }
    this.host.unanswered.answered(page);
    this.searching.set(page, { waiting: new Set(others), round, write, holders: [], adoptions });
    this.host.asked.set(page, { to: SEARCHING, write });
    // Requests held while this node asked a node it knew of are answered now, but for
    // searches of higher nodes (holds).
    const held = this.host.busy.get(page);
    if (held) {
      const keep = held.filter((r) => this.holds(r));
      for (const r of held) if (!this.holds(r)) this.notOwner(r);
      this.host.busy.set(page, keep);
    }
    this.host.counts.searches++;
    for (const id of others) this.ask(id, page, write);
  }

  /**
   * Every member answered a search: none owns the page. Members holding a read copy: the
   * lowest of them (this node, if it holds one) adopts it, and the search asks again. Else
   * again, or, after the last round, lost.
   */
  private nobodyOwns(page: number): void {
    const s = this.searching.get(page);
    if (!s) return;
    this.searching.delete(page);
    const n = this.n;
    const holders = s.holders.filter((id) => n.members.has(id));
    if (n.table.states[page] !== 0 && (this.host.models[page] & MODEL_MASK) === PageModel.sequential) holders.push(n.id);
    if (holders.length > 0 && s.adoptions < SEARCH_ROUNDS) {
      // Not a holder about to leave while another holds a copy: it would have to hand the page on again.
      const staying = holders.filter((id) => !n.leaving.intent.intends(id));
      const heir = Math.min(...(staying.length > 0 ? staying : holders));
      if (heir === n.id) {
        this.becomeOwner(page, holders);
        // The fault looks again, as the owner now.
        this.host.done(page);
      } else {
        n.links.send(heir, Msg.SeqAdopt, encodeAdopt(page, holders));
        // Behind the adoption on the same connection: the heir answers it as the owner.
        this.start(page, s.write, s.round, s.adoptions + 1);
      }
      return;
    }
    if (s.round < SEARCH_ROUNDS) this.start(page, s.write, s.round + 1);
    else {
      this.host.lose(page, true);
      this.host.done(page);
    }
  }

  /** SeqAdopt: a searcher found no owner of a page this node holds a copy of. */
  onAdopt(from: number, p: Buffer): void {
    const n = this.n;
    const { page, holders } = decodeAdopt(p, n.config.numPages);
    const owner = n.table.owners[page];
    // Only a copy of an owner that is gone (another searcher may have had it adopted here already).
    if ((this.host.models[page] & MODEL_MASK) !== PageModel.sequential || n.table.states[page] === 0 || (owner !== n.id && n.members.has(owner))) {
      n.ev.log('warn', `node ${from} asked this node to adopt sequential page ${page}, which it cannot (no copy here, or its owner lives); ignored`);
      return;
    }
    this.becomeOwner(page, holders);
    // A search of this node's own for the page (a write fault on its copy) ends: it is the owner.
    if (this.searching.has(page)) this.host.done(page);
  }

  /** This node owns `page`, whose read copy it holds, with `holders` holding copies too. */
  private becomeOwner(page: number, holders: number[]): void {
    const n = this.n;
    if (n.table.owners[page] !== n.id) n.native.installSequential(page, null, false, n.id);
    let c = this.host.copies.get(page);
    if (!c) this.host.copies.set(page, (c = new Set()));
    for (const id of holders) if (id !== n.id && n.members.has(id)) c.add(id);
    n.ev.log('warn', `sequential page ${page}: its owner is gone; this node owns it from its read copy (${c.size} other copies)`);
  }

  /**
   * A notOwner or copy answer to a request of this node's. Not searching: the hints led to
   * a node that is gone, so search (unless one runs). Searching: one member fewer to wait
   * for; the last answer decides.
   */
  answered(from: number, page: number, status: ReplyStatus): void {
    const s = this.searching.get(page);
    if (!s) {
      if (status === ReplyStatus.notOwner && this.host.asked.get(page)?.to !== SEARCHING) this.start(page, this.host.asked.get(page)?.write ?? true);
    } else if (s.waiting.delete(from)) {
      if (status === ReplyStatus.copy) s.holders.push(from);
      if (s.waiting.size === 0) this.nobodyOwns(page);
    }
  }

  /**
   * A connection to member `id` was bound again: the searches still waiting for its answer
   * ask it again. The question, or its answer, may have gone down with the connection it
   * replaces (a member stalled past the failure detector and back, its connections dropped
   * on both sides but never removed); nothing else asks again, and the fault waited for
   * good. An owner serves a search asked twice like any request, and answers nobody waits
   * for any more are dropped (sequential.ts onReply).
   */
  linkBound(id: number): void {
    for (const [page, s] of this.searching) {
      if (s.waiting.has(id)) this.ask(id, page, s.write);
    }
  }

  /** Asks member `id` for `page` as a search: answered by the member itself, never forwarded. */
  private ask(id: number, page: number, write: boolean): void {
    this.host.send(id, { page, requester: this.n.id, write, hops: 0, count: 1, search: true });
  }

  /** A member left: the searches waiting for its answer wait no more. */
  memberGone(id: number): void {
    for (const [page, s] of [...this.searching]) {
      if (s.waiting.delete(id) && s.waiting.size === 0) this.nobodyOwns(page);
    }
  }
}
