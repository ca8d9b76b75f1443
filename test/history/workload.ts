// The list-append workload against real node processes: a plan (transactions and one
// fault) drawn from a seed, run on a cluster started through the harness, turned into a
// history and checked. Every run prints its seed; DSM_SEED replays one (the same
// transactions and fault; the interleaving is up to the processes).
import path from 'node:path';
import { type Harness, type RemoteNode, settle } from '../cluster/harness';
import { endConnectionsOf } from '../cluster/sockets';
import { AHEAD_MS } from '../../lib/service/commit_ring';
import { type CheckResult, check, describe as explain, type FinalRead, type History, type Op, type Txn } from './checker';
import { type Plan, type PlannedTxn, replayHint } from './plan';

export { drawPlan, type Fault, type FaultKind, type Plan, type PlanOptions, type PlannedTxn, replayHint, seedFromEnv } from './plan';

const FIXTURE = path.join(__dirname, 'fixtures/list_append.js');
/** Fault 'reset': how often the victim's connections are ended. */
const RESET_EVERY_MS = 100;
/** Run in a node: waits until none of its backups is still fetching the pages it owns (clusterStats().backupsCatchingUp), at most 60 s. */
const CAUGHT_UP = `for (let i = 0; i < 3000; i++) {
  if ((await dsm.clusterStats()).backupsCatchingUp.length === 0) return;
  await new Promise((r) => setTimeout(r, 20));
}
throw new Error('backups still catching up after 60 s');`;

export interface RunResult {
  plan: Plan;
  history: History;
  result: CheckResult;
  /** What the fault did, for the failure message. */
  faultLog: string[];
  /** Node process index -> cluster node id, at the end (a node removed and joined again has a new one). */
  ids: number[];
  /** The same when the nodes had started. */
  firstIds: number[];
  /** Node processes killed or gone (by index). */
  gone: number[];
  /** Transactions by outcome. */
  counts: { ok: number; failed: number; unknown: number };
  /** Failed transactions by error code. */
  failures: Record<string, number>;
  /** Reads whose newest element another node appended: how much the nodes really interleaved. */
  crossNodeReads: number;
  ms: number;
}

export interface RunOptions {
  /**
   * A node process whose transactions read two keys outside transactions (no isolation)
   * until a pair of reads is skewed; the others run until it has seen that.
   */
  unisolatedReader?: number;
  cluster?: Record<string, unknown>;
  /** Every node joins through a page server started first (store in a fresh directory). */
  pageServer?: boolean;
  /** Faults 'partition', 'stall', 'restart' and 'reset' hit the page server instead (the victim's progress still times them). */
  hitPageServer?: boolean;
  /** Partitions node processes and heals them (faults 'partition', 'bridge', 'deaf'; test/cluster/netns.ts NetnsHarness). */
  net?: {
    cut(n: RemoteNode): void;
    heal(n: RemoteNode): void;
    isolate(a: RemoteNode, b: RemoteNode): void;
    unisolate(a: RemoteNode, b: RemoteNode): void;
    deafen(n: RemoteNode): void;
    undeafen(n: RemoteNode): void;
  };
}

/**
 * Runs `plan` on fresh node processes of `h` and checks the history. A run that has not
 * finished after `deadlineMs` (generous: a run takes seconds) fails with what each node
 * was doing, and any failure names the seed.
 */
