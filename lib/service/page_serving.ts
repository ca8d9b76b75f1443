// Page serving: answers members' page requests from the committed copy of each page,
// forwarding requests for pages this node no longer owns to their owner. These rules are
// the reference: a data channel's native end (native/data_channel.h) answers the requests
// they would answer with the page, under the two facts published to it (the lease, and the
// applied time: see Dsm::ServeCommitted), and hands every other request here. Replies from
// here go over the main connection; a requester that reads it slower than we answer gets
// its requests held (a few, in order) until it drains, instead of replies piling up.
import { decode, encode, Msg, pageReplySize, type PageRequest, PageStatus } from './protocol';
import { BufferPool } from './buffer_pool';
import { debug } from './debug';
import { READ_AHEAD_MAX, SCAN_AHEAD } from './pager';
import type { Cluster } from './cluster';

/** A request forwarded more often than this is answered "not here" (stale owner hints). */
const MAX_HOPS = 8;
const NONE_U32 = new Uint32Array(0);
const NONE_F64 = new Float64Array(0);
const NONE_U16 = new Uint16Array(0);
/**
 * Requests held per backlogged requester: a scan's read-ahead window and then some. Beyond
 * it requests are dropped; the requester's retry timer asks again.
 */
export const HELD_REQUESTS_MAX = 2 * (SCAN_AHEAD / READ_AHEAD_MAX) + 8;
/** Requests held at most, from every requester together, while this node's lease is not valid. */
const LEASE_HELD_MAX = 1024;

export class PageServing {
  /** Buffers for full-size page replies (a scan's ranges), reused once written. */
  private readonly replyBuffers: BufferPool;
  forwarded = 0;
  /** Requests held for requesters whose connection is backlogged, by requester. */
  private readonly held = new Map<number, PageRequest[]>();
  /** Requests ever held, and dropped for a full hold (dsm stats). */
  heldTotal = 0;
  heldDropped = 0;
  /** Requests dropped while this node's lease had run out: it was partitioned, or too many waited (see serve). */
  withoutLease = 0;
  /** Requests that waited for this node's lease before they were served (or dropped), ever. */
  leaseHeldTotal = 0;
  private leaseWaiting = 0;

  /** Requests held now, for every requester. */
  get heldCount(): number {
    let k = 0;
    for (const q of this.held.values()) k += q.length;
    return k;
  }

  constructor(private readonly n: Cluster) {
    this.replyBuffers = new BufferPool(pageReplySize(READ_AHEAD_MAX, n.config.pageSize), SCAN_AHEAD / READ_AHEAD_MAX + 2);
  }

  /** PageRequest. */
  onRequest(from: number, payload: Buffer): void {
    const req = decode.pageRequest(payload);
    // A request names its requester so forwarding members can relay it; one that was not
    // forwarded is from the member whose connection it came on, whatever id it names.
    if (req.hops === 0 && req.requester !== from) throw new Error(`a page request naming node ${req.requester} came from node ${from}`);
    this.serve(req);
  }

