// The list-append workload under fault schedules drawn from a logged seed: SIGKILL of a
// node (any, or the one holding the commit token), SIGSTOP/SIGCONT stalls, a killed node
// replaced by a new one, every process at once (the page server too) and the cluster started
// again from the page server's store, and (as root) a node cut off the network and plugged in again,
// each node in a network namespace of its own. Every history must check out: each acknowledged append
// present in the final lists or its key reported lost (ERR_DSM_PAGE_LOST) to every
// survivor, and no dependency cycle.
//
// With durability 'replicated' (the default) a killed node's acknowledged commits are held
// by its backup, so the checker excuses nothing, and a key reported lost fails a run; one
// kill schedule and two mixed schedules (one with token batching) run with durability
// 'none', where a dead or stalled node's last acknowledged commits may die with it
// (counted as unknown, as a crashed client's operations in Jepsen).
// Long stalls and the mixed schedule hung about once in 30 runs until recovery learned to
// find a token lost in flight and a node counted as served asks again (README, "The
// long-stall hang"); they are in the default run now.
// Run every schedule with
//
//   DSM_FAULT_TESTS=all npx vitest run test/history/faults.test.ts
//
// DSM_FAULT_RUNS=<n> runs each schedule n times (seeds seed, seed+1, ...); a failure
// prints its seed and every node's service warnings, and DSM_SEED=<that seed> replays its
// transactions and fault (DSM_KEEP_STDERR=<dir> keeps each node's whole stderr then).
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, it } from 'vitest';
import { Harness } from '../cluster/harness';
import { NetnsHarness, netnsUnavailable } from '../cluster/netns';
import { socketsUnavailable } from '../cluster/sockets';
import { assertValid, drawPlan, type PlanOptions, replayHint, runPlan, seedFromEnv, summary } from './workload';

const ALL = process.env.DSM_FAULT_TESTS === 'all';
const seed = seedFromEnv();
const RUNS = Number(process.env.DSM_FAULT_RUNS ?? 1);
console.log(`list-append fault schedules: ${replayHint(seed)}${ALL ? '' : ' (set DSM_FAULT_TESTS=all for every schedule)'}`);

interface Schedule {
  name: string;
  plan: PlanOptions;
  /** Passes against the current code every time; the rest wait for the fixes. */
  reliable: boolean;
  /** Node options (default: durability 'replicated', one backup). */
  cluster?: Record<string, unknown>;
  /** The nodes join through a page server. */
  pageServer?: boolean;
  /** Partitions and stalls hit the page server instead of a node. */
  hitPageServer?: boolean;
  /** Each node in a network namespace of its own (fault 'partition' cuts one off; needs root). */
  netns?: boolean;
  /** Environment of every process the run starts (test hooks). */
  env?: Record<string, string>;
  /** Ends connections from outside (fault 'reset'; needs root). */
  sockets?: boolean;
  /** Nobody may be removed: every node ends the run under the id it started with. */
  keepsMembers?: boolean;
}

