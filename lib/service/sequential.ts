// Pages outside transactional consistency (DESIGN.md "Consistency models"; README "Consistency
// models"): the sequential model's ownership protocol and the local model's refusal.
//
// Sequential pages follow IVY's multiple readers / single writer with invalidation, with
// Li and Hudak's dynamic distributed manager for finding the owner: every node keeps a
// probable owner per page (the page table's owner hint), and a request goes there and is
// forwarded along the hints until it reaches the owner. A hint only ever names a node that
// owned the page later than the node holding it (the allocator at first; the next owner
// after a transfer or an invalidation; the owner that answered a read), so following hints
// always ends at the owner, or at a node taking ownership right now, which holds the request
// until it has the page.
// - Read fault: ask the owner; it drops its own write access, sends a copy and remembers the
//   reader in the page's copy set.
// - Write fault on the owner: invalidate every copy in the copy set (sequential_invalidations.ts), wait for each
//   acknowledgement, then write (the native handler grants it from then on without a message).
// - Write fault elsewhere: ask the owner; it invalidates every other copy, waits for the
//   acknowledgements, gives up its own copy and sends the page with ownership.
// So after a write returns no other node holds the old contents. A node taking or handing
// on a page holds requests for it meanwhile; invalidations are never held (no deadlock: an
// acknowledgement never waits for anything).
//
// An owner that dies leaves its readers' copies, which hold the last write (copies go before
// any write returns). A search for the page (sequential_search.ts) hears of them, and the
// lowest holder adopts the page with the other holders as its copy set (SeqAdopt); only
// where no copy is left is the page lost, for every member (sequential_loss.ts).
//
// Migratory pages use the same ownership chain with no read copies: any access needs the
// page here and owned, so a read fault moves it like a write, and an owner keeps a page it
// received for at least MIGRATORY_HOLD_MS before handing it on.
import { LOST_OWNER, Msg } from './protocol';
import { WireError } from './wire';
import { decodeReply, decodeRequest, encodeReply, encodeRequest, READ_AHEAD, ReplyStatus, type SeqReply, type SeqRequest } from './sequential_wire';
import { SEARCHING, SequentialSearch } from './sequential_search';
import { LeaseFence } from './lease_fence';
import { Invalidations } from './sequential_invalidations';
import type { Cluster } from './cluster';
import { MODEL_HERE, MODEL_MASK, PageModel } from '../native';
import { PushedCopies } from './pushed_copies';
import { SequentialLoss } from './sequential_loss';
import { type ModelProtocol, ModelTable } from './model_table';
import { ASK_RETRY_MS, UnansweredRequests } from './unanswered_requests';
import { prefetchPages } from './sequential_prefetch';
import { HeldForTest } from './held_for_test';

/**
 * An owner's write fault invalidates the copies of up to this many pages from the faulting
 * one (those it owns): one round trip for a row of a grid instead of one per page.
 */
const INVALIDATE_RUN = 16;
/**
 * A migratory page stays at least this long where it arrived before it moves on (a request
 * waits for the rest): measured with two nodes taking turns on one page (README).
 */
export const MIGRATORY_HOLD_MS = 1;
/** A request forwarded more often than this is a bug in the hints: logged and dropped. */
const MAX_HOPS = 64;

/** Who waits for a page: a faulting thread's request slot, or a prefetch's callback. */
type Waiter = number | (() => void);

export class Sequential implements ModelProtocol {
  private readonly models: Uint8Array;
  private readonly page: Uint8Array;
  /** Owner: the nodes holding a read copy, per page. */
  private readonly copies = new Map<number, Set<number>>();
  /** Pages this node is taking or handing on: requests for them wait here. */
  private readonly busy = new Map<number, SeqRequest[]>();
  /** Faulting slots (and prefetches) waiting for a page. */
  private readonly faults = new Map<number, Waiter[]>();
  /** Owners found by asking every member (the hints led to a node that is gone). */
  readonly search: SequentialSearch;
  /** Faulting slots (and prefetches) waiting for this node to finish handing a page on (then they look again). */
  private readonly afterBusy = new Map<number, Waiter[]>();
  /** When each migratory page owned here arrived (its hold time runs from then). */
  private readonly arrived = new Map<number, number>();
  /** The node each waiting fault's request went to. */
  private readonly asked = new Map<number, { to: number; write: boolean }>();
  /** Requests that become searches if still unanswered after ASK_RETRY_MS. */
  private readonly unanswered = new UnansweredRequests((page) => this.unansweredFor(page));
  /** Read copies pushed to former readers at barrier arrivals, and dropped at the readers' next ones. */
  readonly pushes: PushedCopies;
  /**
   * Replies sent under a generation of their page this node has not heard of yet (the
   * declaring commit is still on its way here): taken in once it has (modelChanged).
   */
  private readonly ahead = new Map<number, Array<{ from: number; r: SeqReply }>>();
  /** A test hook's held messages (held_for_test.ts). */
  readonly heldForTest = new HeldForTest();
  /** Figures for dsm.clusterStats(). */
  readonly counts = { readFetches: 0, ownershipMoves: 0, invalidationsSent: 0, forwarded: 0, localRefused: 0, searches: 0, pushed: 0, staleReplies: 0, laterReplies: 0 };

