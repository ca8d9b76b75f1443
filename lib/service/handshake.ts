// Mutual proof of the cluster secret, before anything else crosses a connection. Each side
// sends a fresh 32-byte nonce, then HMAC-SHA256(secret, role | own nonce | peer nonce |
// cluster id). The role byte differs for the side that dialled and the side that accepted,
// so a proof cannot be reflected back; fresh nonces make old proofs useless.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const Role = { initiator: 1, acceptor: 2 } as const;

export function newNonce(): Buffer {
  return randomBytes(32);
}

export function proof(secret: Buffer, role: number, own: Buffer, peer: Buffer, clusterId: number): Buffer {
  const cid = Buffer.alloc(4);
  cid.writeUInt32LE(clusterId >>> 0);
  return createHmac('sha256', secret).update(Buffer.from([role])).update(own).update(peer).update(cid).digest();
}

export function verify(secret: Buffer, peerRole: number, peerNonce: Buffer, ownNonce: Buffer, clusterId: number, got: Buffer): boolean {
  const want = proof(secret, peerRole, peerNonce, ownNonce, clusterId);
  return got.length === want.length && timingSafeEqual(got, want);
}

/**
 * The default cluster id ("DSM" 1). Not derived from the secret: a node with the wrong
 * secret must reach the handshake to be told so (ERR_DSM_AUTH_FAILED), not be dropped as
 * a stranger. Give clusters that share hosts and ports their own ids.
 */
export const DEFAULT_CLUSTER_ID = 0x44534d01;
