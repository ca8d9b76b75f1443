// Mutual proof of the cluster secret, before anything else crosses a connection. Each side
// sends a fresh 32-byte nonce, then HMAC-SHA256(secret, role | own nonce | peer nonce |
// cluster id). The role byte differs for the side that dialled and the side that accepted,
// so a proof cannot be reflected back; fresh nonces make old proofs useless.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

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

/** The default cluster id: derived from the secret, so clusters with different secrets never mix frames. */
export function clusterIdFor(secret: Buffer): number {
  return createHash('sha256').update('node-dsm cluster id').update(secret).digest().readUInt32LE(0);
}
