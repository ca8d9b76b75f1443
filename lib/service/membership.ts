// Membership is a numbered configuration ordered by the token. Every change (a join, a
// graceful leave, a removal after a failure) is made by the token holder as a commit of its
// own at a global time (commits.ts `commitConfig`), so every node applies the same
// configurations in the same order as the data commits around them. This file holds the
// configuration as applied here, the members this node has lost contact with (suspects,
// still members until a configuration removes them), the pages configurations decided
// lost, and the quorum rule that decides which side of a partition may go on.
import { type ConfigChange, decode, encode, LOST_OWNER, type Member, Msg } from './protocol';
import type { Connection } from './transport';
import { mayStillLive } from './redial';
import type { Cluster } from './cluster';

/**
 * A side may go on only with a quorum of the configuration's voters: more than half, or
 * exactly half including the lowest-id voter (so of two halves exactly one goes on, and a
 * two-node cluster survives the loss of its higher node, never of its lower one).
 */
export function isQuorum(voters: number[], present: (id: number) => boolean): boolean {
  let n = 0;
  let lowest = Infinity;
  for (const v of voters) {
    if (present(v)) n++;
    if (v < lowest) lowest = v;
  }
  return 2 * n > voters.length || (2 * n === voters.length && n > 0 && present(lowest));
}

/** How long a Hello from a joiner waits for the configuration that admitted it. */
const AWAIT_JOIN_MS = 5000;
/** Bytes of frames a joiner's connection may send while it waits (held for its admission). */
const AWAIT_HOLD_BYTES = 16 << 20;

/** A joiner's connection waiting for the configuration that admitted it. */
interface Awaiting {
  id: number;
  address: string;
  c: Connection;
  until: number;
  /** What it sent meanwhile, dispatched in order once it is a member. */
  held: Array<[number, Buffer]>;
  hold: (type: number, payload: Buffer) => void;
}

export class Membership {
  /** The members of the configuration this node has applied. */
  readonly members = new Map<number, Member>();
  epoch = 0;
  /** The id the next joiner gets (ids are never reused). */
  nextId = 1;
  /** Members whose connection was lost: still members until a configuration removes them. */
  readonly suspects = new Set<number>();
  /** Pages configurations decided lost (and nobody has discarded since). */
  readonly lostPages = new Set<number>();
  /** Ids this node saw removed: a Hello under one of them is answered with Removed. */
  private readonly removed = new Set<number>();
  /** Hellos from joiners this node has not seen admitted yet. */
  private awaiting: Awaiting[] = [];

  constructor(private readonly n: Cluster) {}

  /** Founds the first configuration (this node alone). */
  found(me: Member): void {
    this.members.set(me.id, me);
    this.epoch = 1;
    // (Test hook: ids starting high, as in a cluster that nodes joined hundreds of times.)
    this.nextId = Math.max(me.id + 1, Number(process.env.DSM_TEST_NEXT_ID) || 0);
    this.publish();
  }

  /** Tells the app thread who the members are (the heap takes over departed nodes' allocator slots). */
  private publish(): void {
    this.n.ev.members(this.nextId, this.members.keys());
  }

  /** Starts from a configuration a member handed us (joining). */
  adopt(epoch: number, nextId: number, ms: Member[]): void {
    this.members.clear();
    this.suspects.clear();
    for (const m of ms) this.members.set(m.id, m);
    this.epoch = epoch;
    this.nextId = nextId;
    this.n.replication.tellNative();
    this.publish();
  }

  /** Members this node has no connection to, and since when (checkUnconnected). */
  private readonly unconnected = new Map<number, number>();

  /**
   * Every lease tick: a member this node has had no connection to for longer than a silent
   * connection lives counts as lost, as if its connection had died. A node notices a death
   * by a connection closing or going silent; a joiner killed after its admission but before
   * it connected to a member left that member nothing to notice. The other member suspected
   * it and waited for the coordinator (the lowest member it does not suspect), which was
   * that member and never started a recovery: the cluster stopped for good (the random
   * model workload, 1 run in 3 of one seed).
   */
  checkUnconnected(): void {
    const n = this.n;
    const t = Date.now();
    for (const id of this.unconnected.keys()) if (!this.members.has(id)) this.unconnected.delete(id);
    for (const id of this.members.keys()) {
      if (id === n.id || n.links.has(id) || this.suspects.has(id)) {
        this.unconnected.delete(id);
        continue;
      }
      const since = this.unconnected.get(id);
      if (since === undefined) this.unconnected.set(id, t);
      else if (t - since > n.transport.deadAfterMs) {
        this.unconnected.delete(id);
        this.lost(id, `no connection to it for ${n.transport.deadAfterMs} ms`);
      }
    }
  }

