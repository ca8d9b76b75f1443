// NODE_DEBUG=dsm traces every cluster message on stderr, stamped with the monotonic clock in
// microseconds (the same on every process of a machine, so traces of several nodes merge). Written synchronously: a worker's
// process.stderr goes through the app thread, which may be blocked in a fault.
import { writeSync } from 'node:fs';

export const debug = Object.assign(
  (m: string) => {
    try {
      writeSync(2, `DSM ${process.hrtime.bigint() / 1000n} ${process.pid}: ${m}\n`);
    } catch {
      // stderr is a full non-blocking pipe: drop the trace line rather than the message.
    }
  },
  {
    enabled: /\bdsm\b/.test(process.env.NODE_DEBUG ?? ''),
  },
);
