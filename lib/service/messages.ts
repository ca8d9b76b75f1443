// Messages between the app thread and the service worker (in-process, over the worker's
// MessagePort). Network frames between nodes are defined in protocol.ts, not here.
import type { MessagePort } from 'node:worker_threads';
import type { HotPage } from '../conflict_monitor';
import type { ResolvedOptions } from '../options';
import type { MembershipView } from './watches';
import type { BarrierOutcome, BarrierState } from './barriers';

/** Sent once, as workerData, when the service starts. */
export interface ServiceConfig {
  nodeId: number;
  /** The region's address (the same on every node). */
  base: number;
  numPages: number;
  pageSize: number;
  /**
   * STATUS_WORDS BigUint64 words shared by the app and the service. Written by the service:
   * [0] the global time this node has applied, [1] the highest global time it has heard of
   * (ahead of [0] while commits are in flight or missed), [2] how many pages configurations
   * decided lost, [3] 1 while this node has no quorum (or is joining again), [6] every
   * commit of this node up to this time is held by its backups (durability 'replicated').
   * Written by the app: [4, 5) the page range a transaction is discarding (tx.discardLost),
   * else 0, 0; [7] the earliest commit time the app waits to be durable, else 0 (the service
   * posts a 'durable' event once [6] reaches it). Written by the service: [8] counts the
   * times this node lost its place in the cluster (removed, joined again): a commit made
   * under an earlier count may or may not have survived. Written by the app: [9] how many
   * transactions it has issued and not yet seen settle (the service pushes the token only
   * when that is at most one, commits.ts pushToken). Written by the service: [10] this
   * node's id (it changes when the node joins again), read by dsm.nodeId at once, before
   * the app thread has taken the 'rejoined' event in.
   */
  timeBuffer: SharedArrayBuffer;
  /**
   * MEMBER_WORDS u32 written by the service at every configuration it applies: [0] the id
   * the next joiner gets, then a bit per node id, set while that node is a member. Ids are
   * never given twice, so one below [0] without its bit is gone for good: the heap takes
   * over its allocator slot (alloc/heap.ts).
   */
  members: SharedArrayBuffer;
  /** The commit token lent to the app thread (local_token.ts). */
  gate: SharedArrayBuffer;
  /** Commits the app made with the lent token, for the service to broadcast (commit_ring.ts). */
  commitRing?: SharedArrayBuffer;
  /** Wakes the service when the ring has new commits. */
  localCommits?: MessagePort;
  /** Present for a networked node. */
  cluster?: ResolvedOptions['cluster'];
}

export const STATUS_WORDS = 11;
/** Words of ServiceConfig.members: the next id, then a bit for each of the 65,536 node ids. */
export const MEMBER_WORDS = 1 + 65536 / 32;
/** On the local-commits port (the app's wake-up for its lent-token commits, commits.ts): drain now, no batching. */
export const FLUSH_NOW = 'now';

export const Status = { applied: 0, seen: 1, lostPages: 2, partitioned: 3, discardFrom: 4, discardTo: 5, durable: 6, durableWanted: 7, durableEpoch: 8, inFlight: 9, nodeId: 10 } as const;

/**
 * Raises status word `i` to `v` unless it is already there. Both threads raise the applied
 * and seen times (the app when it commits with the lent token, the service as it applies),
 * and a plain read-then-write from each could lower one again (each reads 5, the app
 * writes 7, the service writes 6): dsm.globalTime would go back.
 */
export function raiseTo(times: BigUint64Array, i: number, v: bigint): void {
  let cur = Atomics.load(times, i);
  while (v > cur) {
    const was = Atomics.compareExchange(times, i, cur, v);
    if (was === cur) return;
    cur = was;
  }
}

export type AppRequest =
  | { id: number; type: 'test-invalidate'; page: number; fill: number }
  | { id: number; type: 'test-unhandled-rejection' }
  | { id: number; type: 'test-touch-app-view'; address: number }
  | { id: number; type: 'close' }
  | { id: number; type: 'stats' }
  /** The app's hottest pages, for `dsm stats --hot` (the service keeps the latest list). */
  | { id: number; type: 'hot-pages'; pages: HotPage[] }
  /** Answered once a page's version passes `since` (same order), or the epoch is not `epoch` (watches.ts). */
  | { id: number; type: 'watch'; pages: number[]; since: number[]; epoch: number }
  | { id: number; type: 'wait-time'; time: number; timeoutMs: number }
  /** Durability 'disk': answered once a page server has every commit up to `time` on disk (durable_reads.ts); ERR_DSM_COMMIT_UNCERTAIN if this node's commits became uncertain first. */
  | { id: number; type: 'durable-read'; time: number }
  /** dsm.prefetch: pages [first, first + count) here (owned for `write`); answered once they are. */
  | { id: number; type: 'prefetch'; first: number; count: number; write: boolean }
  /** Waits at barrier `name` (barriers.ts); `time`: the global time the app has applied or committed. Answered with `barrier`. */
  | { id: number; type: 'barrier'; name: string; parties: number; time: number }
  /** Test hooks: what this node knows of barrier `name`; a raw message of type `msg` to member `to`. */
  | { id: number; type: 'barrier-state'; name: string }
  | { id: number; type: 'test-send'; to: number; msg: number; payload: Uint8Array };

export type ServiceReply =
  | { id: number; ok: true; time?: number; stats?: ServiceStats; view?: MembershipView; barrier?: BarrierOutcome; barrierState?: BarrierState }
  | { id: number; ok: false; code?: string; message?: string };

/** Unsolicited events from the service. */
export type ServiceEvent =
  | { type: 'ready'; nodeId: number; address: string }
  | { type: 'failed'; code: string; message: string }
  | { type: 'log'; level: 'warn' | 'error'; message: string }
  | { type: 'peer-join' | 'peer-leave'; id: number }
  | { type: 'rejoined'; id: number }
  /** Status.durable reached Status.durableWanted. */
  | { type: 'durable' }
  /** Commits not yet held by backups may or may not be in the cluster's history (this node was removed). */
  | { type: 'uncertain' }
  /** Long work in progress (a page server loading its store or catching up): `done` of `total` pages. */
  | { type: 'progress'; phase: 'loading' | 'catching-up'; done: number; total: number };

/** Figures only the service knows. */
export interface ServiceStats {
  remoteFetches: number;
  forwardedRequests: number;
  members: number[];
  tokenHeld: boolean;
  appliedTime: number;
  seenTime: number;
  /** Members whose page replies come over a data channel (read natively). */
  dataChannels: number[];
  /**
   * Non-transactional pages served here: read copies sent, ownership handed on,
   * invalidations sent, requests forwarded along owner hints, local pages refused; and
   * replies received here about an earlier life of their page (its block freed and
   * allocated again since), dropped.
   */
  sequential: { readFetches: number; ownershipMoves: number; invalidationsSent: number; forwarded: number; localRefused: number; searches: number; pushed: number; staleReplies: number; laterReplies: number };
  /**
   * Backups (durability 'replicated') not yet holding every page this node owns from before
   * they became its backups (pages written while it was alone, or taken over from a member
   * that died). Until this is empty again after a configuration change, a failure of this
   * node can still lose those pages.
   */
  backupsCatchingUp: number[];
  /**
   * This node has no quorum, or was removed and is joining again: its transactions are
   * refused with ERR_DSM_PARTITIONED until that ends.
   */
  partitioned: boolean;
}
