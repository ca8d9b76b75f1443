// NODE_DEBUG=dsm traces every cluster message on stderr. Written synchronously: a worker's
// process.stderr goes through the app thread, which may be blocked in a fault.
import { writeSync } from 'node:fs';

export const debug = Object.assign(
  (m: string) => {
    try {
      writeSync(2, `DSM ${process.pid}: ${m}\n`);
    } catch {
      // stderr is a full non-blocking pipe: drop the trace line rather than the message.
    }
  },
  {
    enabled: /\bdsm\b/.test(process.env.NODE_DEBUG ?? ''),
  },
);
