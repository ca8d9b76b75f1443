// A node waiting at a barrier keeps its CPU awake with a thread spinning at idle priority
// (native/idle_poller.cc), read from the kernel's side: /proc says the thread's policy
// (SCHED_IDLE) and how long it has run (schedstat, ns). It runs while its node waits, and
// not once the barrier is passed, nor past barrierSpinUs; with barrierSpinUs 0 there is no
// such thread at all. A thread blocked in the kernel gains no run time, whatever the load.
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, until } from './harness';

const SCHED_IDLE = 5;

/** The node process's idle poller thread: [tid, policy], or undefined while it has none. */
function poller(n: RemoteNode): { tid: string; policy: number } | undefined {
  const pid = n.proc.pid!;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      if (fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() !== 'dsm-idle-poll') continue;
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // field 3 onwards
      return { tid, policy: Number(fields[41 - 3]) };
    } catch {
      // the thread ended meanwhile
    }
  }
  return undefined;
}

/** Nanoseconds the thread has run. */
function runNs(n: RemoteNode, tid: string): number {
  return Number(fs.readFileSync(`/proc/${n.proc.pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
}

/** Resolves once the thread's run time has stayed the same over 100 ms (it sleeps). */
async function asleep(n: RemoteNode, tid: string): Promise<void> {
  await until('the idle poller asleep', 30_000, async () => {
    const a = runNs(n, tid);
    await new Promise((r) => setTimeout(r, 100));
    return runNs(n, tid) - a < 1_000_000 ? true : undefined;
  });
}

describe.skipIf(process.platform !== 'linux')('a barrier keeps its CPU awake', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('an idle-priority thread spins while the node waits, and sleeps once the barrier is passed or its time is up', async () => {
    const [a, b] = await h.cluster(2, { barrierSpinUs: 300_000 });
    expect(poller(a)).toBeUndefined(); // made on the first wait
    const waited = a.run('await dsm.barrier("spin", 2); return true;');
    const p = await until('the idle poller thread', 30_000, async () => poller(a));
    expect(p.policy).toBe(SCHED_IDLE);
    // It runs while a waits (at idle priority it may get little CPU on a busy machine, but some).
    const start = runNs(a, p.tid);
    await until('the idle poller running', 30_000, async () => (runNs(a, p.tid) > start ? true : undefined));
    // Bounded: a still waits, but past 300 ms the thread stops.
    await asleep(a, p.tid);
    expect(await Promise.race([waited, new Promise((r) => setTimeout(() => r('waiting'), 50))])).toBe('waiting');
    // Another wait spins again, and the barrier's end stops it.
    await b.run('await dsm.barrier("spin", 2);');
    expect(await waited).toBe(true);
    const again = a.run('await dsm.barrier("spin", 2); return true;');
    const before = runNs(a, p.tid);
    await until('the idle poller running again', 30_000, async () => (runNs(a, p.tid) > before ? true : undefined));
    await b.run('await dsm.barrier("spin", 2);');
    expect(await again).toBe(true);
    await asleep(a, p.tid);
    expect(poller(a)?.tid).toBe(p.tid); // one thread, kept for the next wait
  });

  it('barrierSpinUs 0 never starts the thread; a bad value is refused', async () => {
    const [a, b] = await h.cluster(2, { barrierSpinUs: 0 });
    await Promise.all([a.run('await dsm.barrier("nospin", 2);'), b.run('await dsm.barrier("nospin", 2);')]);
    expect(poller(a)).toBeUndefined();
    expect(poller(b)).toBeUndefined();
    const bad = await a.run<string[]>(`const out = [];
      for (const barrierSpinUs of [-1, 1.5, 2_000_000, '10']) {
        try { await pkg.createNode({ barrierSpinUs }); out.push('accepted'); } catch (e) { out.push(e.code + ' ' + e.message); }
      }
      return out;`);
    for (const line of bad) expect(line).toMatch(/^ERR_DSM_INVALID_OPTION barrierSpinUs must be/);
  });
});
