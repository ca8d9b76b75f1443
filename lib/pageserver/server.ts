// The page server process: a cluster member that never runs transactions and stores every
// commit on disk (feed.ts, store.ts). It maps a region like any node, since it takes part in
// the protocol as one: it holds a current copy of every page, serves pages to joining and
// recovering nodes (a dead node's pages are taken over from it like from any holder), and
// is a voter for the partition rule. Started with no peers on a directory that holds a
// store, it joins the store's cluster if members of it still answer at the addresses the
// store recorded (live_cluster.ts), and founds the cluster again at the store's time if none
// does. Started with peers, a store that holds commits joins only its own cluster.
import fs from 'node:fs';
import path from 'node:path';
import { DsmError, fromNative, InvalidOptionError } from '../errors';
import { StoreError } from './errors';
import { loadNative } from '../native';
import { checkKeys, resolveOptions } from '../options';
import { ServiceClient } from '../service/client';
import { Status, STATUS_WORDS } from '../service/messages';

/** Options of {@link startPageServer}. */
export interface PageServerOptions {
  /** The store's directory: created when absent or empty (and removed again if the start fails); an existing store is reopened. */
  dir: string;
  /** host:port to listen on (default 127.0.0.1:0). */
  listen?: string;
  /** The cluster secret. */
  secret: string;
  /**
   * Members to join through. A store that holds commits joins only its own cluster, or one
   * founded again from a store of it at or after its time: another is refused
   * (ERR_DSM_STORE) before the store changes; a new or empty directory joins any. Absent or
   * empty: join the store's cluster if members of it still answer at the addresses the
   * store recorded, else found the cluster (again, from the store).
   */
  peers?: string[];
  /**
   * Without peers, found the cluster again from the store even if members of its cluster
   * still run (a second cluster beside theirs, from this store's time). Default false: a
   * store whose cluster runs joins it, and one that finds another cluster at its members'
   * addresses is refused (ERR_DSM_STORE).
   */
  found?: boolean;
  /** Region size for a new store (default 1 GiB); an existing store's own is used otherwise. */
  regionSize?: number;
  /** Page size for a new store (default: the OS page size). */
  pageSize?: number;
  heartbeatMs?: number;
  deadAfterMs?: number;
  joinTimeoutMs?: number;
  /** Called while a large store loads (founding again) or catches up (joining): pages done of total. */
  onProgress?: (p: { phase: 'loading' | 'catching-up'; done: number; total: number }) => void;
}

const PAGE_SERVER_OPTIONS = ['dir', 'listen', 'secret', 'peers', 'found', 'regionSize', 'pageSize', 'heartbeatMs', 'deadAfterMs', 'joinTimeoutMs', 'onProgress'] as const;

/** A running page server. */
export interface PageServer {
  /** host:port nodes join through (`peers: [ps.address]`). */
  readonly address: string;
  readonly nodeId: number;
  /** The global time of the last commit this server applied. */
  readonly appliedTime: number;
  /** Every commit up to this time is on the page server's disk. */
  readonly durableTime: number;
  /** Flushes what it holds, leaves the cluster (handing its pages on) and closes the store. */
  close(): Promise<void>;
}

/**
 * Starts a page server in this process.
 *
 * @example
 * const ps = await startPageServer({ dir: './dsm-data', listen: '127.0.0.1:7400', secret });
 * const dsm = await createNode({ peers: [ps.address], secret, durability: 'disk' });
 */