  private serve(req: PageRequest): void {
    const n = this.n;
    const { table, config } = n;
    if (req.page >= config.numPages) throw new Error(`page ${req.page} is outside the region`);
    if (!n.members.has(req.requester)) return; // relayed for a node no longer in the configuration
    // Without a lease this node may have been stalled or cut off while a recovery replaced
    // its token, and its latest copies may be void commits it has not heard are void yet: a
    // member that fetched one built on it. So the request waits for the lease, which this
    // node only gets back once it has taken in any such recovery (lease.ts), and is served
    // then. Joins open that window for a moment: a founder alone, or with one joiner, is a
    // quorum (the tie-break), and once a second joiner is a member it needs one of the
    // joiners' answers to a ping; a joiner's first fault came before that answer in 2 of 8
    // three-node starts, and, dropped then, waited 1 s for its retry.
    if (!n.lease.valid()) {
      this.waitForLease(req);
      return;
    }
    if (debug.enabled) debug(`node ${n.id} serve page ${req.page} to ${req.requester}: owner ${table.owners[req.page]} state ${table.states[req.page]} version ${table.versions[req.page]}`);
    // Broadcast the app's lent-token commits first, so the commit reaches the requester
    // before the page it made (same connection, in order).
    n.commits.drainLocal();
    if (n.isLost(req.page)) {
      // A zero copy of a lost page may be here (a fault had to go on): it is no data.
      n.links.send(req.requester, Msg.PageReply, encode.pageReply({ reqId: req.reqId, page: req.page, status: PageStatus.lost, pages: NONE_U32, versions: NONE_F64, owners: NONE_U16 }, config.pageSize));
      return;
    }
    const owner = table.owners[req.page];
    // Pages of the other models are served by their own protocol (sequential.ts), and a
    // local page never leaves its node: never from here.
    const here = table.states[req.page] !== 0 && !n.sequential.handles(req.page);
    if (!req.search && owner !== n.id && n.members.has(owner) && req.hops < MAX_HOPS && owner !== req.requester) {
      this.forwarded++;
      n.links.send(owner, Msg.PageRequest, encode.pageRequest({ ...req, hops: req.hops + 1 }));
      return;
    }
    if (!here) {
      n.links.send(req.requester, Msg.PageReply, encode.pageReply({ reqId: req.reqId, page: req.page, status: PageStatus.notHere, pages: NONE_U32, versions: NONE_F64, owners: NONE_U16 }, config.pageSize));
      return;
    }
    // Over the main connection, also for a request that came on a data channel: its native
    // end answers what it can itself, and hands over only what it may not.
    if (n.links.isBacklogged(req.requester)) {
      this.hold(req);
      return;
    }
    const max = Math.min(req.count, READ_AHEAD_MAX, config.numPages - req.page);
    let count = 1;
    // Read-ahead pages: only those this node owns and holds, so every copy sent is current.
    while (count < max) {
      const p = req.page + count;
      if (table.states[p] === 0 || table.owners[p] !== n.id || table.versions[p] === 0n || n.sequential.handles(p)) break;
      count++;
    }
    const pages = new Uint32Array(count);
    const versions = new Float64Array(count);
    const owners = new Uint16Array(count);
    for (let i = 0; i < count; i++) {
      const p = req.page + i;
      pages[i] = p;
      versions[i] = Number(table.versions[p]);
      owners[i] = table.owners[p];
    }
    const pooled = count === READ_AHEAD_MAX ? this.replyBuffers.take() : undefined;
    const reply = encode.pageReply(
      { reqId: req.reqId, page: req.page, status: PageStatus.ok, pages, versions, owners },
      config.pageSize,
      (data) => n.native.copyCommittedPages(pages, data),
      pooled,
    );
    const done = pooled && (() => this.replyBuffers.give(pooled));
    n.links.send(req.requester, Msg.PageReply, reply, done);
  }

  /**
   * Serves `req` once this node's lease is valid again. Dropped when this node finds itself
   * partitioned (the requester searches the other members after FETCH_RETRY_MS), or when
   * LEASE_HELD_MAX requests wait already.
   */
  private waitForLease(req: PageRequest): void {
    if (this.leaseWaiting >= LEASE_HELD_MAX) {
      this.withoutLease++;
      return;
    }
    this.leaseWaiting++;
    this.leaseHeldTotal++;
    void this.n.lease.whenValid().then(
      () => {
        this.leaseWaiting--;
        if (this.n.closing) return;
        try {
          this.serve(req);
        } catch (e) {
          this.n.ev.log('warn', `dropped node ${req.requester}'s request for page ${req.page}: ${(e as Error).message}`);
        }
      },
      () => {
        this.leaseWaiting--;
        this.withoutLease++;
      },
    );
  }

  /** Holds `req` until the requester's connection drains. */
  private hold(req: PageRequest): void {
    this.heldTotal++;
    let q = this.held.get(req.requester);
    if (q) {
      if (q.length >= HELD_REQUESTS_MAX) this.heldDropped++;
      else q.push(req);
      return;
    }
    this.held.set(req.requester, (q = [req]));
    const drained = this.n.links.whenDrained(req.requester);
    void drained.then(() => {
      this.held.delete(req.requester);
      // Served in order; one that finds the connection backlogged again is held again.
      // Replies to a member gone meanwhile are dropped by the links.
      if (!this.n.closing) for (const r of q) this.serve(r);
    });
  }
}
