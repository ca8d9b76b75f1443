// Ending live TCP connections from outside the processes, through the kernel's socket
// diagnostics (`ss -K`), as a reset on the path would: both ends see the connection fail
// while both processes live. Needs root and a kernel built with INET_DIAG_DESTROY.
import { execFileSync } from 'node:child_process';

/** Why connections cannot be ended here ('' if they can; the kernel is checked where it is used). */
export const socketsUnavailable = ((): string => {
  if (process.getuid?.() !== 0) return 'needs root to end sockets (ss -K)';
  try {
    execFileSync('ss', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'ss (iproute2) not installed';
  }
  return '';
})();

interface Tcp {
  local: number;
  peer: number;
  pid?: number;
}

/** Established TCP connections on loopback, with the owning process where `ss` names one. */
function established(): Tcp[] {
  const out = execFileSync('ss', ['-Htnp', 'state', 'established'], { encoding: 'utf8' });
  const port = (a: string) => Number(a.slice(a.lastIndexOf(':') + 1));
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [, , local, peer] = l.trim().split(/\s+/);
      const pid = /pid=(\d+)/.exec(l)?.[1];
      return { local: port(local), peer: port(peer), pid: pid === undefined ? undefined : Number(pid) };
    });
}

/**
 * Ends the connections matching `which` (ended from the side `ss` lists them on; the other
 * side sees a reset). Returns how many were open, or -1 if the kernel did not end them.
 */
function end(which: (c: Tcp) => boolean): number {
  const before = established().filter(which);
  if (before.length === 0) return 0;
  const filter = before.map((c) => `( sport = :${c.local} and dport = :${c.peer} )`).join(' or ');
  try {
    execFileSync('ss', ['-K', '-tn', 'state', 'established', `( ${filter} )`], { stdio: 'ignore' });
  } catch {
    return -1;
  }
  const after = new Set(established().map((c) => `${c.local}:${c.peer}`));
  return before.some((c) => after.has(`${c.local}:${c.peer}`)) ? -1 : before.length;
}

/** Ends every connection dialled to `port` (the listener's peers see them fail). */
export function endConnectionsTo(port: number): number {
  return end((c) => c.peer === port);
}

/** Ends every TCP connection process `pid` has open (those it dialled and those it accepted). */
export function endConnectionsOf(pid: number): number {
  return end((c) => c.pid === pid);
}
