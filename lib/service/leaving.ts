// Leaving gracefully. With other members left, the lowest takes over: under the token (no
// commit can interleave), it receives every page this node owns, acknowledges them, gets
// the token, and everyone is told to ask it for those pages from now on.
import { decode, encode, Msg, NO_NODE, PageStatus } from './protocol';
import { WireError } from './wire';
import { READ_AHEAD_MAX } from './pager';
import type { Cluster } from './cluster';

export class Leaving {
  private handoverAcked?: () => void;

  constructor(private readonly n: Cluster) {}

  /** Hands this node's pages and the token over, then tells everyone it left. */
  async leave(): Promise<void> {
    const n = this.n;
    const others = [...n.members.keys()].filter((id) => id !== n.id);
    let successor = NO_NODE;
    if (others.length > 0 && !n.closing) {
      try {
        successor = Math.min(...others);
        await this.handOver(successor);
      } catch (e) {
        n.ev.log('warn', `handing this node's pages over to node ${successor} failed: ${(e as Error).message}; they may be lost`);
        successor = NO_NODE;
      }
    }
    n.closing = true;
    n.commits.stop();
    if (n.token.token) n.commits.reclaim(n.token.token);
    n.localCommits.close();
    n.links.broadcast(Msg.Leave, encode.memberRemove(successor), n.members.values());
  }

  private async handOver(successor: number): Promise<void> {
    const n = this.n;
    const t = await n.token.acquire();
    await n.log.waitApplied(t.time);
    const mine: number[] = [];
    const { owners, versions } = n.table;
    for (let p = 0; p < owners.length; p++) if (owners[p] === n.id && versions[p] !== 0n) mine.push(p);
    for (let i = 0; i < mine.length; i += READ_AHEAD_MAX) {
      const pages = Uint32Array.from(mine.slice(i, i + READ_AHEAD_MAX));
      const batch = { reqId: 0, page: pages[0], status: PageStatus.ok, pages, versions: Float64Array.from(pages, (p) => Number(versions[p])), owners: new Uint16Array(pages.length).fill(successor) };
      n.links.send(successor, Msg.Handover, encode.pageReply(batch, n.config.pageSize, (data) => n.native.copyCommittedPages(pages, data)));
    }
    const acked = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no acknowledgement within 30 s')), 30_000);
      this.handoverAcked = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    n.links.send(successor, Msg.HandoverDone, Buffer.alloc(0));
    await acked;
    // The token goes to the successor, without us in it.
    t.members = t.members.filter((m) => m.id !== n.id);
    t.queue = [successor, ...t.queue.filter((q) => q !== successor && q !== n.id)];
    n.token.release();
  }

  /** Leave: `from` left; its successor (if any) took over its pages and the token. */
  onLeave(from: number, payload: Buffer): void {
    const n = this.n;
    const successor = payload.length ? decode.memberRemove(payload) : NO_NODE;
    if (successor !== NO_NODE) {
      // The leaver handed its pages and the token to `successor`: ask it from now on.
      const { owners, versions } = n.table;
      for (let p = 0; p < owners.length; p++) if (owners[p] === from && versions[p] !== 0n) owners[p] = successor;
    }
    n.membership.remove(from, successor !== NO_NODE);
  }

  /** Handover: a batch of the leaver's pages, now ours. */
  onHandover(_from: number, payload: Buffer): void {
    const n = this.n;
    const r = decode.pageReply(payload, n.config.pageSize);
    if (r.pages.some((p) => p >= n.config.numPages)) throw new WireError('a handed-over page is outside the region');
    r.owners.fill(n.id);
    n.native.installPages(r.pages, r.versions, r.owners, r.data);
    for (const p of r.pages) n.table.owners[p] = n.id;
  }

  /** HandoverDone: every batch arrived (same connection, in order). */
  onHandoverDone(from: number): void {
    this.n.links.send(from, Msg.HandoverAck, Buffer.alloc(0));
  }

  /** HandoverAck. */
  onHandoverAck(): void {
    this.handoverAcked?.();
  }
}