export async function startPageServer(options: PageServerOptions): Promise<PageServer> {
  checkKeys('startPageServer', options, PAGE_SERVER_OPTIONS);
  if (!options || typeof options.dir !== 'string' || options.dir.length === 0) {
    throw new InvalidOptionError('startPageServer needs dir: the directory of its store');
  }
  // Loaded here, not at the top: a program that never starts a page server never loads LMDB.
  if (options.found !== undefined && typeof options.found !== 'boolean') throw new InvalidOptionError(`found must be true or false, not ${String(options.found)}`);
  if (options.found && options.peers && options.peers.length > 0) {
    throw new InvalidOptionError('found and peers exclude each other: found founds the cluster from the store, peers joins a running one');
  }
    const { PageStore } = require('./store') as typeof import('./store');
  const stored = await PageStore.storedGeometry(options.dir);
  // The outermost directory this start will make (its store's own, or a missing parent).
  let made: string | undefined;
  for (let d = path.resolve(options.dir); !fs.existsSync(d); d = path.dirname(d)) made = d;
  if (stored && options.regionSize !== undefined && options.regionSize !== stored.regionSize) {
    throw new InvalidOptionError(
      `the store in ${options.dir} holds a region of ${stored.regionSize} bytes, not ${options.regionSize}: leave regionSize out, or use another directory`,
    );
  }
  if (stored && options.pageSize !== undefined && options.pageSize !== stored.pageSize) {
    throw new InvalidOptionError(`the store in ${options.dir} has ${stored.pageSize}-byte pages, not ${options.pageSize}`);
  }
  const o = resolveOptions({
    regionSize: stored?.regionSize ?? options.regionSize,
    pageSize: stored?.pageSize ?? options.pageSize,
    listen: options.listen ?? '127.0.0.1:0',
    peers: options.peers ?? [],
    secret: options.secret,
    heartbeatMs: options.heartbeatMs,
    deadAfterMs: options.deadAfterMs,
    joinTimeoutMs: options.joinTimeoutMs,
    durability: 'none',
  });
  const cluster = { ...o.cluster!, pageServer: { dir: options.dir, found: options.found === true } };
  const native = loadNative();
  let region;
  try {
    region = native.open({ base: o.base, size: o.regionSize, pageShift: o.pageShift, startInvalid: false });
  } catch (e) {
    throw fromNative(e);
  }
  const timeBuffer = new SharedArrayBuffer(STATUS_WORDS * 8);
  let service: ServiceClient;
  try {
    service = await ServiceClient.start(
      { nodeId: 0, base: o.base, numPages: region.numPages, pageSize: region.pageSize, timeBuffer, cluster },
      (level, message) => process.emitWarning(message, { code: `DSM_SERVICE_${level.toUpperCase()}` }),
      options.onProgress,
    );
  } catch (e) {
    native.close();
    if (!stored) removeNewStore(path.resolve(options.dir), made);
    // Refused in the service thread (a damaged store, or its cluster found in a state it cannot join): the class callers match on.
    if (e instanceof DsmError && !(e instanceof StoreError) && e.code === 'ERR_DSM_STORE') throw new StoreError(e.message);
    throw e;
  }
  let closed = false;
  const times = service.status;
  return {
    address: service.address,
    get nodeId() {
      return service.nodeId;
    },
    get appliedTime() {
      return Number(times[Status.applied]);
    },
    get durableTime() {
      return Number(times[Status.durable]);
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        await service.stop();
      } finally {
        native.close();
      }
    },
  };
}

/**
 * Undoes a failed start's new store (its directory was missing or empty): the store would
 * keep the failed attempt's region size, and the corrected command (another listen address,
 * the right secret, another region size) would be refused on it. Best effort: the start's
 * own error is what the caller needs to see.
 */
function removeNewStore(dir: string, made: string | undefined): void {
  try {
    if (fs.existsSync(dir)) {
      // Whoever holds the owner lock (another page server that made the store meanwhile, or
      // a service thread that could not close it) keeps the store; holding the lock while
      // removing keeps a newcomer out until the directory is empty again.
      const native = loadNative();
      const owner = path.join(dir, 'owner.pid');
      const fd = native.lockFile(owner);
      if (fd < 0) return;
      try {
        for (const entry of fs.readdirSync(dir)) if (entry !== 'owner.pid') fs.rmSync(path.join(dir, entry), { recursive: true, force: true });
        fs.rmSync(owner, { force: true });
      } finally {
        native.unlockFile(fd);
      }
    }
    if (!made) return;
    // rmdir(2) refuses a directory that is not empty: what someone else put there stays.
    for (let d = dir; ; d = path.dirname(d)) {
      try {
        fs.rmdirSync(d);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return;
      }
      if (d === made || d === path.dirname(d)) return;
    }
  } catch {
    // Left as it is: the start's own error is the one to report.
  }
}