  /** The models' travels: to joiners, and with commits. */
  readonly modelTable: ModelTable;
  /** Pages lost with their owner, known to every member. */
  readonly loss: SequentialLoss;
  /** Read copies invalidated before a write or a hand-over. */
  readonly invalidations: Invalidations;
  /** Faults wait here while this node's lease is out. */
  readonly fence: LeaseFence;

  constructor(private readonly n: Cluster) {
    this.models = n.native.pageModels();
    this.heldForTest.log = (m) => n.ev.log('warn', m);
    this.loss = new SequentialLoss(n, this.models, (page) => this.modelTable.generationOf(page));
    this.modelTable = new ModelTable(n, this.models, this, this.loss);
    this.page = new Uint8Array(n.config.pageSize);
    this.pushes = new PushedCopies(n, {
      models: this.models,
      copies: this.copies,
      moving: (page) => this.busy.has(page) || this.faults.has(page),
      counts: this.counts,
      generationOf: (page) => this.modelTable.generationOf(page),
      heldForTest: this.heldForTest,
    });
    this.invalidations = new Invalidations(n, {
      models: this.models,
      copies: this.copies,
      pushes: this.pushes,
      counts: this.counts,
      generationOf: (page) => this.modelTable.generationOf(page),
      heldForTest: this.heldForTest,
    });
    this.fence = new LeaseFence(n, (w) => this.wake(w));
    this.search = new SequentialSearch(n, {
      models: this.models,
      copies: this.copies,
      busy: this.busy,
      asked: this.asked,
      unanswered: this.unanswered,
      counts: this.counts,
      send: (to, r) => this.send(to, r),
      reply: (to, page, status, data) => this.reply(to, page, status, data),
      done: (page) => this.done(page),
      lose: (page, decided) => this.lose(page, decided),
    });
  }

  /** True when `page` is not transactional (its faults come here). */
  handles(page: number): boolean {
    return (this.models[page] & MODEL_MASK) !== PageModel.transactional;
  }

  /** Brings pages [first, first + count) here ahead of the app's touches (sequential_prefetch.ts), then calls `done`. */
  prefetch(first: number, count: number, write: boolean, done: () => void): void {
    prefetchPages({ models: this.models, states: this.n.table.states, fault: (wake, page, w, run) => this.fault(wake, page, w, run) }, first, count, write, done);
  }

  /** Wakes a faulting thread (it looks at the page again) or a prefetch. */
  private wake(w: Waiter): void {
    if (typeof w === 'number') this.n.native.completeRequest(w);
    else w();
  }

