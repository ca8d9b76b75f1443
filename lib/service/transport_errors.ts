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

/** Nothing answered at a peer's address: refused, unreachable, or a name that does not resolve. */
export class UnreachableError extends DsmError {
  constructor(address: string, cause: Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    const why =
      code === 'ECONNREFUSED'
        ? 'connection refused: nothing listens there'
        : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
          ? 'the host name does not resolve'
          : code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ETIMEDOUT'
            ? 'the host is unreachable'
            : cause.message;
    super('ERR_DSM_UNREACHABLE', `cannot reach ${address} (${why}); check the address and that a node or page server runs there`, { cause });
  }
}

/** This node cannot listen where it was told to (the address is taken, not this machine's, or privileged). */
export class ListenError extends DsmError {
  constructor(address: string, cause: Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    const why =
      code === 'EADDRINUSE'
        ? 'the address is in use: another node or program listens there; choose another port, or port 0 for any free one'
        : code === 'EADDRNOTAVAIL'
          ? 'no network interface of this machine has that address'
          : code === 'EACCES'
            ? 'ports below 1024 need privileges; choose a higher one'
            : cause.message;
    super('ERR_DSM_LISTEN', `cannot listen on ${address}: ${why}`, { cause });
  }
}
