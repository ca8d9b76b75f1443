// Leaving gracefully. With other members left, the lowest takes over: under the token (no
// commit can interleave), it receives every page this node owns and acknowledges them; the
// leaver tells everyone it leaves (so its closing connections are no failure), passes the
// token to the successor, and the successor commits the configuration without it, moving
// those pages to itself. (The leaver cannot commit that configuration itself: members apply
// it by closing their connections to it, which would drop the token following it.) Before
// that, the successor takes the leaver's sequential and migratory pages through their own
// protocol (SeqTakeOver), as a writer would; and before that, the leaver tells every member
// it is about to leave (leave_intent.ts), so no ownership can reach it after it listed its pages.
import { decode, encode, LOST_OWNER, Msg, PageStatus, type TokenState } from './protocol';
import { WireError } from './wire';
import { READ_AHEAD_MAX } from './pager';
import { decodeTakeOver, encodeTakeOver } from './sequential_wire';
import { MODEL_MASK, PageModel } from '../native';
import type { Cluster } from './cluster';
import { LeaveIntent } from './leave_intent';

/**
 * How long each step of a graceful leave's hand-over (the token, a batch of pages read by
 * the successor, its acknowledgement) may take before the node closes anyway.
 */
const HANDOVER_MS = 30_000;
/** Test hook: a successor commits the configuration without its leaver this long after the leaver's Leave. */
const REMOVAL_LATE_MS = Number(process.env.DSM_TEST_LEAVER_REMOVAL_LATE_MS) || 0;