export async function runPlan(h: Harness, plan: Plan, opts: RunOptions & { deadlineMs?: number } = {}): Promise<RunResult> {
  const state = { phase: 'starting the nodes' };
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(async () => {
      const nodes = await h.diagnose();
      reject(new Error(`no result after ${opts.deadlineMs ?? 100_000} ms while ${state.phase}:\n${nodes}`));
    }, opts.deadlineMs ?? 100_000);
  });
  try {
    return await Promise.race([execute(h, plan, opts, state), deadline]);
  } catch (e) {
    const err = e as Error;
    err.message = `${replayHint(plan.seed)} (fault ${plan.fault.kind}): ${err.message}`;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function execute(h: Harness, plan: Plan, opts: RunOptions, state: { phase: string }): Promise<RunResult> {
  const t0 = Date.now();
  const faultLog: string[] = [];
  let clusterOpts: Record<string, unknown> = { heartbeatMs: 200, deadAfterMs: 2000, ...opts.cluster };
  let procs: RemoteNode[];
  let pageServer: RemoteNode | undefined;
  // The page server's process options (a restart starts it again on the same store).
  let pageServerOpts: { dir: string; heartbeatMs: unknown; deadAfterMs: unknown } | undefined;
  if (opts.pageServer) {
    pageServerOpts = { dir: path.join(h.tempDir('dsm-history-store-'), 'store'), heartbeatMs: clusterOpts.heartbeatMs, deadAfterMs: clusterOpts.deadAfterMs };
    const ps = await h.pageServer(pageServerOpts);
    pageServer = ps;
    clusterOpts = { ...clusterOpts, peers: [ps.address] };
    procs = [];
    for (let i = 0; i < plan.nodes; i++) procs.push(await h.start(clusterOpts));
  } else {
    procs = await h.cluster(plan.nodes, clusterOpts);
  }
  const ids0 = procs.map((p) => p.nodeId);
  const { ptr } = await procs[0].run<{ ptr: number }>('return require(args.fixture).setup(dsm, args);', { fixture: FIXTURE, keys: plan.keys, keysPerPage: plan.keysPerPage });
  await settle(procs);

  state.phase = 'running the transactions';
  const { fault } = plan;
  const gone = new Set<number>(); // process indices that died or left
  const start = (i: number, p: RemoteNode) => {
    const args: Record<string, unknown> = { fixture: FIXTURE, ptr, keys: plan.keys, keysPerPage: plan.keysPerPage, txns: plan.txns[i] };
    if ((fault.kind === 'leave' || fault.kind === 'leave-kill') && i === fault.victim) args.leaveAfter = fault.after;
    if (fault.kind === 'kill-token-holder' && i === fault.victim) args.dieHoldingTokenAfter = fault.after;
    if (opts.unisolatedReader === i) Object.assign(args, { isolation: 'none', untilSkew: true });
    else if (opts.unisolatedReader !== undefined) args.untilStopped = true;
    return p.run('return require(args.fixture).run(dsm, args);', args).catch((e: Error) => {
      // Only the SIGKILL the schedule dealt excuses a run; a crash or an error is reported.
      if (!(gone.has(i) && p.proc.signalCode === 'SIGKILL')) throw e;
    });
  };
  const go = async (p: RemoteNode) => {
    await p.waitForLine((l) => l === 'H ready');
    await p.run('require(args.fixture).start();', { fixture: FIXTURE });
  };
  const runs = procs.map((p, i) => start(i, p));
  // Awaited below, after the fault; a rejection before then is not unhandled.
  for (const r of runs) r.catch(() => undefined);
  await Promise.all(procs.map((p) => p.waitForLine((l) => l === 'H ready')));
  await Promise.all(procs.map(go));

  const victim = procs[fault.victim];
  // All nodes started together (above), so the victim's own progress places the fault.
  // A victim whose run ends first (it failed) is hit then, and its error reported below.
  const victimDone = () => runs[fault.victim].then(() => undefined, () => undefined);
  const reached = () => Promise.race([victim.waitForLine((l) => l.startsWith(`H C ${fault.after - 1} `)).catch(() => undefined), victimDone()]);

  /** For a stall: how many transactions the victim had begun when it stopped. */
  let stoppedAt: number | undefined;
  /** For a partition: when the victim was cut off (excuseCrashedTail). */
  let cutAt: CutOff | undefined;
  /** For 'leave-kill': the process killed after the victim left. */
  let killedAfterLeave: number | undefined;
  /** For 'churn': the processes killed, in turn. */
  const churned: number[] = [];
  const faultDone = (async () => {
    switch (fault.kind) {
      case 'none':
        return;
      case 'kill':
      case 'restart': {
        await reached();
        if (opts.hitPageServer && fault.kind === 'restart') {
          // The page server killed, and started again on its store while the nodes commit
          // ('disk' commits wait meanwhile): it joins again and catches up.
          const old = pageServer!;
          old.kill('SIGKILL');
          faultLog.push(`SIGKILL the page server (node ${old.nodeId}) after ${completed(victim)} completed transactions of node ${victim.nodeId}`);
          await old.exited;
          const survivor = procs[0];
          await survivor.waitForLine((l) => l === `peer-leave ${old.nodeId}`);
          pageServer = await h.pageServer({ ...pageServerOpts!, peers: [survivor.address] });
          faultLog.push(`the page server started again on its store, joined as node ${pageServer.nodeId}`);
          return;
        }
        gone.add(fault.victim);
        victim.kill('SIGKILL');
        faultLog.push(`SIGKILL node ${victim.nodeId} (process ${fault.victim}) after ${completed(victim)} completed transactions`);
        await victim.exited;
        if (fault.kind === 'restart') {
          const survivor = procs.find((_, i) => !gone.has(i))!;
          await survivor.waitForLine((l) => l === `peer-leave ${victim.nodeId}`);
          const fresh = await h.start({ ...clusterOpts, peers: [survivor.address] });
          procs.push(fresh);
          faultLog.push(`restart: node ${fresh.nodeId} (process ${procs.length - 1}) joined in its place`);
          const r = start(procs.length - 1, fresh);
          r.catch(() => undefined);
          runs.push(r);
          await go(fresh);
        }
        return;
      }
      case 'churn': {
        // Nodes die one after another, each replaced by a new one: the backups of every page
        // move again and again (pages a recovery handed to a survivor, a joiner becoming a
        // backup). Each kill waits until no live node has a backup still catching up, since
        // one backup covers one failure at a time; then nothing acknowledged may be lost.
        let at = fault.victim;
        for (let round = 0; round < plan.cuts; round++) {
          const hit = procs[at];
          if (round === 0) await reached();
          else await Promise.race([hit.waitForLine((l) => l.startsWith(`H C ${fault.after - 1} `)).catch(() => undefined), runs[at].then(() => undefined, () => undefined)]);
          await Promise.all(procs.filter((_, i) => !gone.has(i)).map((p) => p.run(CAUGHT_UP)));
          gone.add(at);
          churned.push(at);
          hit.kill('SIGKILL');
          faultLog.push(`churn ${round + 1} of ${plan.cuts}: SIGKILL node ${hit.nodeId} (process ${at}) after ${completed(hit)} completed transactions, its backups caught up`);
          await hit.exited;
          const survivor = procs.find((_, i) => !gone.has(i))!;
          await survivor.waitForLine((l) => l === `peer-leave ${hit.nodeId}`);
          const fresh = await h.start({ ...clusterOpts, peers: [survivor.address] });
          procs.push(fresh);
          const r = start(procs.length - 1, fresh);
          r.catch(() => undefined);
          runs.push(r);
          faultLog.push(`node ${fresh.nodeId} (process ${procs.length - 1}) joined in its place`);
          await go(fresh);
          const alive = procs.map((_, i) => i).filter((i) => !gone.has(i));
          at = alive[(fault.second + round) % alive.length];
        }
        return;
      }
      case 'kill-two': {
        // Two nodes at once: with `replicas: 2` every page's latest version survives on a third.
        await reached();
        const other = procs[fault.second];
        gone.add(fault.victim).add(fault.second);
        victim.kill('SIGKILL');
        other.kill('SIGKILL');
        faultLog.push(`SIGKILL nodes ${victim.nodeId} and ${other.nodeId} (processes ${fault.victim} and ${fault.second}) at once, after ${completed(victim)} completed transactions of the first`);
        await Promise.all([victim.exited, other.exited]);
        return;
      }
      case 'kill-all': {
        // Every process at once, the page server too: a power cut. The page server starts
        // again on its store and founds the cluster again at its time; fresh nodes join it
        // and run lists of their own. Every commit acknowledged as durable ('disk') must be
        // in the final lists; those in flight at the cut are unknown. With more than one cut
        // the fresh nodes are cut in turn, so a restart replays a store that a restart wrote.
        if (!pageServer) throw new Error("fault 'kill-all' needs a page server (pageServer: true)");
        let hit = victim;
        let hitDone = victimDone;
        for (let cut = 0; cut < plan.cuts; cut++) {
          if (cut === 0) await reached();
          else await Promise.race([hit.waitForLine((l) => l.startsWith(`H C ${fault.after - 1} `)).catch(() => undefined), hitDone()]);
          const alive = procs.filter((_, i) => !gone.has(i));
          const dead = [...alive, pageServer];
          procs.forEach((_, i) => gone.add(i));
          for (const p of dead) p.kill('SIGKILL');
          faultLog.push(`SIGKILL every process (nodes ${alive.map((p) => p.nodeId).join(', ')} and the page server, node ${pageServer.nodeId}) after ${completed(hit)} completed transactions of node ${hit.nodeId}`);
          await Promise.all(dead.map((p) => p.exited));
          pageServer = await h.pageServer(pageServerOpts!);
          const time = await pageServer.run<number>('return ps.appliedTime;');
          const replayed = pageServer.stderr.split('\n').find((l) => l.includes('replayed'));
          faultLog.push(`the page server started again on its store at time ${time} (node ${pageServer.nodeId})${replayed ? `: ${replayed.slice(replayed.indexOf('replayed'))}` : ', nothing to replay'}`);
          clusterOpts = { ...clusterOpts, peers: [pageServer.address] };
          const fresh: RemoteNode[] = [];
          for (let i = 0; i < plan.nodes; i++) fresh.push(await h.start(clusterOpts));
          const first = procs.length;
          for (const p of fresh) {
            procs.push(p);
            const r = start(procs.length - 1, p);
            r.catch(() => undefined);
            runs.push(r);
          }
          faultLog.push(`fresh nodes ${fresh.map((p) => p.nodeId).join(', ')} (processes ${first}..${procs.length - 1}) joined it`);
          await Promise.all(fresh.map(go));
          const at = first + fault.victim;
          hit = procs[at];
          hitDone = () => runs[at].then(() => undefined, () => undefined);
        }
        return;
      }
      case 'kill-token-holder': {
        gone.add(fault.victim);
        await Promise.race([victim.exited, runs[fault.victim]]);
        if (!victim.lines.includes('H dying holding the token')) {
          victim.kill('SIGKILL');
          await victim.exited;
          faultLog.push(`node ${victim.nodeId} never held the token after ${fault.after} transactions: SIGKILLed at its end instead`);
        } else {
          faultLog.push(`node ${victim.nodeId} (process ${fault.victim}) SIGKILLed itself holding the token after ${completed(victim)} completed transactions`);
        }
        return;
      }
      case 'stall': {
        await reached();
        if (opts.hitPageServer) {
          pageServer!.kill('SIGSTOP');
          faultLog.push(`SIGSTOP the page server (node ${pageServer!.nodeId}) for ${fault.stallMs} ms after ${completed(victim)} completed transactions of node ${victim.nodeId}`);
          await new Promise((r) => setTimeout(r, fault.stallMs));
          pageServer!.kill('SIGCONT');
          return;
        }
        victim.kill('SIGSTOP');
        faultLog.push(`SIGSTOP node ${victim.nodeId} (process ${fault.victim}) for ${fault.stallMs} ms after ${completed(victim)} completed transactions`);
        await new Promise((r) => setTimeout(r, fault.stallMs));
        // Every line it wrote before it stopped has been read by now: the transactions it had
        // begun (one may have committed without printing its completion yet).
        stoppedAt = victim.lines.filter((l) => l.startsWith('H I ')).length;
        victim.kill('SIGCONT');
        return;
      }
      case 'stall-two': {
        // Two nodes stopped together (replicated durability: nothing of theirs is excused);
        // past the failure detector the others remove both, and both join again.
        await reached();
        const other = procs[fault.second];
        victim.kill('SIGSTOP');
        other.kill('SIGSTOP');
        faultLog.push(`SIGSTOP nodes ${victim.nodeId} and ${other.nodeId} (processes ${fault.victim} and ${fault.second}) together for ${fault.stallMs} ms after ${completed(victim)} completed transactions of the first`);
        await new Promise((r) => setTimeout(r, fault.stallMs));
        victim.kill('SIGCONT');
        other.kill('SIGCONT');
        return;
      }
      case 'partition': {
        if (!opts.net) throw new Error("fault 'partition' needs a harness that can cut a node off (NetnsHarness)");
        await reached();
        if (opts.hitPageServer) {
          opts.net.cut(pageServer!);
          faultLog.push(`cut the page server (node ${pageServer!.nodeId}) off the network for ${fault.stallMs} ms after ${completed(victim)} completed transactions of node ${victim.nodeId}`);
          await new Promise((r) => setTimeout(r, fault.stallMs));
          opts.net.heal(pageServer!);
          return;
        }
        // Stamped on the clock the victim's lines use (the same host), before the cut begins.
        cutAt = { after: completed(victim), atMs: performance.timeOrigin + performance.now() };
        opts.net.cut(victim);
        faultLog.push(`cut node ${victim.nodeId} (process ${fault.victim}) off the network for ${fault.stallMs} ms after ${completed(victim)} completed transactions`);
        await new Promise((r) => setTimeout(r, fault.stallMs));
        opts.net.heal(victim);
        return;
      }
      case 'bridge': {
        if (!opts.net) throw new Error("fault 'bridge' needs a harness that can partition nodes (NetnsHarness)");
        const partner = procs[(fault.victim + 1) % plan.nodes];
        await reached();
        opts.net.isolate(victim, partner);
        faultLog.push(`node ${victim.nodeId} (process ${fault.victim}) and node ${partner.nodeId} cut off from each other (both still reach the rest) for ${fault.stallMs} ms after ${completed(victim)} completed transactions`);
        await new Promise((r) => setTimeout(r, fault.stallMs));
        opts.net.unisolate(victim, partner);
        return;
      }
      case 'deaf': {
        if (!opts.net) throw new Error("fault 'deaf' needs a harness that can partition nodes (NetnsHarness)");
        await reached();
        opts.net.deafen(victim);
        faultLog.push(`node ${victim.nodeId} (process ${fault.victim}) hears nothing (the others still hear it) for ${fault.stallMs} ms after ${completed(victim)} completed transactions`);
        await new Promise((r) => setTimeout(r, fault.stallMs));
        opts.net.undeafen(victim);
        return;
      }
      case 'reset': {
        // Every connection of the victim ended from outside, a round every RESET_EVERY_MS
        // for stallMs, while every process runs on: nobody is suspected (redial.ts).
        await reached();
        const at = completed(victim);
        let ended = 0;
        let rounds = 0;
        let finished = false;
        void victimDone().then(() => (finished = true));
        // The page server's, with hitPageServer (the victim's progress still times them).
        const hit = opts.hitPageServer ? pageServer! : victim;
        for (const until = Date.now() + fault.stallMs; Date.now() < until && !finished; rounds++) {
          const n = endConnectionsOf(hit.proc.pid!);
          if (n < 0) throw new Error("fault 'reset': the kernel did not end the sockets (needs root and INET_DIAG_DESTROY)");
          ended += n;
          await new Promise((r) => setTimeout(r, RESET_EVERY_MS));
        }
        faultLog.push(`ended ${hit === victim ? `node ${hit.nodeId}'s` : `the page server's (node ${hit.nodeId})`} connections from outside (${ended} in ${rounds} rounds) for ${fault.stallMs} ms after ${at} completed transactions of node ${victim.nodeId} (${completed(victim)} at the end)`);
        return;
      }
      case 'leave':
      case 'leave-kill': {
        await Promise.race([victim.waitForLine((l) => l === 'H left'), victimDone()]);
        if (!victim.lines.includes('H left')) return; // its run failed: reported below
        gone.add(fault.victim);
        faultLog.push(`node ${victim.nodeId} (process ${fault.victim}) left gracefully after ${completed(victim)} transactions`);
        if (fault.kind === 'leave') return;
        // Its successor (the lowest member that stays) took its pages over, and may have been
        // its backup: killed at once, before anything else happens, it must take no
        // acknowledged commit along (leave_backups.test.ts has the two cases this covers).
        let next = -1;
        procs.forEach((p, i) => {
          if (!gone.has(i) && (next < 0 || p.nodeId < procs[next].nodeId)) next = i;
        });
        if (next < 0) return;
        killedAfterLeave = next;
        gone.add(next);
        procs[next].kill('SIGKILL');
        faultLog.push(`SIGKILL node ${procs[next].nodeId} (process ${next}), its successor, as the close returned`);
        await procs[next].exited;
        return;
      }
    }
  })();
  await faultDone;
  state.phase = 'running the transactions after the fault';
  if (opts.unisolatedReader !== undefined) {
    const writers = runs.filter((_, i) => i !== opts.unisolatedReader);
    await Promise.race([runs[opts.unisolatedReader], Promise.all(writers)]);
    await Promise.all(procs.map((p) => p.run('require(args.fixture).stop();', { fixture: FIXTURE })));
  }
  await Promise.all(runs);
  if (fault.kind === 'kill-all') {
    // A node that joins the restarted page server once the writing is over, and only reads:
    // everything it sees comes from the page server's store and the fresh nodes, never
    // from the nodes that ran before the cut.
    state.phase = 'starting a reader that joins the restarted page server';
    const reader = await h.start(clusterOpts);
    procs.push(reader);
    faultLog.push(`node ${reader.nodeId} (process ${procs.length - 1}) joined the restarted page server after the last transaction, to read only`);
  }

  const survivors = procs.filter((_, i) => !gone.has(i));
  state.phase = 'waiting for the survivors to agree on the members (a stalled node joins again)';
  // A page server removed while cut off joins again under a new id.
  await converge(survivors, async () => (pageServer ? [await pageServer.run<number>('return ps.nodeId;')] : []));
  state.phase = 'waiting for the survivors to apply every commit';
  await settle(survivors);
  state.phase = 'reading the final lists';
  const finals: FinalRead[] = [];
  for (const s of survivors) {
    const f = await s.run<{ lists: Record<string, number[]>; lost: number[] }>('return require(args.fixture).finalRead(dsm, args);', {
      fixture: FIXTURE,
      ptr,
      keys: plan.keys,
      keysPerPage: plan.keysPerPage,
    });
    finals.push({ node: procs.indexOf(s), lists: new Map(Object.entries(f.lists).map(([k, v]) => [Number(k), v])), lost: new Set(f.lost) });
  }

  const history: History = { txns: procs.flatMap((p, i) => txnsOf(p, i, plan.txns[i])), finals };
  // A killed node, and a stalled one (whether the others removed it meanwhile or only took
  // the token it held), lose what they committed in their last moments: see excuseCrashedTail.
  // A node cut off the network likewise, up to its first refused transaction (it runs on).
  const cutOff =
    fault.kind === 'kill-two'
      ? [fault.victim, fault.second]
      : fault.kind === 'churn'
        ? churned
      : killedAfterLeave !== undefined
        ? [killedAfterLeave]
      : fault.kind === 'kill' || fault.kind === 'restart' || fault.kind === 'kill-token-holder' || fault.kind === 'stall' || fault.kind === 'partition'
        ? [fault.victim]
        : [];
  // Only durability 'none' acknowledges commits no other node holds yet.
  const excused = clusterOpts.durability === 'none' ? excuseCrashedTail(history, cutOff, fault.kind !== 'stall' && fault.kind !== 'partition', stoppedAt, faultLog, cutAt) : 0;
  if (excused) faultLog.push(`${excused} transaction(s) of node ${ids0[fault.victim]} acknowledged before it was cut off count as unknown (durability 'none': the commits it made in its last moments in the old configuration are void)`);
  const counts = { ok: 0, failed: 0, unknown: 0 };
  for (const t of history.txns) counts[t.outcome]++;
  // `H C <seq> <ms> fail <code>` (fixtures/list_append.js): why transactions failed.
  const failures: Record<string, number> = {};
  for (const p of procs) for (const l of p.lines) if (l.startsWith('H C ') && l.split(' ')[4] === 'fail') failures[l.split(' ')[5]] = (failures[l.split(' ')[5]] ?? 0) + 1;
  return { plan, history, result: check(history), faultLog, ids: procs.map((p) => p.nodeId), firstIds: ids0, gone: [...gone], counts, failures, crossNodeReads: crossNodeReads(history), ms: Date.now() - t0 };
}

/**
 * Waits until the survivors are one cluster again: each counts exactly the survivors as
 * members, and none refuses a transaction as partitioned. A node stalled past the failure
 * detector's limit was removed while it was stopped, and joins again under a new id once it
 * runs (until then its transactions fail with ERR_DSM_PARTITIONED); the final reads wait for that.
 */
async function converge(survivors: RemoteNode[], othersNow: () => Promise<number[]>): Promise<void> {
  for (;;) {
    const views = await Promise.all(
      survivors.map((s) =>
        s.run<{ id: number; members: number[]; ready: boolean }>(
          `const { members } = await dsm.clusterStats();
           let ready = true;
           try { await dsm.transaction(() => 0); } catch (e) { if (e.code !== 'ERR_DSM_PARTITIONED') throw e; ready = false; }
           return { id: dsm.nodeId, members: [...members].sort((a, b) => a - b), ready };`,
        ),
      ),
    );
    const ids = [...views.map((v) => v.id), ...(await othersNow())].sort((a, b) => a - b);
    if (views.every((v) => v.ready && v.members.join() === ids.join())) {
      survivors.forEach((s, i) => (s.nodeId = views[i].id));
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

function crossNodeReads(h: History): number {
  const by = new Map<string, number>();
  for (const t of h.txns) for (const o of t.ops) if (o.f === 'append') by.set(`${o.key}:${o.value}`, t.node);
  let n = 0;
  for (const t of h.txns) {
    if (t.outcome !== 'ok') continue;
    for (const o of t.ops) {
      const last = o.f === 'read' && o.value?.length ? o.value[o.value.length - 1] : undefined;
      if (last !== undefined && by.get(`${o.key}:${last}`) !== t.node) n++;
    }
  }
  return n;
}

const completed = (p: RemoteNode): number => p.lines.filter((l) => l.startsWith('H C ')).length;

/** The transactions a node process recorded: invoked ones without completion are unknown. */
function txnsOf(p: RemoteNode, node: number, planned: PlannedTxn[]): Txn[] {
  const out: Txn[] = [];
  // `H I <seq> <ms>` and `H C <seq> <ms> <result>` (fixtures/list_append.js).
  const invoked = new Map<number, number>();
  const done = new Map<number, { at: number; result: string }>();
  for (const l of p.lines) {
    const [, , seq, at] = l.split(' ', 4);
    if (l.startsWith('H I ')) invoked.set(Number(seq), Number(at));
    else if (l.startsWith('H C ')) done.set(Number(seq), { at: Number(at), result: l.slice(4 + seq.length + 1 + at.length + 1) });
  }
  for (const [seq, invokedAt] of invoked) {
    const t = planned[seq];
    const d = done.get(seq);
    if (d === undefined || !d.result.startsWith('ok ')) {
      // Committed but not replicated when the node lost the cluster: it may or may not have survived.
      const outcome = d === undefined || d.result === 'fail ERR_DSM_COMMIT_UNCERTAIN' ? 'unknown' : 'failed';
      out.push({ node, seq, outcome, ops: t.ops.map((o) => (o.f === 'read' ? { ...o, value: null } : o)), invokedAt, completedAt: d?.at });
      continue;
    }
    const reads: number[][] = JSON.parse(d.result.slice(3));
    let r = 0;
    out.push({ node, seq, outcome: 'ok', ops: t.ops.map((o): Op => (o.f === 'read' ? { ...o, value: reads[r++] } : o)), invokedAt, completedAt: d.at });
  }
  return out;
}

/** A summary line for logs and failure messages. */
export function summary(r: RunResult): string {
  const { plan } = r;
  const lostBy = (dead: boolean) => r.result.anomalies.filter((a) => a.type === 'lost-write' && r.gone.includes(Number(a.txns![0].slice(1, a.txns![0].indexOf('#')))) === dead).length;
  const lost = r.result.anomalies.some((a) => a.type === 'lost-write') ? `; lost writes: ${lostBy(false)} by survivors, ${lostBy(true)} by nodes that died or left` : '';
  return (
    `${replayHint(plan.seed)}: ${plan.nodes} nodes, ${plan.keys} keys (${plan.keysPerPage} per page), fault ${plan.fault.kind}; ` +
    `${r.counts.ok} ok, ${r.counts.failed} failed${Object.keys(r.failures).length ? ` (${Object.entries(r.failures).map(([c, k]) => `${c} ${k}`).join(', ')})` : ''}, ${r.counts.unknown} unknown in ${r.ms} ms, ${r.crossNodeReads} reads of another node's append; process -> node id ${r.ids.join(',')}${lost}` +
    (r.faultLog.length ? `\n  ${r.faultLog.join('\n  ')}` : '')
  );
}

/** Throws with the seed, the fault and every anomaly unless the history checks out. */
export function assertValid(r: RunResult): void {
  if (r.result.valid) return;
  const lines = explain(r.result).split('\n');
  const shown = lines.length > 60 ? [...lines.slice(0, 60), `… ${lines.length - 60} more lines`] : lines;
  throw new Error(`history check failed, ${summary(r)}\n${r.result.anomalies.length} anomalies:\n${shown.join('\n')}`);
}

/** When a partition cut its victim off: its completed count as read then (at least), and the moment (ms, the victim's clock). */
export interface CutOff {
  after: number;
  atMs: number;
}

/** Clock granularity and the instructions between the ring's age check and a transaction's stamps. */
const RING_SLACK_MS = 0.5;

/**
 * Whether a cut-off node's lost transactions acknowledged before the cut are what its commit
 * ring can hold (lib/service/commit_ring.ts): lent-token commits its service had not
 * broadcast yet. The app adds to the ring only while the oldest commit waiting there is at
 * most AHEAD_MS old, so all of them were made in one such window: each began (invokedAt) at
 * most AHEAD_MS after the earliest of them completed. Bounded in time, not in count: a
 * service thread kept off the CPU leaves a fast app 30-50 acknowledged commits in its ring.
 * Without stamps, the count bound: at most CUT_SLACK before the count read at the cut.
 */
function cutRingWindow(stretch: Txn[], cut: CutOff): { fits: boolean; note: string } {
  const CUT_SLACK = 8;
  const before = stretch.filter((t) => t.ops.some((o) => o.f === 'append') && (t.completedAt === undefined ? t.seq < cut.after : t.completedAt < cut.atMs));
  if (before.length === 0) return { fits: true, note: 'none of it acknowledged before the cut' };
  if (before.some((t) => t.invokedAt === undefined || t.completedAt === undefined)) {
    return { fits: before[0].seq >= cut.after - CUT_SLACK, note: `${before.length} acknowledged before the cut (no stamps: at most ${CUT_SLACK})` };
  }
  const span = Math.max(...before.map((t) => t.invokedAt!)) - Math.min(...before.map((t) => t.completedAt!));
  return {
    fits: span <= AHEAD_MS + RING_SLACK_MS,
    note: `${before.length} acknowledged before the cut, within ${span.toFixed(2)} ms of each other (the commit ring holds ${AHEAD_MS} ms)`,
  };
}

/**
 * A node killed within the millisecond before its lent-token commits are broadcast takes
 * them with it (durability 'none', documented): its own app saw them acknowledged, and
 * nobody alive did. A node stalled or cut off past the failure detector likewise: what it
 * committed with the lent token that had not gone out when it stopped, or until its lease
 * ran out, is void once the others regenerated the token (whether or not they removed it).
 * A stalled node is bounded tighter: the excused stretch must end where it stopped
 * (`stoppedAt`, the transactions it had begun then), since it commits nothing it could lose
 * after it runs again. So, for such a node, the transactions from
 * its first acknowledged append missing from the final state (in a key nobody reported
 * lost) up to its first refused transaction (ERR_DSM_PARTITIONED: it noticed) or its first
 * transaction whose appends survive (it joined again and went on), count as unknown, as a crashed client's operations do in Jepsen, as long as that
 * stretch is short (CRASH_TAIL transactions at most: a loss further back is a real lost
 * write and stays one; for a cut-off node, what it lost of what it acknowledged before the
 * cut must fit its commit ring, cutRingWindow, and all it acknowledged after is void). Everything it did after that stretch, and every other node's
 * transactions, are checked in full. Returns how many were excused.
 */
export function excuseCrashedTail(h: History, killed: number[], died = true, stoppedAt?: number, why: string[] = [], cut?: CutOff): number {
  const CRASH_TAIL = 200;
  let excused = 0;
  const final = h.finals[0];
  if (!final) return 0;
  const present = (key: number, value: number) => final.lost.has(key) || (final.lists.get(key) ?? []).includes(value);
  for (const node of killed) {
    const mine = h.txns.filter((t) => t.node === node).sort((a, b) => a.seq - b.seq);
    const lostIn = (t: Txn) => t.ops.some((o) => o.f === 'append' && !present(o.key, o.value));
    const firstLost = mine.findIndex((t) => t.outcome === 'ok' && lostIn(t));
    if (firstLost < 0) continue;
    if (stoppedAt !== undefined && mine[firstLost].seq >= stoppedAt) continue; // lost after it ran again: a real loss
    // The stretch ends where the node noticed (a refused transaction) or where its appends
    // survive again (it joined again under a new id and went on).
    const stretch: Txn[] = [];
    let endsAtStop = true;
    let brokenBy: Txn | undefined;
    for (const t of mine.slice(firstLost)) {
      if (stoppedAt !== undefined && t.seq >= stoppedAt) break;
      endsAtStop = stoppedAt === undefined;
      if (t.outcome === 'failed') {
        // The transaction in flight when a stalled node stopped failed once it ran again
        // (its commit was void, or the node found itself cut off): the stretch ended at the stop.
        if (stoppedAt !== undefined && t.seq === stoppedAt - 1) endsAtStop = true;
        break;
      }
      if (t.outcome !== 'ok') continue;
      // A killed node never came back: all it did from there on died with it (its later
      // commits can survive where its earlier ones did not: they share pages).
      if (!died && !lostIn(t) && t.ops.some((o) => o.f === 'append')) {
        // The transaction in flight when a stalled node stopped may have committed only
        // after it ran again, in the cluster's new state: the stretch ended at the stop.
        if (stoppedAt !== undefined && t.seq === stoppedAt - 1) endsAtStop = true;
        else brokenBy = t;
        break;
      }
      stretch.push(t);
      endsAtStop = true;
    }
    // A stalled node's loss further back than its last moments is a real lost write.
    const beforeCut = cut ? cutRingWindow(stretch, cut) : undefined;
    const tooLong = beforeCut ? !beforeCut.fits : stretch.length > CRASH_TAIL;
    if (tooLong || !endsAtStop) {
      const first = mine[firstLost];
      why.push(
        `not excused: node ${node}'s lost stretch from #${first.seq}` +
          (brokenBy ? ` ends at #${brokenBy.seq}, whose appends (${brokenBy.ops.filter((o) => o.f === 'append').map((o) => `${o.value} to key ${o.key}`).join(', ')}) are in the final lists,` : '') +
          ` ${stretch.length} transaction(s) long, ${cut ? `cut off after #${cut.after}; ${beforeCut!.note}` : `before it stopped at #${stoppedAt ?? '?'}`}`,
      );
      continue;
    }
    for (const t of stretch) t.outcome = 'unknown';
    excused += stretch.length;
  }
  return excused;
}
