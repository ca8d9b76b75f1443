// Asking a node which cluster it is a member of, without joining it: a client connection
// (authenticated like a peer, never a member), ClusterRequest, ClusterReply (cluster.ts
// serveClient). A page server asks before it founds or joins (lib/pageserver/live_cluster.ts);
// a joiner asks its peer for the members it must reach (admission.ts).
//
// What it costs: a refused connection (nothing listens) answers at once; a host that takes
// no connection at all (down, or a firewall that drops) is given CONNECT_MS; something that
// took the connection (a process that lives) is given ANSWER_MS to prove the secret and answer.
import type { ClusterIdentity } from './cluster_identity';
import { decode, encode, Msg, NO_NODE } from './protocol';
import type { Connection, Transport } from './transport';
import { AuthFailedError, ProtocolVersionError } from './transport_errors';
import type { Starting } from '../pageserver/live_cluster';

/** How long an address's host has to take the connection. */
export const CONNECT_MS = 1000;
/** How long a process that took it has to prove the secret and answer. */
export const ANSWER_MS = 5000;

/** What a member says of its cluster (cluster.ts serveClient). */
export interface ClusterReply {
  member: boolean;
  identity: ClusterIdentity;
  time: number;
  /** The members' addresses. */
  members: string[];
  /** No member: a page server asking too, now (lib/pageserver/live_cluster.ts Starting). */
  starting?: Starting;
}

/** One address's answer: a reply, nothing (`none`: why), or a refusal that is not silence (`blocking`: why). */
export type Answer = { address: string; reply: ClusterReply } | { address: string; none: string } | { address: string; blocking: string };

/** Asks `address` which cluster it is a member of (giving a process that took the connection `answerMs` to answer). */
export async function askCluster(transport: Transport, address: string, answerMs = ANSWER_MS): Promise<Answer> {
  let gaveUp = false;
  let timer: NodeJS.Timeout | undefined;
  let conn: Connection | undefined;
  const late = new Promise<Answer>((resolve) => {
    timer = setTimeout(() => {
      gaveUp = true;
      resolve({ address, none: `took the connection, no answer within ${answerMs} ms` });
    }, CONNECT_MS + answerMs);
  });
  const asked = (async (): Promise<Answer> => {
    try {
      conn = await transport.connect(address, CONNECT_MS);
    } catch (e) {
      if (e instanceof AuthFailedError) return { address, blocking: 'refused this secret (a node of this cluster with another secret, or of another cluster)' };
      if (e instanceof ProtocolVersionError) return { address, blocking: `speaks another protocol version (${e.message})` };
      const cause = (e as Error & { cause?: Error }).cause;
      if (cause?.message.startsWith('no answer within')) return { address, none: `${cause.message}: a host that is down, or a firewall that drops` };
      return { address, none: shortReason(e as Error) };
    }
    const c = conn;
    if (gaveUp) {
      c.close('late');
      return { address, none: 'late' };
    }
    return new Promise<Answer>((resolve) => {
      c.on('message', (type: number, payload: Buffer) => {
        if (type !== Msg.ClusterReply) return;
        try {
          resolve({ address, reply: decode.json(payload) as ClusterReply });
        } catch (e) {
          resolve({ address, none: `a malformed answer (${(e as Error).message})` });
        }
      });
      c.on('close', (reason: string) => resolve({ address, none: `closed the connection (${reason})` }));
      c.send(Msg.Hello, encode.hello({ id: NO_NODE, address: '', joining: false, client: true }));
      c.send(Msg.ClusterRequest, Buffer.alloc(0));
    });
  })();
  try {
    return await Promise.race([asked, late]);
  } finally {
    clearTimeout(timer);
    conn?.close('asked');
  }
}

function shortReason(e: Error): string {
  const m = /\(([^)]*)\)/.exec(e.message);
  return m ? m[1] : e.message;
}