const schedules: Schedule[] = [
  { name: 'SIGKILL of a random node, 3 nodes', plan: { nodes: 3, keys: 8, keysPerPage: 1, txnsPerNode: 300, faults: ['kill'] }, reliable: true },
  { name: 'SIGKILL of the token holder, 3 nodes', plan: { nodes: 3, keys: 8, keysPerPage: 1, txnsPerNode: 300, faults: ['kill-token-holder'] }, reliable: true },
  // Durability 'none': a dead node's last acknowledged commits may die with it (excused).
  { name: "SIGKILL of a random node, 3 nodes, durability 'none'", plan: { nodes: 3, keys: 8, keysPerPage: 1, txnsPerNode: 300, faults: ['kill'] }, reliable: true, cluster: { durability: 'none' } },
  // Durability 'none', any fault, with token batching (tokenBatchMs, 1 ms by default with
  // 'none') and without it. Beside two CPU hogs the stall plan of seed 1900005 failed 3 runs in 10 without
  // batching and about 2 in 10 with it (void commits buffered before the regeneration was
  // known, then applied); one run in 20 of seed 2600001 hung (a voided page asked for at too
  // new a version). Both fixed; 0 failures in 60 runs since, under the same load.
  { name: "one fault of any kind, 3 nodes, durability 'none'", plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 300, faults: ['kill', 'kill-token-holder', 'stall', 'restart', 'leave'] }, reliable: true, cluster: { durability: 'none' } },
  { name: "one fault of any kind, 3 nodes, durability 'none', no token batching", plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 300, faults: ['kill', 'kill-token-holder', 'stall', 'restart', 'leave'] }, reliable: true, cluster: { durability: 'none', tokenBatchMs: 0 } },
  { name: "SIGKILL of a random node, 3 nodes and a page server, durability 'disk'", plan: { nodes: 3, keys: 8, keysPerPage: 1, txnsPerNode: 200, faults: ['kill'] }, reliable: true, cluster: { durability: 'disk' }, pageServer: true },
  { name: "one fault of any kind, 3 nodes and a page server, durability 'disk', two keys per page", plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 200, faults: ['kill', 'kill-token-holder', 'stall', 'restart', 'leave'] }, reliable: true, cluster: { durability: 'disk' }, pageServer: true },
  // Five members: a recovery's quorum (three) can leave the page server out, which then
  // hears of a regeneration late, if at all.
  { name: "SIGSTOP past the failure detector, 4 nodes and a page server, durability 'disk'", plan: { nodes: 4, keys: 8, keysPerPage: 2, txnsPerNode: 150, faults: ['stall'], stallMs: [3000, 5000] }, reliable: true, cluster: { durability: 'disk' }, pageServer: true },
  { name: "the page server killed and started again on its store while nodes commit, 3 nodes, durability 'disk'", plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 200, faults: ['restart'] }, reliable: true, cluster: { durability: 'disk' }, pageServer: true, hitPageServer: true },
  { name: "the page server stalled past the failure detector, 3 nodes, durability 'disk'", plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 200, faults: ['stall'], stallMs: [3000, 5000] }, reliable: true, cluster: { durability: 'disk' }, pageServer: true, hitPageServer: true },
  { name: "the page server stalled past the failure detector, 4 nodes, durability 'disk'", plan: { nodes: 4, keys: 8, keysPerPage: 2, txnsPerNode: 150, faults: ['stall'], stallMs: [3000, 5000] }, reliable: true, cluster: { durability: 'disk' }, pageServer: true, hitPageServer: true },
  { name: "one fault of any kind, 4 nodes and a page server, durability 'disk'", plan: { nodes: 4, keys: 8, keysPerPage: 2, txnsPerNode: 150, faults: ['kill', 'kill-token-holder', 'stall', 'restart', 'leave'] }, reliable: true, cluster: { durability: 'disk' }, pageServer: true },
  // Two nodes at once: with two backups per commit, or a page server's disk, every
  // acknowledged commit survives on a third member (five voters: three remain a quorum).
  { name: 'SIGKILL of two nodes at once, 5 nodes, replicas 2', plan: { nodes: 5, keys: 8, keysPerPage: 2, txnsPerNode: 120, faults: ['kill-two'] }, reliable: true, cluster: { replicas: 2 } },
  { name: "SIGKILL of every process at once (the page server too), then a restart from its store, 3 nodes, durability 'disk'", plan: { nodes: 3, keys: 8, keysPerPage: 1, txnsPerNode: 200, faults: ['kill-all'] }, reliable: true, cluster: { durability: 'disk' }, pageServer: true },
  { name: "SIGKILL of every process at once (the page server too), then a restart from its store, 3 nodes, durability 'disk', two keys per page", plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 200, faults: ['kill-all'] }, reliable: true, cluster: { durability: 'disk' }, pageServer: true },
  // The page server checkpoints every 50 ms (not 2 s), so the cut falls among checkpoints: the restart replays a log over a checkpointed image, or a checkpoint cut short.
  { name: "SIGKILL of every process at once (the page server too), then a restart from its store, 3 nodes, durability 'disk', 24 keys two to a page, among checkpoints", plan: { nodes: 3, keys: 24, keysPerPage: 2, txnsPerNode: 600, faults: ['kill-all'] }, reliable: true, cluster: { durability: 'disk' }, pageServer: true, env: { DSM_TEST_CHECKPOINT_MS: '50' } },
  // Cut again and again: each restart replays a store the previous restart wrote to.
  // Seed 13001 (the first of these) failed its first run: a read-only transaction had been
  // acknowledged with another node's commit the page server had not logged, and the cut lost
  // it (fixed since: test/pageserver/durable_reads.test.ts); 12 of 12 runs from that seed
  // pass now. Left out of the default run for their length (about 15 s each).
  { name: "SIGKILL of every process at once (the page server too) three times over, each time a restart from its store, 3 nodes, durability 'disk'", plan: { nodes: 3, keys: 8, keysPerPage: 1, txnsPerNode: 150, faults: ['kill-all'], cuts: 3 }, reliable: false, cluster: { durability: 'disk' }, pageServer: true },
  { name: "SIGKILL of every process at once (the page server too) three times over, each time a restart from its store, 3 nodes, durability 'disk', 24 keys two to a page, among checkpoints", plan: { nodes: 3, keys: 24, keysPerPage: 2, txnsPerNode: 300, faults: ['kill-all'], cuts: 3 }, reliable: false, cluster: { durability: 'disk' }, pageServer: true, env: { DSM_TEST_CHECKPOINT_MS: '50' } },
  { name: "SIGKILL of two nodes at once, 4 nodes and a page server, durability 'disk'", plan: { nodes: 4, keys: 8, keysPerPage: 2, txnsPerNode: 120, faults: ['kill-two'] }, reliable: true, cluster: { durability: 'disk' }, pageServer: true },
  { name: 'SIGSTOP of two nodes together past the failure detector, 5 nodes, replicas 2', plan: { nodes: 5, keys: 8, keysPerPage: 2, txnsPerNode: 120, faults: ['stall-two'], stallMs: [3000, 5000] }, reliable: true, cluster: { replicas: 2 } },
  { name: 'SIGKILL of a random node, 4 nodes, two keys per page', plan: { nodes: 4, keys: 8, keysPerPage: 2, txnsPerNode: 150, faults: ['kill'] }, reliable: true },
  // A close is no failure, so one failure right after it must lose nothing: the pages whose
  // second copy was on the leaver, or that its successor took over as their only holder,
  // are on their new backups before the close returns (leave_backups.test.ts).
  { name: 'a graceful leave, then its successor killed as the close returns, 4 nodes', plan: { nodes: 4, keys: 8, keysPerPage: 2, txnsPerNode: 150, faults: ['leave-kill'] }, reliable: true },
  { name: 'SIGSTOP for less than the failure detector allows, then SIGCONT', plan: { nodes: 3, keys: 8, keysPerPage: 1, txnsPerNode: 300, faults: ['stall'], stallMs: [300, 1000] }, reliable: true },
  { name: 'SIGSTOP for longer than the failure detector allows, then SIGCONT', plan: { nodes: 3, keys: 8, keysPerPage: 1, txnsPerNode: 300, faults: ['stall'], stallMs: [3000, 5000] }, reliable: true },
  { name: 'SIGKILL, then a new node joins in its place', plan: { nodes: 3, keys: 8, keysPerPage: 1, txnsPerNode: 300, faults: ['restart'] }, reliable: true },
  // One failure at a time, again and again: every kill moves the backups of what the dead
  // node owned, and the new node in its place becomes a backup in turn.
  { name: 'churn: three nodes SIGKILLed in turn, each replaced by a new node once the backups caught up, 4 nodes', plan: { nodes: 4, keys: 8, keysPerPage: 2, txnsPerNode: 200, faults: ['churn'], cuts: 3 }, reliable: true },
  { name: "churn: three nodes SIGKILLed in turn, each replaced, 3 nodes and a page server, durability 'disk'", plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 200, faults: ['churn'], cuts: 3 }, reliable: true, cluster: { durability: 'disk' }, pageServer: true },
  // A node unplugged from the network (each node in a namespace of its own), long enough for
  // the others to remove it, or not; it runs on meanwhile, and rejoins once plugged in.
  { name: 'network partition of a random node past the failure detector, 3 nodes', plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 300, faults: ['partition'], stallMs: [2500, 4000] }, reliable: true, netns: true },
  // With 'none' the cut-off node's acknowledged commits that had not gone out are void; the
  // checker bounds them by its commit ring's window (workload.ts cutRingWindow).
  { name: "network partition of a random node past the failure detector, 3 nodes, durability 'none'", plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 300, faults: ['partition'], stallMs: [2500, 4000] }, reliable: true, netns: true, cluster: { durability: 'none' } },
  { name: "network partition of a random node past the failure detector, 3 nodes and a page server, durability 'disk'", plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 200, faults: ['partition'], stallMs: [2500, 4000] }, reliable: true, netns: true, cluster: { durability: 'disk' }, pageServer: true },
  // Partitions that are not a clean cut. Two nodes that cannot reach each other while both
  // reach the third each see a majority, a different one (Jepsen's "bridge"); a node that
  // hears nothing while the others still hear it.
  { name: 'two nodes cut off from each other, both reaching the third, past the failure detector, 3 nodes', plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 300, faults: ['bridge'], stallMs: [2500, 4000] }, reliable: true, netns: true },
  // Longer than it takes the recovery to end such a cut (lib/service/unreached.ts): one of
  // the two is removed and joins again once the cut heals.
  { name: 'two nodes cut off from each other, both reaching the third, until one is removed, 3 nodes', plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 300, faults: ['bridge'], stallMs: [7000, 10000] }, reliable: true, netns: true },
  { name: 'a node that hears nothing while the others hear it, past the failure detector, 3 nodes', plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 300, faults: ['deaf'], stallMs: [2500, 4000] }, reliable: true, netns: true },
  // The page server cut off: 'disk' commits cannot be acknowledged meanwhile; it is
  // removed (the nodes are a majority of the voters) and must join again and catch up.
  { name: "the page server cut off past the failure detector, 3 nodes, durability 'disk'", plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 200, faults: ['partition'], stallMs: [2500, 4000] }, reliable: true, netns: true, cluster: { durability: 'disk' }, pageServer: true, hitPageServer: true },
  { name: 'network partition shorter than the failure detector allows, 3 nodes', plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 300, faults: ['partition'], stallMs: [300, 1000] }, reliable: true, netns: true },
  // Needs root (ss -K); every process runs on, so no node may be removed, and nothing is excused.
  { name: 'every connection of a random node reset from outside, again and again, 3 nodes', plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 1000, faults: ['reset'], stallMs: [1000, 3000] }, reliable: true, sockets: true, keepsMembers: true },
  { name: "every connection of a random node reset from outside, again and again, 3 nodes and a page server, durability 'disk'", plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 600, faults: ['reset'], stallMs: [1000, 3000] }, reliable: true, sockets: true, keepsMembers: true, cluster: { durability: 'disk' }, pageServer: true },
  { name: "the page server's connections reset from outside, again and again, 3 nodes, durability 'disk'", plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 600, faults: ['reset'], stallMs: [1000, 3000] }, reliable: true, sockets: true, keepsMembers: true, cluster: { durability: 'disk' }, pageServer: true, hitPageServer: true },
  { name: "every connection of a random node reset from outside, again and again, 2 nodes, durability 'none'", plan: { nodes: 2, keys: 8, keysPerPage: 2, txnsPerNode: 1000, faults: ['reset'], stallMs: [1000, 3000] }, reliable: true, sockets: true, keepsMembers: true, cluster: { durability: 'none' } },
  { name: 'one fault of any kind, 3 nodes', plan: { nodes: 3, keys: 8, keysPerPage: 2, txnsPerNode: 300, faults: ['kill', 'kill-token-holder', 'stall', 'restart', 'leave'] }, reliable: true },
];