  /**
   * A fault the native handler could not resolve alone (`slot`: the thread's request, or a
   * prefetch); a read asks for up to `readAhead` pages from this one.
   */
  fault(slot: Waiter, page: number, write: boolean, readAhead = READ_AHEAD): void {
    const n = this.n;
    const m = this.models[page];
    if ((m & MODEL_MASK) === PageModel.local) {
      if (!(m & MODEL_HERE)) {
        this.counts.localRefused++;
        n.native.refuseLocal(page);
      }
      this.wake(slot);
      return;
    }
    if (this.fence.hold(slot)) return;
    if (this.parked) {
      // This node is leaving (leave_intent.ts): nobody answers its requests any more. Only a
      // prefetch can get here (the app's views are detached before a close starts): it is
      // rejected with ERR_DSM_CLOSED when the service stops.
      this.parked.push(slot);
      return;
    }
    const waiting = this.faults.get(page);
    if (waiting) {
      // The handler looks again once woken: a write joining a read fetch asks again then.
      waiting.push(slot);
      return;
    }
    const handing = this.busy.get(page);
    if (handing) {
      // This node is handing the page on (or holding it for the migratory hold), with
      // requests from other nodes held meanwhile. The fault waits for that to end and then
      // looks again: started now, it would take the page over from the hand-over under way
      // and forget the held requests (their nodes waited forever).
      let q = this.afterBusy.get(page);
      if (!q) this.afterBusy.set(page, (q = []));
      q.push(slot);
      return;
    }
    if (n.table.states[page] !== 0 && (!write || m & MODEL_HERE)) {
      this.wake(slot);
      return;
    }
    const owner = n.table.owners[page];
    if ((owner === n.id && n.table.states[page] === 0) || owner === LOST_OWNER) {
      // Made owner by a recovery without a copy, or decided lost: the data died with its owner.
      this.lose(page, owner !== LOST_OWNER);
      this.wake(slot);
      return;
    }
    this.faults.set(page, [slot]);
    this.busy.set(page, []);
    if (owner !== n.id && !n.members.has(owner)) {
      // The hint names a node that is gone; the page may well have moved on from it.
      this.search.start(page, write);
      return;
    }
    if (owner === n.id) {
      // The owner writes: its readers' copies go first, with those of the pages after it
      // that it owns (a writer moving through an array writes them next: one round trip
      // instead of one per page), of the same generation (an invalidation names one).
      let end = page + 1;
      const generation = this.modelTable.generationOf(page);
      while (end < page + INVALIDATE_RUN && end < n.config.numPages && (this.models[end] & MODEL_MASK) === PageModel.sequential &&
        this.modelTable.generationOf(end) === generation &&
        n.table.owners[end] === n.id && n.table.states[end] !== 0 && !this.busy.has(end) && !this.faults.has(end)) {
        this.busy.set(end, []);
        end++;
      }
      this.pushes.rememberReaders(page, end);
      this.invalidations.send(page, end - page, n.id, undefined, () => {
        // Not if the block was freed meanwhile: the fault looks again under the new model.
        for (let q = page; q < end; q++) if (this.modelTable.generationOf(q) === generation) n.native.ownSequential(q);
        for (let q = page + 1; q < end; q++) this.release(q);
        this.done(page);
      });
      return;
    }
    // Reads ask for the pages after this one too while they are not here and have the same
    // probable owner (a reader moving through an array reads them next).
    let count = 1;
    if (!write) {
      while (count < readAhead && page + count < n.config.numPages && (this.models[page + count] & MODEL_MASK) === PageModel.sequential &&
        n.table.states[page + count] === 0 && n.table.owners[page + count] === owner && !this.faults.has(page + count)) count++;
    }
    this.asked.set(page, { to: owner, write });
    this.send(owner, { page, requester: n.id, write, hops: 0, count });
    this.unanswered.sent(page);
  }

  /**
   * This node announced it leaves: members drop its requests from now on, so the fetches
   * under way end here. Their waiters are parked (fault), and requests of other nodes held
   * meanwhile are served, forwarded along the hints. A grant already on its way is still
   * taken (onReply) and handed over with the rest.
   */
  stopFetching(): void {
    this.parked ??= [];
    for (const page of [...this.asked.keys()]) {
      this.parked.push(...(this.faults.get(page) ?? []));
      this.faults.delete(page);
      this.asked.delete(page);
      this.search.forget(page);
      this.unanswered.answered(page);
      this.release(page);
    }
  }

  /** Set once this node leaves: the waiters of faults nobody will answer. */
  private parked?: Waiter[];

  private unansweredFor(page: number): void {
    const a = this.asked.get(page);
    if (this.n.closing || !a || a.to === SEARCHING) return;
    this.n.ev.log('warn', `no answer for sequential page ${page} within ${ASK_RETRY_MS} ms; asking every member`);
    this.search.start(page, a.write);
  }

  /**
   * A sequential page whose data is gone (its owner died): the faulting thread goes on over
   * a zero page of this node's own (owner LOST_OWNER: served to nobody), and the app gets
   * ERR_DSM_PAGE_LOST from its next call. `decided`: this node found the loss, and tells
   * every member.
   */
  private lose(page: number, decided: boolean): void {
    this.n.ev.log('warn', `sequential page ${page} was lost with the node that owned it`);
    // A grant waiting for its declaration is the page's only copy; a search that ran out
    // meanwhile decided the page lost, and so it stays, here as everywhere.
    this.ahead.delete(page);
    this.loss.record(page, decided);
    this.pushes.dropped(page);
    this.n.native.markLost(page);
    this.n.native.installSequential(page, null, true, LOST_OWNER);
  }