  /**
   * A member said Hello on a new connection: bind it, or tell it it was removed. `to`: the
   * member it means to reach; another id is one this node had before it joined again
   * (Msg.Gone).
   */
  hello(c: Connection, id: number, address: string, to?: number): void {
    const n = this.n;
    if (to !== undefined && to !== n.id) {
      c.send(Msg.Gone, encode.nodeId(to));
      c.close('gone');
      return;
    }
    if (!this.members.has(id)) {
      // A joiner admitted by another member connects to everyone at once: the configuration
      // that admitted it may still be on its way here. Wait for it (briefly); anyone else is
      // not a member, and one that was must join again as a new member.
      if (!this.removed.has(id) && id >= this.nextId && id < this.nextId + 64) {
        // The joiner is a member as far as it knows, and talks on this connection at once (a
        // token request, a barrier arrival, pages it asks for): hold what it sends. Dropped,
        // as before, those waited for a fallback, and a barrier arrival, which has none,
        // for ever.
        const held: Array<[number, Buffer]> = [];
        let bytes = 0;
        const hold = (type: number, payload: Buffer) => {
          bytes += payload.length;
          if (bytes <= AWAIT_HOLD_BYTES) held.push([type, payload]);
          else {
            // Not dropped: its session keeps them (links.ts), and it sends them again on the
            // connection it dials next.
            held.length = 0;
            n.ev.log('warn', `node ${id} sent more than ${AWAIT_HOLD_BYTES} bytes before its configuration arrived here; closed its connection`);
            c.close('backpressure');
          }
        };
        c.on('message', hold);
        this.awaiting.push({ id, address, c, until: Date.now() + AWAIT_JOIN_MS, held, hold });
        c.once('close', () => (this.awaiting = this.awaiting.filter((w) => w.c !== c)));
        setTimeout(() => this.admitAwaiting(), AWAIT_JOIN_MS + 10).unref();
        return;
      }
      this.refuse(c, id);
      return;
    }
    this.suspects.delete(id);
    n.links.bind(id, c);
    n.recovery.memberBack(id);
  }

  /** Connections of joiners whose configuration had not arrived: bind those it admitted. */
  private admitAwaiting(): void {
    const ws = this.awaiting;
    this.awaiting = [];
    for (const w of ws) {
      if (w.c.isClosed) continue;
      if (this.members.has(w.id)) {
        w.c.off('message', w.hold);
        this.hello(w.c, w.id, w.address);
        // After the configuration is applied (this runs inside it), and before anything the
        // connection reads next: frames are read in later turns of the loop.
        if (w.held.length) queueMicrotask(() => this.n.links.replay(w.id, w.c, w.held));
      } else if (Date.now() < w.until) this.awaiting.push(w);
      else {
        w.c.off('message', w.hold);
        this.refuse(w.c, w.id);
      }
    }
  }

  private refuse(c: Connection, id: number): void {
    this.n.ev.log('warn', `node ${id} at ${c.remoteAddress} is not in configuration ${this.epoch}; told it to join again`);
    c.send(Msg.Removed, encode.epoch(this.epoch));
    c.close('removed');
  }

  /**
   * The connection to `id` closed, or is given up: a connection that ended while its peer
   * may live is dialled again first (redial.ts); otherwise the member is suspected.
   */
  lost(id: number, reason: string): void {
    const n = this.n;
    if (n.closing || !this.members.has(id) || id === n.id) return;
    n.leaving.lost(id);
    if (n.leaving.leavers.has(id)) {
      // It left: its successor removes it from the configuration.
      n.links.drop(id, 'left');
      n.data.drop(id);
      n.token.dropQueued(id);
      return;
    }
    if (!this.suspects.has(id) && mayStillLive(reason)) n.redial.afterClose(id, reason);
    else this.suspect(id, reason);
  }

