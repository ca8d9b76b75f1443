// Page fetching: a fault on a page that is not valid here asks the page's owner for it,
// with read-ahead for sequential faults and a scan kept requested ahead; an owner that is
// silent makes the request a search of every member. A page is never decided lost here:
// a fetch nobody can answer waits for the configuration that moves the page to a survivor
// or decides it lost (membership.ts), and only then fails.
import { decode, encode, LOST_OWNER, Msg, PageStatus } from './protocol';
import { WireError } from './wire';
import { debug } from './debug';
import type { Cluster } from './cluster';

interface PendingFetch {
  page: number;
  slots: number[];
  /** Nodes asked in a search that have not answered yet. */
  searching?: Set<number>;
  /** The member the request went to (not a search): asked again elsewhere if it leaves or is removed first. */
  to?: number;
  /** Asks again if no answer comes: a request forwarded to a node as it died is lost. */
  timer?: NodeJS.Timeout;
  /** Pages asked for, from `page` on (read-ahead). */
  count: number;
  /** Nobody answered: waiting for the owner to come back or a configuration to decide. */
  parked?: boolean;
  /** Run when the fetch ends (fetchFor). */
  done?: Array<() => void>;
  /** The program asked for it (dsm.prefetch): a loss is reported to it as a fault's is. */
  report?: boolean;
}

/** Request ids from here up are the faulting thread's own (native/fault_routes.h); the service's stay below. */
const FAULT_SENT_IDS = 0x80000000;
/** Replies to the faulting thread's requests heard before their fault reached the service, kept this many at most. */
const EARLY_MAX = 256;

/** A page request unanswered this long is asked of every member instead. */
const FETCH_RETRY_MS = 1000;
/** Most pages one read-ahead request asks for (256 KiB with 4 KiB pages). */
export const READ_AHEAD_MAX = 256;
/** How many pages ahead of a sequential scan are kept requested. */
export const SCAN_AHEAD = 4 * READ_AHEAD_MAX;

export class Pager {
  private readonly fetches = new Map<number, PendingFetch>();
  /** Per page: the request fetching it, 0 for none (a typed array: a scan sets and clears 256 at a time). */
  private readonly fetchByPage: Uint32Array;
  private nextReq = 1;
  /**
   * Replies to requests the faulting thread sent itself, heard before the service took the
   * fault from the ring: 'replied' (a page reply, installed or crossed by a newer commit),
   * or the status of a reply that brought no page.
   */
  private readonly early = new Map<number, 'replied' | number>();
  /** The page a sequential scan faults on next, and the current read-ahead window. */
  private nextExpected = -1;
  private window = 1;
  /** The end of the pages a sequential scan has requested ahead, and where it was last seen. */
  private aheadTo = -1;
  private scanAt = -1;
  remoteFetches = 0;

  constructor(private readonly n: Cluster) {
    this.fetchByPage = new Uint32Array(n.table.states.length);
  }

  /**
   * A fault on a page that is not valid here: fetch it from its owner. `sent`: the faulting
   * thread already sent the request, with this id (native/fault_routes.h).
   */
  fetch(slot: number, page: number, sent = 0): void {
    const { native, table } = this.n;
    const early = sent ? this.early.get(sent) : undefined;
    if (sent) this.early.delete(sent);
    if (table.states[page] !== 0) {
      // Installed while this request waited in the ring (a reply was handled first).
      native.completeRequest(slot);
      if (this.window === READ_AHEAD_MAX) this.keepAhead(page);
      return;
    }
    if (sent && early !== 'replied' && this.fetchByPage[page] === 0) {
      // Its request is on its way: keep the books (retries, a reply over the main
      // connection, a loss) as if it had been sent here. A scan is not one: its next fault
      // is the service's, with read-ahead.
      // (Counted where it was sent: the native counter, see Cluster.remoteFetches.)
      this.fetches.set(sent, { page, slots: [slot], count: 1 });
      this.fetchByPage[page] = sent;
      this.setWindow(1);
      this.nextExpected = page + 1;
      const owner = table.owners[page];
      const f = this.fetches.get(sent)!;
      if (early !== undefined || !this.n.members.has(owner) || this.n.membership.suspects.has(owner)) this.search(sent);
      else if (this.n.leaving.leavers.has(owner) || this.n.data.channelTo(owner) === undefined) {
        // Sent on a data channel to a node that has left since (its successor has the page),
        // or on one that closed since: it may have gone down with it. Ask now, not in 1 s.
        this.ask(sent);
      } else {
        f.to = owner;
        this.armRetry(sent);
      }
      return;
    }
    const existing = this.fetchByPage[page];
    if (existing !== 0) {
      this.fetches.get(existing)!.slots.push(slot);
      // The scan reached what was fetched ahead: keep the pages after it coming.
      if (this.window === READ_AHEAD_MAX) this.keepAhead(page);
      return;
    }
    const version = Number(table.versions[page]);
    const owner = table.owners[page];
    if (version === 0) {
      native.install(page, null, 0, owner);
      native.completeRequest(slot);
      return;
    }
    if (owner === LOST_OWNER) {
      this.failLost(page);
      native.completeRequest(slot);
      return;
    }
    // Sequential faults double the read-ahead window; anything else resets it.
    this.setWindow(page === this.nextExpected ? Math.min(READ_AHEAD_MAX, this.window * 2) : 1);
    const count = this.request(page, [slot], this.window);
    this.nextExpected = page + count;
    this.aheadTo = page + count;
    this.scanAt = page;
    if (this.window === READ_AHEAD_MAX) this.keepAhead(page);
  }