  private send(to: number, r: SeqRequest): void {
    this.n.links.send(to, Msg.SeqRequest, encodeRequest(r));
  }

  /** SeqRequest. */
  onRequest(from: number, p: Buffer): void {
    this.serve(decodeRequest(from, p, this.n.config.numPages));
  }

  private serve(r: SeqRequest): void {
    const n = this.n;
    // Our own request, led back here after we got the page another way (a request re-sent
    // after a member died): nothing to do.
    // One about to leave is answered as one that left: anything it got now it could take
    // along after listing its pages (leave_intent.ts).
    if (!n.members.has(r.requester) || r.requester === n.id || n.leaving.intent.intends(r.requester)) return;
    // The app's lent-token commits first, as for transactional pages (page_serving.ts): the
    // page may point into a block one allocated, and the commit must arrive first.
    n.commits.drainLocal();
    const m = this.models[r.page] & MODEL_MASK;
    if (m === PageModel.local) return this.reply(r.requester, r.page, ReplyStatus.local, undefined);
    if (this.search.has(r.page) && !this.search.holds(r)) return this.search.notOwner(r);
    const held = this.busy.get(r.page);
    if (held) {
      held.push(r);
      return;
    }
    const owner = n.table.owners[r.page];
    if (owner === LOST_OWNER) {
      // Asked by a search too: the searcher learns of the loss at once.
      this.reply(r.requester, r.page, ReplyStatus.lost, undefined);
      return;
    }
    // Not the owner, and either asked by a search (only the owner answers with the page) or
    // the hints lead through a node that is gone: the requester searches every member.
    if (owner !== n.id && (r.search || !n.members.has(owner))) return this.search.notOwner(r);
    if (owner !== n.id || (m !== PageModel.sequential && m !== PageModel.migratory)) {
      // Freed here (transactional again, the hint naming this node, its last owner): the
      // requester's fault ends when the free reaches it (modelChanged). Forwarded to this
      // node itself, the request waited for good in the queue of a connection that never
      // comes, and so did a search's (test: model_changes.test.ts).
      if (owner === n.id) return;
      if (r.hops >= MAX_HOPS || owner === r.requester) {
        n.ev.log('warn', `a sequential page request for page ${r.page} from node ${r.requester} found no owner (hint ${owner}); dropped`);
        return;
      }
      this.counts.forwarded++;
      this.send(owner, { ...r, hops: r.hops + 1 });
      return;
    }
    if (n.table.states[r.page] === 0) {
      // Made owner by a recovery without a copy: the data died with its owner.
      n.native.dropSequential(r.page, LOST_OWNER);
      this.loss.record(r.page, true);
      this.reply(r.requester, r.page, ReplyStatus.lost, undefined);
      return;
    }
    if (m === PageModel.migratory) {
      // Any access moves a migratory page, but not before it has been here MIGRATORY_HOLD_MS:
      // two nodes taking turns on it would otherwise move it on every access (thrashing).
      const held = performance.now() - (this.arrived.get(r.page) ?? -Infinity);
      if (held < MIGRATORY_HOLD_MS) {
        this.busy.set(r.page, [r]);
        setTimeout(() => this.release(r.page), MIGRATORY_HOLD_MS - held);
        return;
      }
      r = { ...r, write: true, count: 1 };
    }
    if (!r.write) {
      // The pages asked for after the first: those owned here, in a row, not being moved.
      let count = 1;
      while (count < r.count && r.page + count < n.config.numPages && (this.models[r.page + count] & MODEL_MASK) === PageModel.sequential &&
        n.table.owners[r.page + count] === n.id && n.table.states[r.page + count] !== 0 && !this.busy.has(r.page + count)) count++;
      const data = new Uint8Array(count * n.config.pageSize);
      for (let i = 0; i < count; i++) {
        const q = r.page + i;
        this.counts.readFetches++;
        n.native.shareSequential(q, this.page, false, 0);
        data.set(this.page, i * n.config.pageSize);
        let c = this.copies.get(q);
        if (!c) this.copies.set(q, (c = new Set()));
        c.add(r.requester);
        this.pushes.served(q, r.requester);
      }
      this.reply(r.requester, r.page, ReplyStatus.read, data);
      return;
    }
    this.counts.ownershipMoves++;
    this.busy.set(r.page, []);
    // A requester that says it leaves meanwhile gets this grant all the same (its copy
    // holders are told it is the owner), then the acknowledgement, in that order.
    n.leaving.intent.grantStarted(r.requester);
    const generation = this.modelTable.generationOf(r.page);
    this.invalidations.send(r.page, 1, r.requester, r.requester, () => {
      // Freed (and perhaps allocated again by another node) while the copies went: there is
      // nothing of this node's to hand on. Sent all the same, the grant carried whatever this
      // buffer held last under the new life's generation, and its receiver became a second
      // owner beside the new allocator (test: stale_messages.test.ts). The requester's fault
      // ended with the free (modelChanged) and asks again under the new model.
      if (this.modelTable.generationOf(r.page) === generation && n.native.shareSequential(r.page, this.page, true, r.requester)) {
        this.reply(r.requester, r.page, ReplyStatus.owner, this.page);
      }
      n.leaving.intent.grantSent(r.requester);
      this.release(r.page);
    });
  }

