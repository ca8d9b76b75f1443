// Data channels. A requester fetching another node's pages opens a second connection to
// it, takes the socket over natively and asks for replies on it (see native/data_channel.h):
// the pages then go from the socket straight into the region, off the service thread, and
// the reader wakes the faulting thread itself (Dsm::AnswerFaults). Faulting threads also
// write their page requests onto it (native/fault_routes.h), so a single remote fault runs
// no JavaScript on the requester. Opened at the first fetch from an owner (scans only, at
// first: a single fault then took two JavaScript hops on the requester).
import { performance } from 'node:perf_hooks';
import { encode, Msg } from './protocol';
import type { Connection } from './transport';
import type { Cluster } from './cluster';

/** After a data channel to a member could not be opened, fetches go the usual way this long before one is tried again. */
const REOPEN_AFTER_MS = 1000;

export class DataChannels {
  /** Requester side: native data channel ids by owner. */
  private readonly channels = new Map<number, number>();
  private readonly opening = new Set<number>();
  /** When opening a channel to a member last failed. */
  private readonly failedAt = new Map<number, number>();
  /** Owner side: members' data connections. */
  private readonly conns = new Map<number, Connection>();

  constructor(private readonly n: Cluster) {}

  /** Owner side: a member's data channel. Replies go out on it; nothing comes in but heartbeats. */
  accept(c: Connection, id: number): void {
    if (!this.n.members.has(id) || this.n.closing) {
      c.close('protocol');
      return;
    }
    this.conns.get(id)?.close('replaced');
    this.conns.set(id, c);
    // The requester's faulting threads write their page requests here (native/fault_routes.h).
    c.on('message', (type: number, payload: Buffer) => {
      if (type !== Msg.PageRequest) return;
      try {
        this.n.serving.onRequest(id, payload);
      } catch (e) {
        this.n.ev.log('warn', `node ${id} sent a malformed page request on its data channel (${(e as Error).message}); closing it`);
        c.close('protocol');
      }
    });
    c.on('close', () => {
      if (this.conns.get(id) === c) this.conns.delete(id);
    });
    c.send(Msg.DataReady, Buffer.alloc(0));
  }

  /** Owner side: the open data connection of `requester`, if any. */
  connectionOf(requester: number): Connection | undefined {
    const c = this.conns.get(requester);
    return c && !c.isClosed ? c : undefined;
  }

  /** Requester side: replies from `owner` may come over a channel. */
  has(owner: number): boolean {
    return this.channels.has(owner);
  }

  /** Requester side: opens a data channel to `owner` (in the background; requests go the usual way meanwhile). */
  async open(owner: number): Promise<void> {
    const n = this.n;
    const m = n.members.get(owner);
    if (!m || this.channels.has(owner) || this.opening.has(owner) || n.closing) return;
    if (performance.now() - (this.failedAt.get(owner) ?? -Infinity) < REOPEN_AFTER_MS) return;
    this.opening.add(owner);
    let c: Connection | undefined;
    try {
      c = await n.transport.connect(m.address);
      const conn = c;
      const ready = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5000);
        conn.on('message', (type: number) => {
          if (type !== Msg.DataReady) return;
          clearTimeout(timer);
          resolve();
        });
        conn.on('close', (reason: string) => {
          clearTimeout(timer);
          reject(new Error(`closed (${reason})`));
        });
      });
      conn.send(Msg.Hello, encode.hello({ id: n.id, address: n.address, joining: false, client: false, data: true }));
      await ready;
      if (n.closing || !n.members.has(owner) || conn.fd < 0) throw new Error('no longer needed');
      const ch = n.native.openDataChannel(conn.fd, { ...n.transport.wire, replyType: Msg.PageReply });
      conn.release();
      this.channels.set(owner, ch);
      // From now on faults on its pages send their requests on the channel themselves.
      const { clusterId, protocolVersion } = n.transport.wire;
      n.native.routeFaults(owner, ch, { clusterId, protocolVersion, requestType: Msg.PageRequest, requester: n.id });
    } catch (e) {
      c?.close('local');
      this.failedAt.set(owner, performance.now());
      n.ev.log('warn', `no data channel to node ${owner} (${(e as Error).message}); its pages come over the main connection`);
    } finally {
      this.opening.delete(owner);
    }
  }

  /** Members whose replies come over a data channel. */
  owners(): number[] {
    return [...this.channels.keys()];
  }

  /** Owner side: members with a data connection to us. */
  requesters(): number[] {
    return [...this.conns.keys()];
  }

  /** Replies received on data channels (and channels that closed), from the native readers. */
  received(done: Float64Array): void {
    const n = this.n;
    for (let i = 0; i < done.length; i += 3) {
      const ch = done[i];
      const reqId = done[i + 1];
      if (reqId === 0xffffffff) {
        // native/data_channel.h ChannelEnd. An owner that closes the channel is leaving or
        // stopping (every fetch opens one, so every graceful exit of a node closes some):
        // its membership says the rest, and fetches reopen a channel while it is a member.
        const why = done[i + 2] === 2 ? 'it sent a malformed page reply' : done[i + 2] === 1 ? 'its connection failed' : undefined;
        for (const [owner, id] of this.channels) {
          if (id !== ch) continue;
          this.channels.delete(owner);
          if (why && n.members.has(owner)) n.ev.log('warn', `the data channel to node ${owner} closed (${why}); its pages come over the main connection`);
        }
        // Requests it was to answer are asked again by their retry timers.
        n.native.closeDataChannel(ch);
        continue;
      }
      n.log.hear(done[i + 2]);
      // Installed, or refused because a newer commit crossed the reply: either way the
      // faulting thread looks again and, if needed, asks the new owner.
      n.pager.finish(reqId);
    }
    n.pager.followScan();
  }

  /** `id` left the cluster: close both directions. */
  drop(id: number): void {
    this.conns.get(id)?.close('removed');
    this.conns.delete(id);
    this.failedAt.delete(id);
    const ch = this.channels.get(id);
    if (ch !== undefined) {
      this.channels.delete(id);
      this.n.native.closeDataChannel(ch);
    }
  }
}
