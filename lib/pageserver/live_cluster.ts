// A page server started with no peers on a store that belongs to a cluster: does that cluster
// still run? Founding it again from the store is right after every process stopped; while
// its nodes still run (only the page server died, or was stopped), it made a second cluster
// beside theirs, with nothing said: two heaps going apart, and the nodes' 'disk' commits
// waiting for good for a page server that now served somebody else.
//
// So first every address the store recorded (cluster_record.ts) is asked, at once and with
// the secret, which cluster it is a member of (Msg.ClusterRequest): its members, and those
// since gone. A member of the store's cluster (the same identity, or one founded again from
// a store of it at or after this store's time) is joined, and the store catches up as on
// any rejoin (feed.ts joined). At a member's address, a member of another cluster, or
// something that refuses the secret or speaks another protocol version, is a refusal
// (StoreError): this store cannot tell it is not its own cluster, and founding would split
// it; so is, at any address, a cluster founded again from an older store of this one. Only
// when nobody answers as a member does it found again, and it says whom it asked. Two page
// servers of the cluster started at once find each other asking too (Starting): the one
// with the older store waits for the other to found, and joins it. Started with peers (or
// joining again), the same rule holds for the cluster each peer is a member of (checkPeer),
// asked before the join, and checked again on the admission (refuseCluster).
//
// What it costs a whole-cluster restart: a refused connection (nothing listens) answers at
// once; a host that takes no connection at all (down, or a firewall that drops) is given
// CONNECT_MS; something that took the connection (a process that lives) is given
// ANSWER_MS to prove the secret and answer. The addresses are asked side by side.
import type { Cluster } from '../service/cluster';
import { type ClusterIdentity, describeIdentity, holdsStore } from '../service/cluster_identity';
import { type Answer, askCluster, type ClusterReply } from '../service/cluster_query';
import type { ClusterRecordData } from './cluster_record';
import { StoreError } from './errors';

/**
 * A page server asking whether its store's cluster runs: the cluster its store belongs to, the
 * store's time, a random tie-break, and whether it waits for another. Two page servers of
 * one cluster restarted at once would each find the other no member and both found. Of two
 * that find each other so, the one ranking lower (an older store, or the lower tie-break)
 * waits for the other, and says so; the higher founds only once every lower one it finds
 * starting says it waits (one that asked before the higher listened has founded, or will
 * ask again: the higher then finds it a member, and joins or refuses it as any other).
 */
export interface Starting {
  id: string;
  time: number;
  rank: string;
  waiting: boolean;
}

const ranksAbove = (a: Starting, b: Starting): boolean => a.time > b.time || (a.time === b.time && a.rank > b.rank);

/** How often a page server waiting for a higher-ranking one to found asks again. */
const WAIT_MS = 200;


/**
 * The addresses to join the store's running cluster through, or none: found it again.
 * Throws StoreError when something answers that may be the cluster and cannot be joined.
 */
export async function liveCluster(n: Cluster, dir: string, record: ClusterRecordData | undefined, me: Starting): Promise<string[]> {
  const addresses = record ? [...new Set([...record.members, ...record.former])].filter((a) => a !== n.address) : [];
  if (!record || addresses.length === 0) return [];
  let waitingFor = '';
  for (;;) {
    const answers = await Promise.all(addresses.map((a) => askCluster(n.transport, a)));
    const through = decide(n, dir, record, me.time, answers);
    if (through.length > 0) return through;
    // Page servers of this cluster starting at the same moment (Starting): the highest founds, the others join it.
    const starting: Array<{ address: string; s: Starting }> = [];
    for (const a of answers) if ('reply' in a && !a.reply.member && a.reply.starting?.id === record.identity.id) starting.push({ address: a.address, s: a.reply.starting });
    const above = starting.find((p) => ranksAbove(p.s, me));
    const unsettled = starting.find((p) => !ranksAbove(p.s, me) && !p.s.waiting);
    me.waiting = above !== undefined;
    if ((!above && !unsettled) || n.closing) {
      n.ev.log('warn', `no member of this store's cluster answered at ${tried(answers)}: founding it again from the store`);
      return [];
    }
    const why = above
      ? `the page server at ${above.address} is starting too, on a store of this cluster at time ${above.s.time} (this one's: ${me.time}): waiting for it to found the cluster again, to join it`
      : `the page server at ${unsettled!.address} is starting too, on a store of this cluster at time ${unsettled!.s.time} (this one's: ${me.time}): waiting for it to wait for this one, which founds`;
    if (why !== waitingFor) n.ev.log('warn', (waitingFor = why));
    await new Promise((r) => setTimeout(r, WAIT_MS));
  }
}