  /** A connection to member `id` was bound again: what may have gone down with the one before is asked again. */
  linkBound(id: number): void {
    this.search.linkBound(id);
    this.invalidations.linkBound(id);
  }

  /**
   * A member left (its configuration applied): it holds no copy to acknowledge any more,
   * and every request of this node's that is still unanswered becomes a search.
   */
  memberGone(id: number): void {
    this.invalidations.memberGone(id);
    for (const c of this.copies.values()) c.delete(id);
    this.pushes.memberGone(id);
    this.search.memberGone(id);
    for (const [page, a] of [...this.asked]) {
      if (a.to === SEARCHING) continue;
      const owner = this.n.table.owners[page];
      if (a.to === id && (owner === this.n.id || owner === LOST_OWNER)) {
        this.lose(page, owner === this.n.id);
        this.done(page);
        continue;
      }
      // Forwarded along the hints, the request may have passed through the node that left
      // and gone down with its connections (seen with nodes closing under a lock's churn).
      // Asked again along the hints, it could go the same way: a node that has not applied
      // this configuration yet forwards it into the node that left as before, and drops it
      // with the node's queue when it does apply it (the members apply a configuration some
      // milliseconds apart under load, a request goes from one to another in less). A search
      // is forwarded by nobody: each member answers it itself, and one that leaves is no
      // longer waited for. An owner serves a request asked twice like any other, and
      // answers nobody waits for any more are dropped (onReply).
      this.search.start(page, a.write);
    }
  }

  private reply(to: number, page: number, status: ReplyStatus, data: Uint8Array | undefined): void {
    this.n.links.send(to, Msg.SeqReply, encodeReply(page, status, this.modelTable.generationOf(page), data));
  }

  /** SeqReply. */
  onReply(from: number, p: Buffer): void {
    const r = decodeReply(p, this.n.config.numPages);
    if (r.status > ReplyStatus.copy) throw new WireError(`a sequential page reply has an unknown status ${r.status}`);
    if (r.status === ReplyStatus.owner && this.heldForTest.hold('grant', r.page, () => this.takeReply(from, r))) return;
    this.takeReply(from, r);
  }

