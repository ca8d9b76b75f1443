// Dialling members again. A connection to a member can end while the member lives (a reset
// somewhere on the path, a peer that closed it after a bad frame): the member is dialled
// again before it is suspected, since a suspect on two nodes is removed by the lower one
// within milliseconds and joins again under a new id. A member whose process died is still
// noticed at once: its address refuses the dial. And a suspect is dialled until it is back
// or removed, so that a node cut off learns what the cluster decided meanwhile.
//
// Of two members that both count each other in, the higher id dials (as joiners do), so
// they do not race two connections past each other; the lower one only checks that the
// other still answers, and waits for its dial. A member that answers but does not come
// back is suspected once it has had no connection for as long as a silent one is given
// (membership.ts checkUnconnected).
import { encode, Msg } from './protocol';
import type { Connection } from './transport';
import type { Cluster } from './cluster';

/**
 * Why a connection closed, as transport.ts says it: these end a connection whose peer may
 * well live. The rest are a peer that was silent for the failure detector's whole time
 * ('heartbeat'), that sent what it must not ('protocol'), or that read too slowly
 * ('backpressure'): suspected at once, as before.
 */
export function mayStillLive(reason: string): boolean {
  return reason === 'closed' || reason.startsWith('error:');
}

export class Redial {
  /** Members being dialled (or checked) after their connection ended, before any suspicion. */
  private readonly checking = new Set<number>();
  /** Suspects being dialled until they are back or removed. */
  private readonly redialing = new Set<number>();

  constructor(private readonly n: Cluster) {}

  /**
   * The connection to member `id` ended with `reason` (mayStillLive): dial it now if this
   * node dials it, or check that it answers. A dial or check that fails makes it a suspect.
   */
  afterClose(id: number, reason: string): void {
    const n = this.n;
    const m = n.members.get(id);
    if (!m || this.checking.has(id)) return;
    this.checking.add(id);
    const me = n.id;
    const dials = me > id;
    n.ev.log('warn', `the connection to node ${id} ended (${reason}); ${dials ? 'dialling it again' : 'checking that it still answers'}`);
    void (async () => {
      let c: Connection;
      try {
        c = await n.transport.connect(m.address, n.transport.deadAfterMs);
      } catch (e) {
        this.checking.delete(id);
        if (!n.closing && n.id === me && n.members.has(id) && !n.links.has(id)) {
          n.membership.suspect(id, `its connection ended (${reason}), and it did not answer a new one: ${(e as Error).message}`);
        }
        return;
      }
      this.checking.delete(id);
      if (n.closing || n.id !== me || !n.members.has(id) || n.links.has(id) || n.membership.suspects.has(id) || !dials) {
        // The check's connection says nothing: it proved the member answers, and its own
        // dial is on its way (or came in meanwhile).
        c.close(dials ? 'not needed' : 'checked');
        return;
      }
      this.hello(id, c);
    })();
  }

  /**
   * Member `id` is a suspect: dial it again until it is back, removed, or this node closes.
   * Nothing else would: a node cut off and then removed only learns it was removed (a
   * Removed answer to its Hello) by speaking to a member, so without this it stays cut off
   * for good once the network heals. A node without a quorum dials everyone it lost,
   * whatever their ids, since it is the one that must find out whether the cluster went on
   * without it.
   */
  whileSuspected(id: number): void {
    const n = this.n;
    if (this.redialing.has(id)) return;
    this.redialing.add(id);
    const me = n.id;
    void (async () => {
      try {
        for (let attempt = 0; ; attempt++) {
          await new Promise((r) => setTimeout(r, Math.min(1000, 100 * 2 ** attempt)).unref());
          const m = n.members.get(id);
          if (n.closing || n.id !== me || !m || !n.membership.suspects.has(id) || n.links.has(id)) return;
          if (me < id && !n.lease.partitioned) continue;
          let c: Connection;
          try {
            c = await n.transport.connect(m.address);
          } catch {
            continue;
          }
          if (n.closing || n.id !== me || !n.members.has(id) || n.links.has(id)) {
            c.close('not needed');
            return;
          }
          this.hello(id, c);
          return;
        }
      } finally {
        this.redialing.delete(id);
      }
    })();
  }

  /** As if member `id` had said Hello to us (membership.ts hello); if the cluster removed us, its answer is Removed, and this node joins again as a new member. */
  private hello(id: number, c: Connection): void {
    const n = this.n;
    c.send(Msg.Hello, encode.hello({ id: n.id, address: n.address, joining: false, client: false, to: id }));
    n.membership.suspects.delete(id);
    n.links.bind(id, c);
    n.recovery.memberBack(id);
    n.lease.changed();
  }
}