  /** The read-ahead window; beyond one page a scan is on, and faults leave their requests to us (native/fault_routes.h). */
  private setWindow(w: number): void {
    if (w > 1 !== this.window > 1) this.n.native.faultsScanning(w > 1);
    this.window = w;
  }

  /**
   * Fetches `page` for the service itself (a backup taking a page it lacks, replication.ts),
   * or for dsm.prefetch (`report`: a loss is the program's to hear of); `done` runs once the
   * fetch has ended, whether it installed the page or not.
   */
  fetchFor(page: number, done: () => void, report = false): void {
    const { native, table } = this.n;
    if (table.states[page] !== 0 || table.owners[page] === LOST_OWNER) return done();
    const existing = this.fetchByPage[page];
    if (existing !== 0) {
      const f = this.fetches.get(existing)!;
      (f.done ??= []).push(done);
      if (report) f.report = true;
      return;
    }
    if (table.versions[page] === 0n) {
      native.install(page, null, 0, table.owners[page]);
      return done();
    }
    // With read-ahead: a backup lacking many pages of one commit asks for runs of them.
    this.request(page, [], READ_AHEAD_MAX, done, report);
  }

  /**
   * A sequential scan is at `page`: keep the next SCAN_AHEAD pages requested, in ranges of
   * READ_AHEAD_MAX, so several replies are on the wire while the scan reads (one range in
   * flight at a time leaves the link idle for a round trip per range).
   */
  private keepAhead(page: number): void {
    const { table } = this.n;
    this.scanAt = page;
    const end = Math.min(this.n.config.numPages, page + SCAN_AHEAD);
    let p = Math.max(this.aheadTo, page + 1);
    while (p < end) {
      if (this.fetchByPage[p] !== 0 || table.states[p] !== 0 || table.versions[p] === 0n || table.owners[p] === LOST_OWNER) p++;
      else p += this.request(p, [], READ_AHEAD_MAX);
    }
    this.aheadTo = Math.max(this.aheadTo, p);
    this.nextExpected = this.aheadTo;
  }

  /** Sends one page request for up to `window` pages from `page`; returns how many it covers. */
  private request(page: number, slots: number[], window: number, done?: () => void, report = false): number {
    const n = this.n;
    const { table } = n;
    const owner = table.owners[page];
    let count = 1;
    // Read ahead over pages that are invalid here and owned by the same node (never lost ones:
    // read-ahead must not report a loss the program did not ask about).
    while (count < window && page + count < n.config.numPages && table.states[page + count] === 0 &&
      table.owners[page + count] === owner && this.fetchByPage[page + count] === 0) count++;
    const reqId = this.nextReq;
    this.nextReq = this.nextReq + 1 < FAULT_SENT_IDS ? this.nextReq + 1 : 1; // 0 means none
    this.fetches.set(reqId, { page, slots, count, done: done && [done], report });
    this.fetchByPage.fill(reqId, page, page + count);
    this.remoteFetches++;
    if (owner === LOST_OWNER) {
      this.parkOrFail(reqId);
      return count;
    }
    this.ask(reqId);
    return count;
  }

  /**
   * Whom to ask for a page whose owner hint is `owner`: a node that said it leaves has
   * handed its pages to its successor (it says Leave only once they are acknowledged), and
   * what is sent to it from then on is lost with its connections. Undefined: search.
   */
  private askable(owner: number): number | undefined {
    const n = this.n;
    const to = n.leaving.leavers.has(owner) ? n.leaving.successorOf(owner) : owner;
    if (to === undefined || to === n.id || !n.members.has(to) || n.membership.suspects.has(to)) return undefined;
    return to;
  }