/** Resolves once `p` has, or after `ms` (a step of the leave that may wait for a stalled member goes on without it). */
async function atMost(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

export class Leaving {
  private handoverAcked?: () => void;
  /** Successor side: the pages each leaver handed over. */
  private readonly handedOver = new Map<number, number[]>();
  /** Members that said they leave: their connections closing is no failure. */
  readonly leavers = new Set<number>();
  /** The member each leaver named in its Leave: it has the leaver's pages. */
  private readonly successors = new Map<number, number>();
  /** This node is leaving: the configuration without it is expected, not a removal. */
  active = false;
  /** Who said they are about to leave, and this node's own round of saying so. */
  readonly intent: LeaveIntent;

  constructor(private readonly n: Cluster) {
    this.intent = new LeaveIntent(n);
  }

  /** Hands this node's pages and the token over, then tells everyone it left. */
  async leave(): Promise<void> {
    const n = this.n;
    // Only a member connected to us can take the pages over now. One whose connection
    // closed (it died, or every node is shutting down at once) would leave this node
    // waiting for an acknowledgement that never comes: closing a node whose only peer had
    // just been killed took 30 s. Nor one that said it leaves too.
    this.active = true;
    // Pages this node is taking over from another leaver are its own to hand on once taken
    // (each page comes or is found lost; HANDOVER_MS bounds the wait all the same).
    if (this.takingOver > 0) await atMost(new Promise<void>((resolve) => this.takenOver.push(resolve)), HANDOVER_MS);
    await this.claimOrphanedCopies();
    const late = await this.intent.announce(HANDOVER_MS);
    if (late.length > 0) n.ev.log('warn', `nodes ${late.join(', ')} did not acknowledge within ${HANDOVER_MS / 1000} s that this node leaves; a sequential or migratory page they grant it later may be lost`);
    for (;;) {
      const others = [...n.members.keys()].filter((id) => id !== n.id && !this.leavers.has(id));
      const reachable = others.filter((id) => n.links.has(id));
      if (n.closing) break;
      if (reachable.length === 0) {
        if (others.length > 0 && this.ownedPages().length > 0) {
          n.ev.log('warn', `no member is connected to take this node's pages over (nodes ${others.join(', ')}); pages only this node held are lost`);
        }
        break;
      }
      const successor = Math.min(...reachable);
      try {
        await this.handOver(successor);
        break;
      } catch (e) {
        // A successor that left first (nodes closing at once) is no failure: the next member
        // that stays takes the pages; with none, the cluster is ending, as when its last
        // node closes.
        if (!this.leavers.has(successor)) {
          n.ev.log('warn', `handing this node's pages over to node ${successor} failed: ${(e as Error).message}; pages only this node held may be lost`);
          break;
        }
      }
    }
    n.closing = true;
    this.handingTo = undefined;
    n.commits.stop();
    if (n.token.token) n.commits.reclaim(n.token.token);
    n.localCommits.close();
  }

  /** The member this node hands its pages to, and how to give up on it. */
  private handingTo?: { id: number; fail: (e: Error) => void };

  /** The connection to member `id` closed (membership.ts): a hand-over to it cannot finish. */
  lost(id: number): void {
    this.intent.notAwaited(id);
    if (this.handingTo?.id === id) this.handingTo.fail(new Error(`the connection to node ${id} closed during the hand-over`));
  }

  /**
   * Resolves with `p`, or rejects once the successor is lost or after HANDOVER_MS, whichever
   * comes first (a token that is away may not come back while this node is cut off; a
   * stalled successor reads nothing).
   */
  private bounded<T>(successor: number, p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not done within ${HANDOVER_MS / 1000} s`)), HANDOVER_MS);
      this.handingTo = {
        id: successor,
        fail: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      p.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  private async handOver(successor: number): Promise<void> {
    const n = this.n;
    await this.handOverSequential(successor);
    const acquiring = n.token.acquire();
    let t: TokenState;
    try {
      t = await this.bounded(successor, acquiring);
    } catch (e) {
      // Given up before the token came: give it back when it does.
      void acquiring.then((late) => n.token.release(late));
      throw e;
    }
    try {
      await this.bounded(successor, n.log.waitApplied(t.time));
      const late = await this.bounded(successor, this.intent.catchUp(HANDOVER_MS));
      if (late.length > 0) n.ev.log('warn', `nodes ${late.join(', ')}, which joined as this node began to leave, did not acknowledge within ${HANDOVER_MS / 1000} s that it leaves`);
      const mine = this.ownedPages();
      const { versions } = n.table;
      for (let i = 0; i < mine.length; i += READ_AHEAD_MAX) {
        const pages = Uint32Array.from(mine.slice(i, i + READ_AHEAD_MAX));
        const batch = { reqId: 0, page: pages[0], status: PageStatus.ok, pages, versions: Float64Array.from(pages, (p) => Number(versions[p])), owners: new Uint16Array(pages.length).fill(successor) };
        n.links.send(successor, Msg.Handover, encode.pageReply(batch, n.config.pageSize, (data) => n.native.copyCommittedPages(pages, data)));
        // One batch at a time as the successor reads: every page at once would sit in memory
        // here, past the transport's hard limit for a large region.
        if (!(await this.bounded(successor, n.links.whenDrained(successor)))) throw new Error(`the connection to node ${successor} closed during the hand-over`);
      }
      const acked = new Promise<void>((resolve) => (this.handoverAcked = resolve));
      n.links.send(successor, Msg.HandoverDone, Buffer.alloc(0));
      await this.bounded(successor, acked);
      // Ownership that reached this node after its list all the same (see leave_intent.ts) goes
      // on to the successor too. Checked in the same turn as Leave is said: nothing can arrive
      // in between.
      for (let round = 0; round < 3 && this.ownedSequential().length > 0; round++) await this.handOverSequential(successor);
      n.links.broadcast(Msg.Leave, encode.nodeId(successor), n.members.values());
      // The token goes to the successor first, without us in it.
      t.members = t.members.filter((m) => m.id !== n.id);
      t.queue = [successor, ...t.queue.filter((q) => q !== successor && q !== n.id)];
    } finally {
      this.handoverAcked = undefined;
      n.token.release(t);
    }
  }

  /**
   * The sequential and migratory pages this node owns go to the successor, which takes them
   * as a writer would, so their copies are invalidated and requests find their owner the
   * usual way (no token). Before, a leaving node took them along: workers that wrote their
   * share of a result and closed left the program reading zeros.
   */
  private async handOverSequential(successor: number): Promise<void> {
    const n = this.n;
    const seq = this.ownedSequential();
    if (seq.length > 0) {
      const answer = new Promise<boolean>((resolve) => (this.seqTakenOver = resolve));
      n.links.send(successor, Msg.SeqTakeOver, encodeTakeOver(seq));
      let took: boolean;
      try {
        took = await this.bounded(successor, answer);
      } finally {
        this.seqTakenOver = undefined;
      }
      if (!took) {
        // It is leaving too (nodes closing at once): on to a member that stays.
        this.leavers.add(successor);
        throw new Error(`node ${successor} is leaving too`);
      }
      const left = this.ownedSequential().length;
      if (left > 0) n.ev.log('warn', `node ${successor} did not take ${left} of this node's ${seq.length} sequential or migratory pages; they are lost`);
    }
  }

  /**
   * The committed pages this node owns, which it hands over with the token. Non-transactional
   * pages go before (ownedSequential), or stay (local ones).
   */
  private ownedPages(): number[] {
    const n = this.n;
    const mine: number[] = [];
    const { owners, versions } = n.table;
    for (let p = 0; p < owners.length; p++) if (owners[p] === n.id && versions[p] !== 0n && !n.sequential.handles(p)) mine.push(p);
    return mine;
  }

  /**
   * Read copies held here of sequential pages whose owner is gone. A search adopts such a
   * page from its copies, but only once some node touches it: until then this node's copy
   * may be the last, and it left with this node (the random model workload: a page read
   * whole after its owner was killed, lost when the reader then closed). Each is taken as a
   * writer takes a page (a search, an adoption, the other copies invalidated), so it is this
   * node's to hand on with its own. Done before the leave intent: once members have heard
   * it, they answer none of this node's requests.
   */
  private async claimOrphanedCopies(): Promise<void> {
    const n = this.n;
    const models = (this.models ??= n.native.pageModels());
    const { owners, states } = n.table;
    const orphans: number[] = [];
    for (let p = 0; p < owners.length; p++) {
      const owner = owners[p];
      if ((models[p] & MODEL_MASK) === PageModel.sequential && states[p] !== 0 && owner !== n.id && owner !== LOST_OWNER && !n.members.has(owner)) orphans.push(p);
    }
    if (orphans.length === 0) return;
    await atMost(Promise.all(orphans.map((p) => new Promise<void>((resolve) => n.sequential.prefetch(p, 1, true, resolve)))), HANDOVER_MS);
  }

  /** The sequential and migratory pages this node owns with their contents (local ones stay: they are never shared). */
  private ownedSequential(): Uint32Array {
    const n = this.n;
    const models = (this.models ??= n.native.pageModels());
    const { owners, states } = n.table;
    const mine: number[] = [];
    for (let p = 0; p < owners.length; p++) {
      const m = models[p] & MODEL_MASK;
      if ((m === PageModel.sequential || m === PageModel.migratory) && owners[p] === n.id && states[p] !== 0) mine.push(p);
    }
    return Uint32Array.from(mine);
  }

  private models?: Uint8Array;
  /** Leaver side: the answer to its SeqTakeOver (true: taken; false: the successor leaves too). */
  private seqTakenOver?: (took: boolean) => void;
  /** Successor side: take-overs under way, and who waits for them to end (this node's own leave). */
  private takingOver = 0;
  private takenOver: Array<() => void> = [];

  /**
   * SeqTakeOver: a leaving node's sequential and migratory pages; take each as a writer does,
   * then say so, or refuse at once when leaving ourselves (the leaver asks a member that stays).
   */
  onSeqTakeOver(from: number, payload: Buffer): void {
    const n = this.n;
    const pages = decodeTakeOver(payload, n.config.numPages);
    if (this.active) {
      n.links.send(from, Msg.SeqTakenOver, Buffer.of(0));
      return;
    }
    this.takingOver++;
    let left = pages.length + 1;
    const one = () => {
      if (--left > 0) return;
      n.links.send(from, Msg.SeqTakenOver, Buffer.of(1));
      if (--this.takingOver === 0) for (const w of this.takenOver.splice(0)) w();
    };
    for (const p of pages) n.sequential.prefetch(p, 1, true, one);
    one();
  }

  /** SeqTakenOver: u8 1 taken, 0 refused (the successor leaves too). */
  onSeqTakenOver(payload: Buffer): void {
    if (payload.length !== 1 || payload[0] > 1) throw new WireError('a sequential take-over answer has the wrong size or value');
    this.seqTakenOver?.(payload[0] === 1);
  }

  /** Leave: `from` leaves; if we are its successor, remove it from the configuration. */
  onLeave(from: number, payload: Buffer): void {
    const n = this.n;
    const successor = decode.nodeId(payload);
    this.leavers.add(from);
    this.successors.set(from, successor);
    this.intent.notAwaited(from);
    // It ends its connections now: what it was asked and has not answered is asked of the successor.
    n.pager.reask(from);
    if (successor !== n.id) return;
    const pages = this.handedOver.get(from) ?? [];
    this.handedOver.delete(from);
    void (REMOVAL_LATE_MS > 0 ? new Promise((resolve) => setTimeout(resolve, REMOVAL_LATE_MS)) : Promise.resolve())
      .then(() => n.commits.commitConfig((epoch, nextId) => {
        if (!n.members.has(from)) return undefined;
        const moved = pages.filter((p) => n.table.owners[p] === n.id);
        return {
          epoch,
          nextId,
          members: [...n.members.values()].filter((m) => m.id !== from),
          removed: [from],
          lost: new Uint32Array(0),
          moved: Uint32Array.from(moved),
          movedTo: new Uint16Array(moved.length).fill(n.id),
          movedVersions: Float64Array.from(moved, (p) => Number(n.table.versions[p])),
        };
      }))
      .catch((e: Error) => {
        // It stays a member that does not answer: the next recovery removes it.
        n.ev.log('warn', `could not remove node ${from}, which left: ${e.message}`);
        this.leavers.delete(from);
        n.membership.lost(from, 'left');
      });
  }

  /** Whether `id` said Leave: its last act, so it answers nothing from then on (membership.ts voters). */
  saidLeave(id: number): boolean {
    return this.successors.has(id);
  }

  /** Who has the pages of `id`, which said it leaves: its successor, or the successor's if that left too. */
  successorOf(id: number): number | undefined {
    let to = this.successors.get(id);
    for (let hops = 0; to !== undefined && this.leavers.has(to) && hops < 16; hops++) to = this.successors.get(to);
    return to === undefined || this.leavers.has(to) ? undefined : to;
  }

  /** Handover: a batch of the leaver's pages, now ours. */
  onHandover(from: number, payload: Buffer): void {
    const n = this.n;
    const r = decode.pageReply(payload, n.config.pageSize);
    if (r.pages.some((p) => p >= n.config.numPages)) throw new WireError('a handed-over page is outside the region');
    r.owners.fill(n.id);
    n.native.installPages(r.pages, r.versions, r.owners, r.data);
    let mine = this.handedOver.get(from);
    if (!mine) this.handedOver.set(from, (mine = []));
    for (const p of r.pages) {
      n.table.owners[p] = n.id;
      mine.push(p);
    }
  }

  /**
   * HandoverDone: every batch arrived (same connection, in order). Acknowledged once this
   * node's backups without the leavers hold the pages too: the leaver's backup may have been
   * this node, and then, once the leaver is gone, this node's copy is their only one.
   */
  onHandoverDone(from: number): void {
    const n = this.n;
    n.replication.holdWithoutLeavers(new Set([...this.intent.leaving, ...this.leavers]), this.handedOver.get(from) ?? [], () => {
      if (n.members.has(from)) n.links.send(from, Msg.HandoverAck, Buffer.alloc(0));
    });
  }

  /** HandoverAck. */
  onHandoverAck(): void {
    this.handoverAcked?.();
  }
}
