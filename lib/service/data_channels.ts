// Data channels. A requester fetching another node's pages opens a second connection to
// it, and both ends take the socket over natively (see native/data_channel.h). Requests
// go out on it (the service's, and the faulting threads' own: native/fault_routes.h); the
// owner's end answers those its rules allow from the committed copies, without waking its
// service, and hands the rest to the service (answered over the main connection); the
// pages go from the socket straight into the requester's region, off its service thread,
// and its reader wakes the faulting thread itself (Dsm::AnswerFaults). So a single remote
// fault runs no JavaScript on either node. Opened at the first fetch from an owner.
import { performance } from 'node:perf_hooks';
import { encode, Msg } from './protocol';
import type { Connection } from './transport';
import type { Cluster } from './cluster';

/** After a data channel to a member could not be opened, fetches go the usual way this long before one is tried again. */
const REOPEN_AFTER_MS = 1000;
/** native/data_channel.h kChannelClosed and kRequestsForwarded. */
const CHANNEL_CLOSED = 0xffffffff;
const REQUESTS_FORWARDED = 0xfffffffe;
/** A PageRequest's payload (protocol.ts). */
const PAGE_REQUEST_BYTES = 22;
const EMPTY = new Uint8Array(0);

export class DataChannels {
  /** Requester side: native data channel ids by owner. */
  private readonly channels = new Map<number, number>();
  private readonly opening = new Set<number>();
  /** When opening a channel to a member last failed. */
  private readonly failedAt = new Map<number, number>();
  /** Owner side: members' data channels (native ids), by member. */
  private readonly conns = new Map<number, number>();

  /** Test hook: no channels, so every page goes over the main connections (and its backpressure). */
  private readonly disabled = process.env.DSM_TEST_NO_DATA_CHANNELS === '1';

  constructor(private readonly n: Cluster) {}

  /**
   * Owner side: a member's data channel, taken over natively (it serves the member's page
   * requests; see native/data_channel.h). Nothing can have come in on it yet: the member
   * sends its first request only once it has DataReady, which goes out natively after.
   */
  accept(c: Connection, id: number): void {
    const n = this.n;
    if (!n.members.has(id) || n.closing || c.fd < 0) {
      c.close('protocol');
      return;
    }
    const ch = n.native.openDataChannel(c.fd, { ...n.transport.wire, replyType: Msg.PageReply, serve: { requestType: Msg.PageRequest, me: n.id, member: id } });
    c.release();
    const old = this.conns.get(id);
    if (old !== undefined) n.native.closeDataChannel(old);
    this.conns.set(id, ch);
    if (!n.native.sendOnChannel(ch, Msg.DataReady, EMPTY)) this.closeServing(id, ch);
  }

  /** Owner side: requests the channel's native end handed over (it may not answer them itself). */
  private forwarded(ch: number): void {
    const n = this.n;
    const member = this.memberOf(ch);
    const all = n.native.takeForwarded(ch);
    if (member === undefined) return;
    for (let at = 0; at + PAGE_REQUEST_BYTES <= all.length; at += PAGE_REQUEST_BYTES) {
      try {
        n.serving.onRequest(member, all.subarray(at, at + PAGE_REQUEST_BYTES));
      } catch (e) {
        n.ev.log('warn', `node ${member} sent a malformed page request on its data channel (${(e as Error).message}); closing it`);
        this.closeServing(member, ch);
        return;
      }
    }
  }

  private memberOf(ch: number): number | undefined {
    for (const [id, c] of this.conns) if (c === ch) return id;
    return undefined;
  }

  private closeServing(member: number, ch: number): void {
    if (this.conns.get(member) === ch) this.conns.delete(member);
    this.n.native.closeDataChannel(ch);
  }

  /** Requester side: the data channel to `owner`, if one is open. */
  channelTo(owner: number): number | undefined {
    return this.channels.get(owner);
  }

  /** Requester side: opens a data channel to `owner` (in the background; requests go the usual way meanwhile). */
  async open(owner: number): Promise<void> {
    const n = this.n;
    const m = n.members.get(owner);
    if (!m || this.channels.has(owner) || this.opening.has(owner) || n.closing || this.disabled) return;
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
      n.native.routeFaults(owner, ch, { requestType: Msg.PageRequest, requester: n.id });
    } catch (e) {
      c?.close('local');
      this.failedAt.set(owner, performance.now());
      // Not worth a warning when either end is on its way out (a cluster closing at once).
      if (!n.closing && n.members.has(owner) && !n.leaving.leavers.has(owner) && !n.leaving.active) {
        n.ev.log('warn', `no data channel to node ${owner} (${(e as Error).message}); its pages come over the main connection`);
      }
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
      if (reqId === REQUESTS_FORWARDED) {
        this.forwarded(ch);
        continue;
      }
      if (reqId === CHANNEL_CLOSED) {
        const member = this.memberOf(ch);
        if (member !== undefined) {
          // The owner's end: the requester went, or its channel broke (it opens another).
          this.closeServing(member, ch);
          continue;
        }
        // native/data_channel.h ChannelEnd. An owner that closes the channel is leaving or
        // stopping (every fetch opens one, so every graceful exit of a node closes some):
        // its membership says the rest, and fetches reopen a channel while it is a member.
        const why = done[i + 2] === 2 ? 'it sent a malformed page reply' : done[i + 2] === 1 ? 'its connection failed' : undefined;
        for (const [owner, id] of this.channels) {
          if (id !== ch) continue;
          this.channels.delete(owner);
          if (why && n.members.has(owner)) n.ev.log('warn', `the data channel to node ${owner} closed (${why}); its pages come over the main connection`);
          // Requests it was to answer may have gone down with it: asked again now, over the
          // main connection (or of the successor of an owner that left).
          n.pager.reask(owner);
        }
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
    const served = this.conns.get(id);
    if (served !== undefined) this.closeServing(id, served);
    this.failedAt.delete(id);
    const ch = this.channels.get(id);
    if (ch !== undefined) {
      this.channels.delete(id);
      this.n.native.closeDataChannel(ch);
    }
  }
}