// Every schedule draws from the same seed (their options differ), so the seed a failure
// prints replays it: DSM_SEED=<seed> DSM_FAULT_TESTS=all npx vitest run <this file> -t '<name>'.
const noNetns = netnsUnavailable();
if (noNetns) console.log(`partition schedules skipped: ${noNetns}`);
if (socketsUnavailable) console.log(`connection-reset schedules skipped: ${socketsUnavailable}`);

describe(`list-append histories under faults (${replayHint(seed)})`, () => {
  const loopback = new Harness();
  const namespaces = new NetnsHarness(4);
  afterEach(async () => {
    await loopback.close();
    await namespaces.close();
  });

  for (const s of schedules) {
    if (!s.reliable && !ALL) continue;
    if (s.netns && noNetns) continue;
    if (s.sockets && socketsUnavailable) continue;
    const h = s.netns ? namespaces : loopback;
    for (let run = 0; run < RUNS; run++) {
      it(RUNS > 1 ? `${s.name} (seed=${seed + run})` : s.name, async () => {
        let r: Awaited<ReturnType<typeof runPlan>> | undefined;
        const env = Object.entries(s.env ?? {});
        for (const [k, v] of env) process.env[k] = v;
        try {
          r = await runPlan(h, drawPlan(seed + run, s.plan), { ...(s.cluster ? { cluster: s.cluster } : {}), pageServer: s.pageServer, hitPageServer: s.hitPageServer, net: s.netns ? namespaces : undefined });
          console.log(summary(r));
          assertValid(r);
        } catch (e) {
          // What each node's service said (recoveries, regenerations, removals) places the
          // loss; a run that hung names them already.
          if (r) {
            const warnings = h.nodes.flatMap((n, i) => n.stderr.split('\n').filter((l) => l.includes('DSM_')).map((l) => `  process ${i} (node ${n.nodeId}): ${l}`));
            (e as Error).message += `\nservice warnings:\n${warnings.join('\n')}`;
          }
          if (process.env.DSM_KEEP_STDERR) (e as Error).message += `\nstderr of every node in ${process.env.DSM_KEEP_STDERR}`;
          throw e;
        } finally {
          for (const [k] of env) delete process.env[k];
          // DSM_KEEP_STDERR=<dir> keeps each node's whole stderr, of every run (with NODE_DEBUG=dsm: every message).
          const dir = process.env.DSM_KEEP_STDERR;
          if (dir) {
            fs.mkdirSync(dir, { recursive: true });
            h.nodes.forEach((n, i) => fs.writeFileSync(path.join(dir, `seed-${seed + run}-process-${i}.log`), n.stderr));
          }
        }
        if (s.keepsMembers) {
          if (r.ids.join() !== r.firstIds.join()) throw new Error(`a node was removed and joined again: ids ${r.firstIds.join(', ')} at the start, ${r.ids.join(', ')} at the end (${replayHint(seed + run)})`);
          // Nor did anything need a recovery: a token lost with a connection is sent again
          // when it is bound again, not found by a recovery after 8 s without it.
          const recoveries = h.nodes.flatMap((n) => n.stderr.split('\n').filter((l) => /recovering from the loss|looking for the token/.test(l)).map((l) => `  node ${n.nodeId}: ${l}`));
          if (recoveries.length) throw new Error(`a recovery ran though every process ran on (${replayHint(seed + run)}):\n${recoveries.join('\n')}`);
        }
        // With durability 'replicated' (the default) and one failure, every page's latest
        // version survives on a backup: nothing may be reported lost.
        if (s.cluster?.durability !== 'none') {
          const lost = r.history.finals.flatMap((f) => [...f.lost]);
          if (lost.length) {
            // The survivors' warnings carry the recovery's decision and what it rested on.
            const warnings = h.nodes.flatMap((n) => n.stderr.split('\n').filter((l) => l.includes('DSM_SERVICE')).map((l) => `  node ${n.nodeId}: ${l}`));
            throw new Error(`keys reported lost with durability 'replicated' after one failure: ${lost.join(', ')} (${replayHint(seed + run)})\n${warnings.join('\n')}`);
          }
        }
      });
    }
  }
});
