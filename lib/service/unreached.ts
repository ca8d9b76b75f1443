// Members that cannot reach each other while both still reach the rest: a non-transitive
// partition (a firewall rule, a broken route between two hosts). The cluster needs every
// member to reach every other (commits are broadcast, the token and pages move directly),
// so such a cut must end with one of the two removed. Before, it never did: with three nodes
// and the token holder cut off from the lowest one, all three stopped committing for 8 s,
// then crawled at 2-4 commits/s each for as long as the cut lasted, and a fault on a page of
// the node across the cut waited for good (network namespaces, measured). The rules here
// let the recovery remove one side; each waits UNREACHED_MS first, longer than a node back
// from a stall takes to connect again and stop naming the member (recovery.ts memberBack):
//
// 1. A member refuses a recovery that names a member it hears from (recovery.ts onQuery):
//    the coordinator may be back from a stall with a stale view, and would take the token
//    from a healthy holder. A coordinator that goes on naming the same member for
//    UNREACHED_MS is not stale but cut off from it: the query is answered then, and the
//    recovery removes the member the coordinator cannot reach.
// 2. Only the coordinator (the lowest member a node does not suspect) recovers. When two
//    members that are not the coordinator lose each other, the coordinator hears both and
//    never starts. A node that has suspected a higher member for UNREACHED_MS without any
//    recovery asking it about that member runs one itself, and rule 1 lets it through: the
//    lower of the two removes the higher.
// 3. A member that answered or ran a recovery naming a node answers none that node runs for
//    the hold time, nor one naming the coordinator it holds for while it hears from it.
//    Both sides of the cut running one made a duel: the third node answered each in turn,
//    three nodes went through seven ballots in 12 s without committing, and the lowest
//    node's own commits were voided by a regeneration it had answered before a later ballot
//    left it the old token. (The higher one stepping in too, after twice the wait in case
//    it alone noticed, brought the duel back whenever the lower one's configuration took
//    that long. A cut stops both directions of TCP, so both notice.)
//
// Two more pieces end the cut's aftermath: a joiner joins only once it reaches every member
// (admission.ts), or the removed node joined again at once through the third node and was
// removed again, over and over; and a member whose missing commits are gone from the other
// members' logs joins again as a new member (commits.ts onResendGone), or the node that
// missed the other side's commits while the cut lasted waited behind the gap for good.

/** How long a cut between two members lasts before the recovery removes one of them. */
export const UNREACHED_MS = 3000;

/** A coordinator that stopped asking about a member this long ago starts counting again. */
const FORGET_MS = 2000;

export class Unreached {
  /** Per (coordinator, named member this node hears from): when its queries began, and the latest. */
  private readonly asking = new Map<string, { first: number; last: number }>();
  /** Members this node suspects, since when (or since a recovery last asked about them). */
  private readonly suspectedSince = new Map<number, number>();
  /** Members a recovery this node answered or ran names: until when their own recoveries go unanswered, and whether it answered one (back). */
  private readonly onTheirWayOut = new Map<number, { until: number; answered: boolean }>();

  constructor(private readonly log: (message: string) => void) {}

  /**
   * Whether to answer a recovery query from `coordinator` naming `suspects`, some of which
   * this node may still hear from (`hears`), while it holds for the recovery of
   * `holdingFor`: rules 1 and 3.
   */
  answerable(coordinator: number, suspects: number[], hears: (id: number) => boolean, holdingFor: number | undefined, t: number): boolean {
    if (this.onItsWayOut(coordinator, t)) return false;
    const heard = suspects.filter(hears);
    let refuse = false;
    for (const id of heard) if ((id === holdingFor && holdingFor !== coordinator) || !this.believe(coordinator, id, t)) refuse = true;
    if (refuse) return false;
    this.asked(suspects, t);
    if (heard.length > 0 && holdingFor !== coordinator) {
      this.log(`node ${coordinator} has not reached node(s) ${heard.join(', ')} for ${Math.round(UNREACHED_MS / 1000)} s, which this node hears; answering its recovery, which removes them (every member must reach every other)`);
    }
    return true;
  }

  /**
   * A recovery this node answered or ran names `members`: for `ms`, recoveries they run
   * are not answered. Between the two sides of a cut, the one whose recovery got this
   * node's answer first removes the other; answering the other's too (once the first was
   * decided, its configuration still being committed) took the lease from the first, and
   * neither side was removed.
   */
  named(members: Iterable<number>, t: number, ms: number, answered: boolean): void {
    for (const id of members) {
      const was = this.onTheirWayOut.get(id);
      this.onTheirWayOut.set(id, { until: Math.max(t + ms, was?.until ?? 0), answered: answered || (was?.answered ?? false) });
    }
  }

  /**
   * Member `id` is connected again: this node's own recoveries no longer name it, so its
   * recoveries may be answered again. Not when this node answered another coordinator's
   * recovery naming it: that one may have decided, its configuration on the way here, and
   * answering `id`'s now let two recoveries decide, each removing the other's coordinator
   * (a partition fault with CPU hogs beside it: the lowest member kept a lease alone, as
   * the tie-break lets it in a configuration of two, while the others went on without it).
   * That holds until the hold time runs out, or the configuration removes `id`.
   */
  back(id: number): void {
    if (!this.onTheirWayOut.get(id)?.answered) this.onTheirWayOut.delete(id);
  }

  /** Whether a recovery run by `coordinator` goes unanswered (named). */
  private onItsWayOut(coordinator: number, t: number): boolean {
    const e = this.onTheirWayOut.get(coordinator);
    if (e !== undefined && e.until <= t) this.onTheirWayOut.delete(coordinator);
    return e !== undefined && e.until > t;
  }

  /**
   * A recovery query from `coordinator` names `member`, which this node still hears from:
   * true once that coordinator has named it for UNREACHED_MS (it cannot reach the member;
   * answer), false before (refuse: its view may be stale).
   */
  private believe(coordinator: number, member: number, t: number): boolean {
    for (const [k, r] of this.asking) if (t - r.last > FORGET_MS) this.asking.delete(k);
    const key = `${coordinator} ${member}`;
    let r = this.asking.get(key);
    if (!r) this.asking.set(key, (r = { first: t, last: t }));
    r.last = t;
    return t - r.first >= UNREACHED_MS;
  }

  /** A recovery asked this node about `members`: a coordinator is on it, so the wait starts again. */
  asked(members: Iterable<number>, t: number): void {
    for (const id of members) if (this.suspectedSince.has(id)) this.suspectedSince.set(id, t);
  }

  /**
   * Every lease tick, with this node's suspects: the ones this node should recover from
   * although it does not coordinate (rule 2): higher than this node, and suspected for
   * UNREACHED_MS with no recovery asking about them.
   */
  overdue(self: number, suspects: ReadonlySet<number>, t: number): number[] {
    for (const id of this.suspectedSince.keys()) if (!suspects.has(id)) this.suspectedSince.delete(id);
    const out: number[] = [];
    for (const id of suspects) {
      const since = this.suspectedSince.get(id);
      if (since === undefined) this.suspectedSince.set(id, t);
      else if (id > self && t - since >= UNREACHED_MS) out.push(id);
    }
    return out;
  }

  clear(): void {
    this.asking.clear();
    this.onTheirWayOut.clear();
    this.suspectedSince.clear();
  }
}
