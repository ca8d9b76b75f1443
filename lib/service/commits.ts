// The commit path: commits made under the token (by the service, or by the app thread with
// the lent token and broadcast from the commit ring), commits received and applied in
// global-time order, and re-sending commits a member missed.
import { CommitStatus } from '../native';
import { type CommitRecord, decode, encode, Msg, type TokenState } from './protocol';
import { debug } from './debug';
import type { Cluster } from './cluster';

export class Commits {
  private drainTimer?: NodeJS.Timeout;
  private reclaiming = false;
  /** The token, held on behalf of the app's next run (holdForApp). */
  private heldForApp?: TokenState;

  constructor(private readonly n: Cluster) {
    // Woken by the app's first lent-token commit after a drain: wait a millisecond so a run
    // of commits goes out as one batch (one wake-up instead of one per commit). Reclaiming
    // the token and serving a page drain at once, so nothing depends on this delay.
    n.localCommits.on('message', () => {
      if (this.drainTimer) return;
      this.drainTimer = setTimeout(() => {
        this.drainTimer = undefined;
        this.drainLocal();
      }, 1);
    });
  }

  /**
   * Takes the token for the app's next run of a transaction that keeps losing to other
   * nodes' commits: while we hold it nobody else commits, so that run cannot be doomed.
   */
  async holdForApp(): Promise<[number, number]> {
    if (!this.heldForApp) {
      const t = await this.n.token.acquire();
      await this.n.log.waitApplied(t.time);
      this.heldForApp = t;
    }
    return [CommitStatus.committed, this.heldForApp.time];
  }

  /** The held run committed nothing: give the token back. */
  async releaseForApp(): Promise<[number, number]> {
    if (this.heldForApp) {
      this.heldForApp = undefined;
      this.n.token.release();
    }
    return [CommitStatus.committed, this.n.log.applied];
  }

  /** Commits the app's ended transaction (its write set is in the native layer). */
  async commit(): Promise<[number, number]> {
    const n = this.n;
    const pages = n.native.writeSet();
    const held = this.heldForApp;
    this.heldForApp = undefined;
    const t = held ?? (await n.token.acquire());
    try {
      await n.log.waitApplied(t.time);
      if (n.native.doomed()) return [CommitStatus.doomed, 0];
      const time = t.time + 1;
      t.time = time;
      const rec: CommitRecord = { time, node: n.id, pages };
      n.links.broadcast(Msg.Commit, encode.commit(rec), t.members);
      n.native.commit(time, n.id);
      n.log.receive(rec);
      return [CommitStatus.committed, time];
    } finally {
      n.token.release();
    }
  }

  /** Waits until every commit this node has heard of is applied (read-only commits). */
  async sync(): Promise<[number, number]> {
    const n = this.n;
    await n.log.waitApplied(n.log.seen);
    return [n.native.doomed() ? CommitStatus.doomed : CommitStatus.committed, n.log.applied];
  }

  /** Lends the token to the app thread when nothing can doom its commits (local_token.ts). */
  maybeLend(): void {
    const n = this.n;
    const t = n.token.token;
    if (!t || n.token.busy || n.gate.lent || this.reclaiming) return;
    if (n.log.applied !== t.time || n.log.seen !== t.time) return;
    n.gate.lend(t.time);
  }

  /** Takes the token back from the app thread and broadcasts what it committed meanwhile. */
  reclaim(t: TokenState): void {
    if (!this.n.gate.lent) return;
    // Draining applies commits, which would offer the token again (maybeLend) halfway
    // through, at a time the app already used.
    this.reclaiming = true;
    try {
      t.time = Math.max(t.time, this.n.gate.reclaim());
      this.drainLocal();
    } finally {
      this.reclaiming = false;
    }
  }

  /** Commits the app thread made with the lent token: tell everyone. */
  drainLocal(): void {
    this.n.ring.drain((time, pages) => this.applyLocal(time, pages));
  }

  private applyLocal(time: number, pages: Uint32Array): void {
    const n = this.n;
    if (time <= n.log.applied) return;
    const t = n.token.token;
    if (t) t.time = Math.max(t.time, time);
    const rec: CommitRecord = { time, node: n.id, pages };
    n.links.broadcast(Msg.Commit, encode.commit(rec), t?.members ?? n.members.values());
    n.log.receive(rec);
  }

  /** Applies another node's commit: its pages become invalid here, dooming what read them. */
  applyRemote(rec: CommitRecord): void {
    const n = this.n;
    if (debug.enabled) debug(`node ${n.id} apply commit ${rec.time} by ${rec.node}: pages ${Array.from(rec.pages).join(',')}`);
    if (rec.node === n.id) return; // our own, applied when made
    let doomed = false;
    for (const p of rec.pages) {
      if (p >= n.config.numPages) continue;
      if (n.native.invalidate(p, rec.time, rec.node)) doomed = true;
    }
    if (doomed) n.native.interruptApp();
  }

  /** Commit. */
  onCommit(_from: number, payload: Buffer): void {
    this.n.log.receive(decode.commit(payload));
  }

  /** ResendRequest: a member missed commits; send those we still have. */
  onResendRequest(from: number, payload: Buffer): void {
    const r = decode.resendRequest(payload);
    for (const rec of this.n.log.since(r.from, r.to)) this.n.links.send(from, Msg.Commit, encode.commit(rec));
  }

  /** The node is closing: nothing more is drained on a timer. */
  stop(): void {
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
  }
}
