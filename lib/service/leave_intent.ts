// The leave-intent round (LeaveIntent / LeaveIntentAck): a closing node tells every member
// it is about to leave before it lists the sequential and migratory pages it owns.
//
// Why: those pages move by requests forwarded along owner hints, and a request the leaver
// made earlier (a prefetch, one re-sent as a search, one still travelling along stale
// hints) can reach an owner after the leaver has listed its pages. Granted then, the page
// went with the leaver, and the cluster found it lost after a purely graceful close.
//
// The rule, and why it is enough: from the moment a member has heard the intent it never
// grants ownership or sends a copy to the leaver (sequential.ts drops the leaver's requests
// as a departed node's), nor asks it to adopt a page another holder can, and it
// acknowledges once every grant it had started before (invalidations still out) has been
// sent, and once its backups in the configuration without the leavers hold its pages
// (replication.ts holdWithoutLeavers: the leaver may be the backup that holds their second
// copy). Grants, adoptions and the acknowledgement go on the one connection between the two
// nodes, in order, so once every member has acknowledged, each grant ever made to the
// leaver has arrived, and no further one can be made: what the leaver then lists is all it
// will ever own. An acknowledgement waits for no lock and no token (the backups' fetches
// need neither, and a node that leaves itself waits for none), so leavers closing at once
// acknowledge each other at once.
//
// Members the round cannot reach: one that joined during it is told under the token
// (catchUp; no join can commit meanwhile). One with no connection to the leaver is not
// waited for (waiting for a member that died a moment ago held a close for 30 s before);
// a grant it made could only arrive over a new connection. Whatever reaches the leaver
// after its list all the same (a stalled member's grant after the round gave up on it, an
// adoption asked of it while its copy was the last) is handed on before Leave
// (leaving.ts).
import { Msg } from './protocol';
import { WireError } from './wire';
import type { Cluster } from './cluster';

export class LeaveIntent {
  /** Members that said they are about to leave: ownership never goes to them. */
  private readonly intending = new Set<number>();
  /** Member side: ownership grants under way (invalidations out), by requester. */
  private readonly granting = new Map<number, number>();
  /** Member side: leavers whose acknowledgement waits for grants under way to them. */
  private readonly ackAfterGrants = new Set<number>();
  /** Member side: leavers whose acknowledgement waits for this node's backups without them. */
  private readonly ackAfterBackups = new Set<number>();
  /** Leaver side: the members told, and the acknowledgements still awaited. */
  private readonly told = new Set<number>();
  private readonly awaited = new Set<number>();
  private allAcked?: () => void;

  constructor(private readonly n: Cluster) {}

  /** The members that said they are about to leave (this node included, once it did). */
  get leaving(): ReadonlySet<number> {
    return this.intending;
  }

  /** Whether `id` said it is about to leave (this node included, once it did). */
  intends(id: number): boolean {
    return this.intending.has(id);
  }

  /**
   * Leaver: tells every member it is connected to; resolves once each has acknowledged or
   * is gone, or after `ms` with the members that did not answer (a stalled member: its
   * grants may still come, and are handed on before Leave if they come in time).
   */
  announce(ms: number): Promise<number[]> {
    const n = this.n;
    this.intending.add(n.id);
    // Our own requests are answered by nobody from now on: stop waiting for them.
    n.sequential.stopFetching();
    return this.tell([...n.members.keys()], ms);
  }

  /** Leaver, under the token: tells the members that joined since the round (no join can commit now). */
  catchUp(ms: number): Promise<number[]> {
    return this.tell([...this.n.members.keys()].filter((id) => !this.told.has(id)), ms);
  }

  private tell(ids: number[], ms: number): Promise<number[]> {
    const n = this.n;
    for (const id of ids) {
      if (id === n.id || this.told.has(id)) continue;
      this.told.add(id);
      if (!n.links.has(id)) continue;
      this.awaited.add(id);
      n.links.send(id, Msg.LeaveIntent, Buffer.alloc(0));
    }
    if (this.awaited.size === 0) return Promise.resolve([]);
    return new Promise<number[]>((resolve) => {
      const timer = setTimeout(() => {
        const late = [...this.awaited];
        this.awaited.clear();
        this.allAcked = undefined;
        resolve(late);
      }, ms);
      this.allAcked = () => {
        clearTimeout(timer);
        resolve([]);
      };
    });
  }

  /** Leaver: `id` will not acknowledge (its connection closed, or it left first). */
  notAwaited(id: number): void {
    if (!this.awaited.delete(id) || this.awaited.size > 0) return;
    const done = this.allAcked;
    this.allAcked = undefined;
    done?.();
  }

  /** `id` is no member any more. */
  memberGone(id: number): void {
    this.intending.delete(id);
    this.granting.delete(id);
    this.ackAfterGrants.delete(id);
    this.ackAfterBackups.delete(id);
    this.notAwaited(id);
  }

  /** LeaveIntentAck (no payload). */
  onAck(from: number, payload: Buffer): void {
    if (payload.length !== 0) throw new WireError('a leave-intent acknowledgement carries a payload');
    this.notAwaited(from);
  }

  /** LeaveIntent (no payload): `from` is about to leave. */
  onIntent(from: number, payload: Buffer): void {
    if (payload.length !== 0) throw new WireError('a leave intent carries a payload');
    this.intending.add(from);
    if ((this.granting.get(from) ?? 0) > 0) this.ackAfterGrants.add(from);
    this.ackAfterBackups.add(from);
    this.n.replication.holdWithoutLeavers(this.intending, [], () => {
      if (this.ackAfterBackups.delete(from)) this.ackIfReady(from);
    });
  }

  /** Member: acknowledges `to`'s intent once nothing holds the acknowledgement back. */
  private ackIfReady(to: number): void {
    if (!this.intending.has(to) || this.ackAfterGrants.has(to) || this.ackAfterBackups.has(to)) return;
    this.n.links.send(to, Msg.LeaveIntentAck, Buffer.alloc(0));
  }

  /** Member: an ownership grant to `to` started (sequential.ts; its reply follows the invalidations). */
  grantStarted(to: number): void {
    this.granting.set(to, (this.granting.get(to) ?? 0) + 1);
  }

  /** Member: that grant's reply was sent; the acknowledgement it held back may go now. */
  grantSent(to: number): void {
    const left = (this.granting.get(to) ?? 1) - 1;
    if (left > 0) {
      this.granting.set(to, left);
      return;
    }
    this.granting.delete(to);
    if (this.ackAfterGrants.delete(to)) this.ackIfReady(to);
  }
}
