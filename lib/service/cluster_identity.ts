// Which cluster this is. Every founding makes a new identity: a founder with no store, and a
// page server founding the cluster again from its store alike (that one names the cluster
// its store came from, and the time it was founded at). Members learn it when they join
// (JoinAccept) and tell it to anyone who asks (Msg.ClusterRequest), so a page server that
// restarts alone can tell whether the members it finds still run the cluster its store
// belongs to (lib/pageserver/live_cluster.ts). The secret cannot tell: two clusters made one
// after the other from one store share it, and have different histories.
import { randomBytes } from 'node:crypto';
import type { WireReader, WireWriter } from './wire';

export interface ClusterIdentity {
  /** 16 hex digits, random: one founding. */
  id: string;
  /** The global time the cluster was founded at: 0, or the store's time when founded again from one. */
  foundedAt: number;
  /** Founded again from a store: the id of the cluster that store belonged to ('' otherwise). */
  from: string;
}

/** A new founding's identity. */
export function newIdentity(foundedAt = 0, from = ''): ClusterIdentity {
  return { id: randomBytes(8).toString('hex'), foundedAt, from };
}

/** Wire layout: str id | u64 founded at | str from. */
export function writeIdentity(w: WireWriter, i: ClusterIdentity): WireWriter {
  return w.str(i.id).u64(i.foundedAt).str(i.from);
}

export function readIdentity(r: WireReader): ClusterIdentity {
  return { id: r.str(64), foundedAt: r.u64(), from: r.str(64) };
}

/** A cluster's identity in a message for people: "cluster 1a2b… (founded again at time 97 from the store of cluster 3c4d…)". */
export function describeIdentity(i: ClusterIdentity): string {
  return `cluster ${i.id}${i.from ? ` (founded again at time ${i.foundedAt} from a store of cluster ${i.from})` : ''}`;
}

/**
 * Whether the running cluster `running` holds everything a store of cluster `store` at
 * `storeTime` holds, so the store may join it (its heap then replaces the store's, losing
 * nothing): the store's own cluster, or one founded again from a store of it at or after
 * that time. A page server joins no other (lib/pageserver/live_cluster.ts).
 */
export function holdsStore(running: ClusterIdentity, store: ClusterIdentity, storeTime: number): boolean {
  return running.id === store.id || (running.from === store.id && running.foundedAt >= storeTime);
}
