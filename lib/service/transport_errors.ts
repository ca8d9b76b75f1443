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
