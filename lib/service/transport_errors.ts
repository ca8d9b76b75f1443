// Errors of the transport layer.
import { DsmError } from '../errors';

/** A peer did not prove the cluster secret (or refused ours). */
export class AuthFailedError extends DsmError {
  constructor(remote: string) {
    super(
      'ERR_DSM_AUTH_FAILED',
      `authentication with ${remote} failed: the cluster secret did not match. Pass the same secret to every node.`,
    );
  }
}

/** A peer sent bytes that are not a valid frame of this protocol. */
export class ProtocolError extends DsmError {
  constructor(message: string) {
    super('ERR_DSM_PROTOCOL', message);
  }
}

/**
 * The other end closed the connection before the handshake was done: nothing was accepted
 * from it. Its own node closing while it connected, or a port check; no warning on the
 * accepting side.
 */
export class HandshakeClosedError extends ProtocolError {
  constructor(remote: string) {
    super(`${remote} closed the connection during the handshake`);
  }
}

/** A peer speaks another version of the protocol: it runs another node-dsm version. */
export class ProtocolVersionError extends ProtocolError {
  constructor(theirs: number, ours: number) {
    super(`the peer speaks node-dsm protocol version ${theirs}, this node ${ours}: every node of a cluster must run the same node-dsm version (dsm --version prints it)`);
  }
}

/** What a socket error means for the user, from its errno code; the system's message otherwise. */
function reason(cause: Error, byCode: Record<string, string>): string {
  return byCode[(cause as NodeJS.ErrnoException).code ?? ''] ?? cause.message;
}

const UNREACHABLE: Record<string, string> = {
  ECONNREFUSED: 'connection refused: nothing listens there',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name does not resolve',
  EHOSTUNREACH: 'the host is unreachable',
  ENETUNREACH: 'the host is unreachable',
  ETIMEDOUT: 'the host is unreachable',
};

/** Nothing answered at a peer's address: refused, unreachable, or a name that does not resolve. */
export class UnreachableError extends DsmError {
  constructor(address: string, cause: Error) {
    super('ERR_DSM_UNREACHABLE', `cannot reach ${address} (${reason(cause, UNREACHABLE)}); check the address and that a node or page server runs there`, { cause });
  }
}

const CANNOT_LISTEN: Record<string, string> = {
  EADDRINUSE: 'the address is in use: another node or program listens there; choose another port, or port 0 for any free one',
  EADDRNOTAVAIL: 'no network interface of this machine has that address',
  EACCES: 'ports below 1024 need privileges; choose a higher one',
};

/** This node cannot listen where it was told to (the address is taken, not this machine's, or privileged). */
export class ListenError extends DsmError {
  constructor(address: string, cause: Error) {
    super('ERR_DSM_LISTEN', `cannot listen on ${address}: ${reason(cause, CANNOT_LISTEN)}`, { cause });
  }
}