  /** Member `id` is lost to this node: a recovery decides whether it is removed. */
  suspect(id: number, reason: string): void {
    const n = this.n;
    if (n.closing || !this.members.has(id) || id === n.id) return;
    if (!this.suspects.has(id)) n.ev.log('warn', `lost node ${id} (${reason})`);
    this.suspects.add(id);
    n.token.dropQueued(id);
    n.data.drop(id);
    n.lease.changed();
    n.recovery.suspect();
    n.redial.whileSuspected(id);
  }

  /**
   * Applies a configuration change (from the commit log, in global-time order, on every
   * node including the one that made it).
   */
  apply(k: ConfigChange): void {
    const n = this.n;
    if (k.epoch <= this.epoch) return;
    const before = new Set(this.members.keys());
    this.epoch = k.epoch;
    this.nextId = Math.max(this.nextId, k.nextId);
    this.members.clear();
    for (const m of k.members) this.members.set(m.id, m);
    this.publish();
    if (!this.members.has(n.id)) {
      n.rejoin(`configuration ${k.epoch} removed this node`);
      return;
    }
    const { owners, versions } = n.table;
    for (let i = 0; i < k.moved.length; i++) {
      const p = k.moved[i];
      const v = k.movedVersions[i];
      if (Number(versions[p]) !== v) {
        // This copy was voided by a recovery (or is behind): take the configuration's word.
        n.native.invalidate(p, 0, k.movedTo[i]);
        n.native.invalidate(p, v, k.movedTo[i]);
      }
      owners[p] = k.movedTo[i];
    }
    for (const p of k.lost) {
      this.lostPages.add(p);
      n.native.invalidate(p, Number(versions[p]), LOST_OWNER);
    }
    for (const id of k.removed) this.removed.add(id);
    for (const id of before) {
      if (this.members.has(id)) continue;
      this.suspects.delete(id);
      n.links.drop(id, 'removed');
      n.data.drop(id);
      n.token.forget(id);
      n.sequential.memberGone(id);
      n.leaving.intent.memberGone(id);
      n.ev.event('peer-leave', id);
    }
    for (const m of k.members) if (!before.has(m.id) && m.id !== n.id) n.ev.event('peer-join', m.id);
    // A page server records who the members are: restarted alone, it asks them first (lib/pageserver/live_cluster.ts).
    n.store?.membersChanged();
    if (this.awaiting.length) this.admitAwaiting();
    n.publishStatus();
    n.lease.changed();
    // Fetches parked on removed owners go to the new owners (or fail as lost).
    n.pager.configurationChanged();
    // Commits waiting for backups that left ask their new ones; read-only waits ask new page servers.
    n.replication.configurationChanged();
    n.durableReads.configurationChanged();
    // Barrier rounds with a removed party break; parties of a removed coordinator arrive at the new one.
    n.barriers.configurationChanged();
  }

  /** A commit made a lost page new again (tx.discardLost on some node). */
  discarded(page: number): void {
    if (this.lostPages.delete(page)) this.n.publishStatus();
  }

  /** Gone: the node at member `from`'s address is not `from` any more (it joined again under a new id). */
  onGone(from: number, payload: Buffer): void {
    if (decode.nodeId(payload) === from) this.suspect(from, 'the node at its address joined again under a new id');
  }

  /** Removed: sent by a member that no longer has us in its configuration. */
  onRemoved(_from: number, payload: Buffer): void {
    const epoch = decode.epoch(payload);
    if (this.n.leaving.active) return;
    this.n.rejoin(`a member's configuration ${epoch} no longer has this node`);
  }

  list(): number[] {
    return [...this.members.keys()].sort((a, b) => a - b);
  }

  /**
   * The members whose answers count for a quorum (the lease, a recovery): every member but
   * those that said Leave. A node says Leave as its last act and ends its connections in the
   * same turn, so it never answers again; until its successor commits the configuration
   * without it, it would count as a voter that is always absent. Its successor killed in that
   * moment made two of four voters absent at once after a single failure, and the two
   * survivors, no quorum, stopped for good. Leaving it out is safe whoever has heard its
   * Leave: a node that never votes again cannot be on a second side, and a quorum of all
   * the members is still a majority of the rest, so any two quorums still share a member.
   */
  voters(): number[] {
    return [...this.members.keys()].filter((id) => !this.n.leaving.saidLeave(id));
  }
}