  /** Sends fetch `reqId`'s request to its page's owner (its successor, if it left), or searches. */
  private ask(reqId: number): void {
    const n = this.n;
    const f = this.fetches.get(reqId)!;
    const to = this.askable(n.table.owners[f.page]);
    if (to === undefined) {
      this.search(reqId);
      return;
    }
    f.to = to;
    f.parked = false;
    f.searching = undefined;
    this.armRetry(reqId);
    // On the owner's data channel when there is one: its native end answers, and the reply
    // comes back on it; else on the main connection (opening a channel for next time).
    const ch = n.data.channelTo(to);
    const req = { reqId, page: f.page, count: f.count, requester: n.id, time: n.log.applied, hops: 0, search: false, viaData: ch !== undefined };
    if (ch !== undefined && n.native.sendOnChannel(ch, Msg.PageRequest, encode.pageRequest(req))) return;
    if (ch === undefined) void n.data.open(to);
    n.links.send(to, Msg.PageRequest, encode.pageRequest({ ...req, viaData: false }));
    n.lease.requestSent(f.page);
  }

  /**
   * Member `id` left (its Leave), or the data channel to it closed: requests sent to it may
   * never be answered (a leaver ends its connections right after Leave, and what it answers
   * after that never arrives). Ask them again now, of whoever has the page now; a reply that
   * comes twice is dropped (finish).
   */
  reask(id: number): void {
    for (const [reqId, f] of [...this.fetches]) if (f.to === id && this.fetches.has(reqId)) this.ask(reqId);
  }

  /** The owner is gone or silent: ask every member we reach whether it holds the page's latest version. */
  private search(reqId: number): void {
    const n = this.n;
    const f = this.fetches.get(reqId)!;
    const others = [...n.members.keys()].filter((id) => id !== n.id && !n.membership.suspects.has(id));
    f.searching = new Set(others);
    f.to = undefined;
    f.parked = false;
    if (others.length === 0) {
      this.parkOrFail(reqId);
      return;
    }
    this.armRetry(reqId);
    for (const id of others) {
      n.links.send(id, Msg.PageRequest, encode.pageRequest({ reqId, page: f.page, count: 1, requester: n.id, time: n.log.applied, hops: 0, search: true }));
    }
  }

  /**
   * Nobody we reach has the page: if a configuration decided it lost, fail the fault (if one waits);
   * otherwise wait for the owner to answer or a configuration to decide (asking again now
   * and then: an answer can be lost with a connection).
   */
  private parkOrFail(reqId: number): void {
    const n = this.n;
    const f = this.fetches.get(reqId)!;
    if (n.isLost(f.page)) {
      // Reported to the program only when a fault waits: a read-ahead nobody waited on set
      // its sticky lost-page error for a page it never touched, and its next transaction
      // threw (a scan's read-ahead in flight as the owner died). A read-ahead ends with the
      // page still invalid (a fault on it later reports it); the service's own fetch (a
      // backup, the page store) gets the zero page, as it did.
      if (f.slots.length > 0 || f.report) this.failLost(f.page);
      else if (f.done) this.failLost(f.page, false);
      this.finish(reqId);
      return;
    }
    f.searching = undefined;
    f.to = undefined;
    f.parked = true;
    this.armRetry(reqId);
    // The configuration this fetch waits for is made under the token: never sit on it.
    n.commits.yieldHeldToken();
  }

  /**
   * A fault on a page a configuration decided lost (`report`; otherwise the service's own
   * fetch of it, which the program is not told of). The faulting thread must be able to go
   * on: it gets a zero page that stays lost (served to nobody, owner LOST_OWNER), the running
   * transaction is doomed and rejects with ERR_DSM_PAGE_LOST, and outside a transaction the
   * next DSM call raises it. A page the app is discarding (tx.discardLost) just starts from zero.
   */
  private failLost(page: number, report = true): void {
    const { native, table, ev } = this.n;
    if (report && !ev.discarding(page)) {
      ev.log('warn', `page ${page} was lost with the nodes that held it (version ${table.versions[page]})`);
      native.markLost(page);
    }
    native.install(page, null, Number(table.versions[page]), LOST_OWNER);
  }

  private armRetry(reqId: number): void {
    const f = this.fetches.get(reqId);
    if (!f) return;
    if (f.timer) clearTimeout(f.timer);
    f.timer = setTimeout(() => {
      if (!this.fetches.has(reqId) || this.n.closing) return;
      if (!f.parked) this.n.ev.log('warn', `no answer for page ${f.page} within ${FETCH_RETRY_MS} ms; asking every member`);
      this.search(reqId);
    }, FETCH_RETRY_MS);
    f.timer.unref();
  }

