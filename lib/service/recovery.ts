// Token recovery after a member died: did the token die with it? Run by the lowest live
// node. Every survivor reports whether it holds the token and where it last sent it;
// tokens arriving meanwhile are held. No holder, and the latest transfer went to a dead
// node: the token is regenerated at the highest applied time, with a new generation that
// voids the old.
import { decode, encode, Msg, NO_NODE, type RecoverState } from './protocol';
import type { Cluster } from './cluster';

export class Recovery {
  private recovering?: { generation: number; states: Map<number, Omit<RecoverState, 'generation'>> };

  constructor(private readonly n: Cluster) {}

  start(): void {
    const n = this.n;
    const generation = Math.max(n.token.generation, this.recovering?.generation ?? 0) + 1;
    this.recovering = { generation, states: new Map() };
    n.token.holdArrivals();
    this.recovering.states.set(n.id, this.tokenReport());
    n.links.broadcast(Msg.RecoverQuery, encode.recover({ generation, time: n.log.applied, source: n.id, regenerated: false }), n.members.values());
    this.maybeFinish();
  }

  /** What this node tells a recovery about the token. */
  private tokenReport(): Omit<RecoverState, 'generation'> {
    const { token, log, id } = this.n;
    return {
      applied: log.applied,
      hasToken: token.held,
      waiting: token.waiting,
      seq: token.rn.get(id) ?? 0,
      sentTo: token.lastSent.to,
      sentHops: token.lastSent.hops,
    };
  }

  /** RecoverQuery. */
  onQuery(from: number, payload: Buffer): void {
    const n = this.n;
    const q = decode.recover(payload);
    if (q.generation <= n.token.generation) return; // stale query
    n.token.holdArrivals();
    n.links.send(from, Msg.RecoverState, encode.recoverState({ generation: q.generation, ...this.tokenReport() }));
  }

  /** RecoverState. */
  onState(from: number, payload: Buffer): void {
    const s = decode.recoverState(payload);
    if (!this.recovering || s.generation !== this.recovering.generation) return;
    this.recovering.states.set(from, s);
    this.maybeFinish();
  }

  /** A member left while a recovery waited for its report. */
  maybeFinish(): void {
    const n = this.n;
    const r = this.recovering;
    if (!r) return;
    for (const id of n.members.keys()) if (!r.states.has(id)) return;
    this.recovering = undefined;
    let best = n.id;
    let time = n.log.applied;
    let held = false;
    let latest = { to: NO_NODE, hops: -1 };
    for (const [id, s] of r.states) {
      if (s.applied > time) {
        time = s.applied;
        best = id;
      }
      if (s.hasToken) held = true;
      if (s.sentTo !== NO_NODE && s.sentHops > latest.hops) latest = { to: s.sentTo, hops: s.sentHops };
    }
    // In flight to a live member: it will arrive (and be released from the hold).
    const inFlight = latest.hops >= 0 && n.members.has(latest.to) && !r.states.get(latest.to)?.hasToken;
    const regenerate = !held && !inFlight;
    if (regenerate) {
      const ln = new Map<number, number>();
      const queue: number[] = [];
      for (const [id, s] of r.states) {
        ln.set(id, s.waiting ? s.seq - 1 : s.seq);
        n.token.rn.set(id, Math.max(n.token.rn.get(id) ?? 0, s.seq));
        if (s.waiting && id !== n.id) queue.push(id);
      }
      const members = [...n.members.values()];
      n.ev.log('warn', `regenerated the commit token at time ${time} (generation ${r.generation})`);
      // Catch up first if another survivor applied more.
      if (time > n.log.applied) n.links.send(best, Msg.ResendRequest, encode.resendRequest(n.log.applied, time));
      n.token.endHold(r.generation);
      n.token.onToken({ generation: r.generation, hops: latest.hops + 1, time, ln, queue, members });
    } else {
      n.token.endHold(undefined);
    }
    n.links.broadcast(Msg.Recovered, encode.recover({ generation: r.generation, time, source: best, regenerated: regenerate }), n.members.values());
  }

  /** Recovered: the outcome, from the node that ran the recovery. */
  onRecovered(_from: number, payload: Buffer): void {
    const n = this.n;
    const r = decode.recover(payload);
    n.token.endHold(r.regenerated ? r.generation : undefined);
    if (r.time > n.log.applied) {
      n.log.hear(r.time);
      n.links.send(r.source, Msg.ResendRequest, encode.resendRequest(n.log.applied, r.time));
    }
    if (n.token.waiting && !n.token.held) n.token.request(true);
  }
}