/** What the answers mean: addresses to join through (none: nobody runs the cluster), or StoreError. */
function decide(n: Cluster, dir: string, record: ClusterRecordData, storeTime: number, answers: Answer[]): string[] {
  const mine = record.identity;
  const ours: Array<{ address: string; reply: ClusterReply }> = [];
  const others: string[] = [];
  for (const a of answers) {
    // A member that left may have gone anywhere: only what speaks for this store's cluster at its old address counts.
    const current = record.members.includes(a.address);
    if ('blocking' in a && current) others.push(`${a.address} ${a.blocking}`);
    if (!('reply' in a) || !a.reply.member) continue;
    const i = a.reply.identity;
    if (holdsStore(i, mine, storeTime)) ours.push(a);
    else if (current || i.from === mine.id) others.push(`${a.address} is a member of ${describeIdentity(i)}${i.from === mine.id ? `, which does not hold this store's commits after time ${i.foundedAt}` : ''}`);
  }
  if (ours.length > 0) {
    const time = Math.max(...ours.map((a) => a.reply.time));
    if (time < storeTime) {
      throw new StoreError(
        `the page store in ${dir} is at time ${storeTime}, and its cluster, running at ${ours.map((a) => a.address).join(', ')}, only at ${time}: ` +
          'the store holds commits the cluster does not (a recovery made them void after this page server left; none was acknowledged as durable). ' +
          `Start the page server again once the cluster has committed past time ${storeTime}, or give it --peers ${ours[0].address} then. ` +
          'Founding it again would make a second cluster beside the running one (--found does that anyway)',
      );
    }
    n.ev.log('warn', `the store's cluster runs (asked ${tried(answers)}): joining the running cluster through ${ours.map((a) => a.address).join(', ')} instead of founding it again`);
    return ours.map((a) => a.address);
  }
  if (others.length > 0) {
    throw new StoreError(
      `the page store in ${dir} belongs to ${describeIdentity(mine)} (at time ${storeTime}), and at the addresses its members had: ${others.join('; ')}. ` +
        'Founding the cluster again from the store would make a second cluster beside that one, so this page server stops. To go on: ' +
        'stop those nodes and start this page server first (it founds the cluster again from its store; start the nodes with --peers naming it); ' +
        `or start it on a new directory (an empty or missing --dir) with --peers ${answers.find((a) => 'reply' in a && a.reply.member)?.address ?? 'HOST:PORT'} to add a page server to that cluster (this store stays as it is); ` +
        'or with --found (found: true) to found a separate cluster from this store anyway',
    );
  }
  return [];
}

/**
 * Started with peers, or joining again, on a store that holds commits of a cluster: may it
 * join the cluster that `peer` is a member of (`a`, what it answered to askCluster)? Asked
 * before the join (admission.ts), so that a refusal
 * leaves the store as it was and the other cluster without a member that never comes.
 * What does not answer as a member (nothing listens, a page server starting, a refused
 * secret) is left to the join, which says what is wrong, or whose admission is checked
 * again (refuseCluster on the JoinAccept's identity).
 */
export function checkPeer(dir: string, store: ClusterIdentity, storeTime: number, peer: string, a: Answer): void {
  if ('reply' in a && a.reply.member) refuseCluster(dir, store, storeTime, peer, a.reply.identity, a.reply.time);
}

/**
 * Throws StoreError when a store of cluster `store` at `storeTime` cannot join the cluster
 * `running`, at time `time` and reached through `via`: another cluster (joining would
 * replace the store's heap with its own), one founded again from an older store of it
 * (joining would give up the store's later commits), or its own behind the store's time
 * (the rebase on joining cannot go back).
 */
export function refuseCluster(dir: string, store: ClusterIdentity, storeTime: number, via: string, running: ClusterIdentity, time: number): void {
  if (!holdsStore(running, store, storeTime)) {
    const older = running.from === store.id;
    throw new StoreError(
      `the page store in ${dir} belongs to ${describeIdentity(store)} (at time ${storeTime}), and ${via} is a member of ${describeIdentity(running)}` +
        `${older ? `, which does not hold this store's commits after time ${running.foundedAt}` : ''}: joining it would replace this store's heap with that cluster's, ` +
        'so this page server stops, and the store stays as it was. To go on: to add a page server to that cluster, start it on a new directory (an empty or missing --dir); ' +
        (older
          ? "to keep this store's later commits, stop that cluster and start this page server first, without --peers (it founds the cluster again from its store, and the others join it)"
          : "to serve this store's heap, start it without --peers (it joins its own cluster if that still runs, else founds it again from the store)"),
    );
  }
  if (time < storeTime) {
    throw new StoreError(
      `the page store in ${dir} is at time ${storeTime}, and its cluster, at ${via}, only at ${time}: ` +
        'the store holds commits the cluster does not (a recovery made them void after this page server left; none was acknowledged as durable). ' +
        `Start the page server again once the cluster has committed past time ${storeTime}, or on a new directory (an empty or missing --dir) to join it now`,
    );
  }
}

/** Each address and what it said, for a message. */
function tried(answers: Answer[]): string {
  const what = (a: Answer): string => {
    if ('none' in a) return a.none;
    if ('blocking' in a) return a.blocking;
    if (a.reply.member) return `a member of ${describeIdentity(a.reply.identity)}`;
    return a.reply.starting ? 'a page server starting too' : 'not a member of a cluster';
  };
  return answers.map((a) => `${a.address} (${what(a)})`).join(', ');
}