  finish(reqId: number): void {
    const f = this.fetches.get(reqId);
    if (!f) {
      if (reqId >= FAULT_SENT_IDS) this.heardEarly(reqId, 'replied');
      return;
    }
    if (f.timer) clearTimeout(f.timer);
    this.fetches.delete(reqId);
    for (let i = 0; i < f.count; i++) if (this.fetchByPage[f.page + i] === reqId) this.fetchByPage[f.page + i] = 0;
    for (const s of f.slots) this.n.native.completeRequest(s);
    if (f.done) for (const d of f.done) d();
  }

  private heardEarly(reqId: number, how: 'replied' | number): void {
    if (this.early.size >= EARLY_MAX) this.early.delete(this.early.keys().next().value!);
    this.early.set(reqId, how);
  }

  /** PageReply. */
  onReply(from: number, payload: Buffer): void {
    const n = this.n;
    const r = decode.pageReply(payload, n.config.pageSize);
    const f = this.fetches.get(r.reqId);
    if (!f) {
      if (r.reqId < FAULT_SENT_IDS) return;
      // A faulting thread's request, answered over the main connection (a forwarding owner's
      // reply) before its fault reached the service: install what came, note how it ended.
      if (r.status === PageStatus.ok && !r.pages.some((p) => p >= n.config.numPages)) {
        n.native.installPages(r.pages, r.versions, r.owners, r.data);
        n.log.hear(Math.max(0, ...r.versions));
        this.heardEarly(r.reqId, 'replied');
      } else this.heardEarly(r.reqId, r.status);
      return;
    }
    if (r.status === PageStatus.lost && n.isLost(f.page)) {
      this.parkOrFail(r.reqId);
      return;
    }
    if (r.status !== PageStatus.ok) {
      if (f.searching) {
        f.searching.delete(from);
        if (f.searching.size === 0) this.parkOrFail(r.reqId);
      } else if (!f.parked) {
        this.search(r.reqId);
      }
      return;
    }
    if (r.pages.some((p) => p >= n.config.numPages)) throw new WireError('a page reply names a page outside the region');
    if (debug.enabled) debug(`node ${n.id} got pages ${Array.from(r.pages).join(',')} versions ${Array.from(r.versions).join(',')}`);
    n.native.installPages(r.pages, r.versions, r.owners, r.data);
    let newest = 0;
    for (const v of r.versions) newest = Math.max(newest, v);
    n.log.hear(newest);
    // Installed, or refused because a newer commit crossed the reply: either way the
    // faulting thread looks again and, if needed, asks the new owner.
    this.finish(r.reqId);
    this.followScan();
  }

  /**
   * A scan reads installed pages without faulting, but trips on one page in every 64 (left
   * unmapped): keep the read-ahead going from where it has got to.
   */
  followScan(): void {
    if (this.window !== READ_AHEAD_MAX) return;
    const at = this.n.native.lastReadFault();
    if (at > this.scanAt && at < this.aheadTo) this.keepAhead(at);
  }

  /**
   * `page` took another model (a commit's allocation or free arrived): a fetch of it as a
   * transactional page ends here, and its faulting threads look again. Its holders now
   * answer that they hold no such page, and the fetch searched and waited for good: a run
   * that allocated the page while another node's allocation of it was on its way, and
   * wrote it (its writes go to scratch memory once it sees the page's new model).
   */
  modelChanged(page: number): void {
    const reqId = this.fetchByPage[page];
    if (reqId !== 0) this.finish(reqId);
  }

  /** A configuration moved pages or decided them lost: fetches waiting go to the new owners, or fail. */
  configurationChanged(): void {
    const n = this.n;
    for (const [reqId, f] of [...this.fetches]) {
      if (!this.fetches.has(reqId)) continue;
      const owner = n.table.owners[f.page];
      if (owner === LOST_OWNER) this.parkOrFail(reqId);
      // Parked or searching, or asked of a node this configuration removed (it left or died
      // with the request): ask the owner it names.
      else if (f.parked || f.searching || (f.to !== undefined && !n.members.has(f.to))) this.ask(reqId);
    }
  }

  debugState(): Array<Record<string, unknown>> {
    return [...this.fetches.values()].map((f) => ({
      page: f.page,
      slots: f.slots.length,
      searching: f.searching ? [...f.searching] : undefined,
      parked: f.parked,
      ...this.n.pageInfo(f.page),
    }));
  }
}
