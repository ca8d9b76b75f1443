// Membership: who is in the cluster, as this node knows it, and what happens when a
// member goes (its connections close, fetches waiting on it search elsewhere, and the
// lowest live node checks whether the token died with it).
import { decode, type Member } from './protocol';
import type { Cluster } from './cluster';

export class Membership {
  readonly members = new Map<number, Member>();

  constructor(private readonly n: Cluster) {}

  /** Members named by a token or a Hello that we did not know of. */
  learn(ms: Member[]): void {
    for (const m of ms) {
      if (m.id !== this.n.id && !this.members.has(m.id)) {
        this.members.set(m.id, m);
        this.n.ev.event('peer-join', m.id);
      }
    }
  }

  /** MemberAdd: the member that admitted a joiner tells the others. */
  onMemberAdd(_from: number, payload: Buffer): void {
    this.learn([decode.member(payload)]);
  }

  /** MemberRemove. */
  onMemberRemove(_from: number, payload: Buffer): void {
    this.remove(decode.memberRemove(payload));
  }

  /** The connection to `id` closed. */
  lost(id: number, reason: string): void {
    if (this.n.closing || !this.members.has(id)) return;
    this.n.ev.log('warn', `lost node ${id} (${reason})`);
    this.remove(id);
  }

  /** `graceful`: the member left and passed the token on; no recovery is needed. */
  remove(id: number, graceful = false): void {
    const n = this.n;
    if (!this.members.delete(id)) return;
    n.links.drop(id, 'removed');
    n.data.drop(id);
    n.token.forget(id);
    n.ev.event('peer-leave', id);
    n.pager.memberGone(id);
    if (!graceful && Math.min(...this.members.keys()) === n.id) n.recovery.start();
    else n.recovery.maybeFinish();
  }

  list(): number[] {
    return [...this.members.keys()].sort((a, b) => a - b);
  }
}