  /**
   * A reply, in the life of its page it was sent in. A grant from an earlier life (its
   * sender handed the page on, then the block was freed and allocated again here, all
   * before the grant arrived) would make this node a second owner beside the new
   * allocator, holding the freed block's contents: its reads would never see the new
   * owner's writes (test: stale_messages.test.ts). A reply from a later life than this node
   * knows waits for the declaration that began it: its sender has taken it in, and an
   * ownership grant dropped now would lose the page.
   */
  private takeReply(from: number, r: SeqReply): void {
    const n = this.n;
    const { page, status, data } = r;
    const known = this.modelTable.generationOf(page);
    if (r.generation < known) {
      this.counts.staleReplies++;
      if (status === ReplyStatus.owner) n.ev.log('warn', `node ${from} handed this node sequential page ${page} of a block freed since; dropped (the block's new owner has it)`);
      return;
    }
    if (r.generation > known) {
      this.counts.laterReplies++;
      this.heldForTest.laterReply();
      let q = this.ahead.get(page);
      if (!q) this.ahead.set(page, (q = []));
      q.push({ from, r });
      return;
    }
    // Ownership is taken even when no fault waits for it any more (a re-sent request's
    // second answer): the sender has dropped its copy, so refusing would lose the page.
    if (!this.faults.has(page) && status !== ReplyStatus.owner) return;
    // Freed since it was asked for (modelChanged ended the fault): nothing to install or own.
    if ((this.models[page] & MODEL_MASK) === PageModel.transactional) return;
    if (status === ReplyStatus.notOwner || status === ReplyStatus.copy) {
      this.search.answered(from, page, status);
      return;
    }
    if (status === ReplyStatus.lost) {
      this.lose(page, false);
    } else if (status === ReplyStatus.local) {
      this.counts.localRefused++;
      n.native.refuseLocal(page);
    } else {
      const ps = n.config.pageSize;
      const count = data.length / ps;
      const own = status === ReplyStatus.owner;
      if (own) this.arrived.set(page, performance.now());
      if (!Number.isInteger(count) || count < 1 || (own && count !== 1) || page + count > n.config.numPages) {
        throw new WireError('a sequential page reply has the wrong size');
      }
      this.pushes.dropped(page);
      n.native.installSequential(page, data.subarray(0, ps), own, own ? n.id : from);
      // Read-ahead copies: installed unless this node holds the page already (or is taking it).
      for (let i = 1; i < count; i++) {
        const q = page + i;
        if (n.table.states[q] === 0 && !this.busy.has(q) && (this.models[q] & MODEL_MASK) === PageModel.sequential) {
          n.native.installSequential(q, data.subarray(i * ps, (i + 1) * ps), false, from);
        }
      }
    }
    this.done(page);
  }

  /** The page is here as the faults wanted: wake them, then serve what waited. */
  private done(page: number): void {
    const slots = this.faults.get(page) ?? [];
    this.faults.delete(page);
    this.asked.delete(page);
    this.search.forget(page);
    this.unanswered.answered(page);
    for (const s of slots) this.wake(s);
    this.release(page);
  }

  private release(page: number): void {
    const q = this.busy.get(page);
    this.busy.delete(page);
    if (q) for (const r of q) this.serve(r);
    // Faults here that waited for the hand-over look again (and wait again if a held
    // request started another).
    const slots = this.afterBusy.get(page);
    if (slots) {
      this.afterBusy.delete(page);
      for (const s of slots) this.wake(s);
    }
  }

  modelChanged(page: number, model: number, time: number): void {
    if (model === PageModel.transactional) this.copies.delete(page);
    // Replies that waited for this declaration are taken in (or found stale) before the
    // faults it ends look again: a grant among them is the page they wait for.
    this.heldForTest.modelChanged(page, model);
    const ahead = this.ahead.get(page);
    if (ahead) {
      this.ahead.delete(page);
      process.nextTick(() => {
        for (const a of ahead) this.takeReply(a.from, a.r);
      });
    }
    // A fault asking for the page under its old model ends, as pager.modelChanged ends a
    // transactional fetch: the faulting thread looks again and finds the new model (freed:
    // a transactional page here; allocated again: asks its new owner). Nothing else would
    // end it: its request may reach the old owner after that node freed the page too, and
    // no node answers for a freed page (a node's read of a block another node freed
    // waited for good; test: model_changes.test.ts). Next tick: this node's own commit
    // declares its changes while the app's commit ring is drained, and serving the requests
    // the fault held drains that ring again.
    if (this.faults.has(page)) process.nextTick(() => this.faults.has(page) && this.done(page));
    this.loss.changed(page, time);
    this.arrived.delete(page);
    this.pushes.freed(page);
  }

  forgetAll(): void {
    this.ahead.clear();
    this.heldForTest.clear();
    this.copies.clear();
    this.pushes.clear();
    this.arrived.clear();
  }

  /** What the protocol waits on (a stuck cluster's diagnosis): pages and who was asked. */
  debugState(): Record<string, unknown> {
    const t = this.n.table;
    const page = (p: number) => ({ page: p, state: t.states[p], owner: t.owners[p], model: this.models[p] });
    return {
      faults: [...this.faults.keys()].map((p) => ({ ...page(p), slots: this.faults.get(p)!.length, asked: this.asked.get(p) })),
      busy: [...this.busy.keys()].map((p) => ({ ...page(p), held: this.busy.get(p)!.map((r) => `${r.requester}${r.write ? 'w' : 'r'}`), faults: this.afterBusy.get(p)?.length ?? 0 })),
      copies: [...this.copies].slice(0, 32).map(([p, c]) => ({ page: p, holders: [...c] })),
      acks: this.invalidations.debugState(),
      pushes: this.pushes.debugState(),
    };
  }
}
