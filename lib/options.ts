// Validation of createNode() options: every mistake gets a message that says what to pass.
import { InvalidOptionError } from './errors';

/** Options of {@link createNode}. */
export interface NodeOptions {
  /**
   * Bytes of shared region; a multiple of the page size, at most 4 GiB (default 1 GiB).
   * Small objects come in chunks of 64 pages per node, kind and size class in regions of
   * 256 MiB or more (32 in 128 MiB, 16 below): a larger region makes allocation cheaper.
   */
  regionSize?: number;
  /** Virtual address of the region, identical on every node (default 0x480000000000). */
  base?: number | bigint;
  /** DSM page size: the OS page size times a power of two (default: the OS page size). */
  pageSize?: number;
  /** Retries of a conflicting transaction before ERR_DSM_TRANSACTION_CONFLICT (default 100). */
  maxRetries?: number;
  /** Consistency model; only 'transactional' is available so far. */
  consistency?: 'transactional';
  /** host:port to listen on for peers (port 0: any free port). Makes the node networked. */
  listen?: string;
  /** host:port of members to join through; empty or absent: found a new cluster. */
  peers?: string[];
  /** The cluster secret: no peer joins without it. Required for a networked node. */
  secret?: string;
  /** How long to keep trying to reach a peer when joining (default 30000 ms). */
  joinTimeoutMs?: number;
  /** Heartbeat interval and the silence after which a peer counts as dead (default 1000/5000 ms). */
  heartbeatMs?: number;
  deadAfterMs?: number;
  /**
   * When a transaction's promise resolves (networked nodes). 'replicated' (the default):
   * once `replicas` other members hold its commit, so it survives that many nodes failing at
   * once. 'none': as soon as it is ordered here (broadcast within a millisecond, 2 ms at
   * most; a node that dies or stalls inside that window takes it along). 'disk': once a page server of the cluster has
   * it on disk (see startPageServer); commits wait while no page server is a member.
   */
  durability?: 'none' | 'replicated' | 'disk';
  /** Backups of each commit with durability 'replicated' (default 1). */
  replicas?: number;
  /**
   * With durability 'none': how long a node whose app is committing may keep the commit
   * token after another node asks for it, so that its next commits go out in one batch
   * instead of moving the token for each. A node waiting for the token waits at most this
   * much longer. Default 1 with durability 'none' (0: pass at once); with backups it has no
   * effect (README, "A committing node keeps the token for a batch").
   */
  tokenBatchMs?: number;
  /**
   * Microseconds a node waiting at `dsm.barrier` keeps its CPU awake at most, with a thread
   * spinning at idle priority (any other runnable thread takes the CPU from it at once), so
   * that the release is not held up by a virtual machine waking a halted CPU first. The
   * process shows as busy meanwhile, as MPI programs do. 0: never spin. Default 20000.
   */
  barrierSpinUs?: number;
}

export interface ResolvedOptions {
  regionSize: number;
  base: number;
  pageShift: number;
  maxRetries: number;
  barrierSpinUs: number;
  cluster?: {
    listen: string;
    peers: string[];
    secret: string;
    joinTimeoutMs: number;
    heartbeatMs?: number;
    deadAfterMs?: number;
    durability: 'none' | 'replicated' | 'disk';
    replicas: number;
    tokenBatchMs: number;
    /** Set by startPageServer only: this node stores every commit in `dir`. */
    pageServer?: { dir: string; found?: boolean };
  };
}

const ADDRESS = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** `a` as a "host:port" string, or InvalidOptionError naming `what`. */
export function checkAddress(what: string, a: unknown): string {
  if (typeof a !== 'string' || !ADDRESS.test(a) || Number(a.slice(a.lastIndexOf(':') + 1)) > 65535) {
    throw new InvalidOptionError(`${what} must be "host:port" (e.g. "127.0.0.1:7400"), got ${JSON.stringify(a)}`);
  }
  return a;
}

function checkMs(what: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new InvalidOptionError(`${what} must be a positive number of milliseconds, got ${String(v)}`);
  return v;
}

/**
 * 72 TiB. V8 places its heap pages, code and WebAssembly reservations at random addresses
 * below 64 TiB (its hints are masked to 46 bits), more of them as the JS heap grows, so any
 * base below that is taken now and then by a process that has run for a while. Above it sit
 * programs built as PIE (0x55...), AddressSanitizer's allocator (0x6000_0000_0000 to
 * 0x6400_0000_0000) and the kernel's own mmaps (0x7f... downwards), all clear of
 * 72 TiB + 4 GiB.
 */
export const DEFAULT_BASE = 0x4800_0000_0000;
export const DEFAULT_REGION_SIZE = 1 << 30;
/** Node 20 refuses ArrayBuffers above 4 GiB, and the typed views cover the whole region. */
export const MAX_REGION_SIZE = 4 * 1024 ** 3;
const OS_PAGE_SIZE = 4096;
const KNOWN = new Set(['regionSize', 'base', 'pageSize', 'maxRetries', 'consistency', 'listen', 'peers', 'secret', 'joinTimeoutMs', 'heartbeatMs', 'deadAfterMs', 'durability', 'replicas', 'tokenBatchMs', 'barrierSpinUs']);

/** Refuses an options object with keys `what` does not take, naming the ones it does. */
export function checkKeys(what: string, o: unknown, known: readonly string[]): void {
  if (o === undefined) return;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) {
    throw new InvalidOptionError(`${what}: options must be an object, got ${o === null ? 'null' : Array.isArray(o) ? 'an array' : typeof o}`);
  }
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) throw new InvalidOptionError(`${what}: unknown option "${k}"; it takes ${known.map((x) => `"${x}"`).join(', ')}`);
  }
}

export function resolveOptions(o: NodeOptions = {}): ResolvedOptions {
  if (typeof o !== 'object' || o === null) throw new InvalidOptionError('createNode() takes an options object');
  for (const k of Object.keys(o)) {
    if (!KNOWN.has(k)) throw new InvalidOptionError(`unknown option "${k}"; known options: ${[...KNOWN].join(', ')}`);
  }
  const pageSize = o.pageSize ?? OS_PAGE_SIZE;
  if (!Number.isSafeInteger(pageSize) || pageSize < OS_PAGE_SIZE || (pageSize & (pageSize - 1)) !== 0) {
    throw new InvalidOptionError(`pageSize must be ${OS_PAGE_SIZE} times a power of two, got ${String(o.pageSize)}`);
  }
  const regionSize = o.regionSize ?? DEFAULT_REGION_SIZE;
  if (!Number.isSafeInteger(regionSize) || regionSize <= 0 || regionSize % pageSize !== 0) {
    throw new InvalidOptionError(`regionSize must be a positive multiple of the page size (${pageSize}), got ${String(o.regionSize)}`);
  }
  if (regionSize > MAX_REGION_SIZE) {
    throw new InvalidOptionError(`regionSize is at most 4 GiB (the largest ArrayBuffer Node 20 maps), got ${regionSize}`);
  }
  const baseIn = o.base ?? DEFAULT_BASE;
  const base = typeof baseIn === 'bigint' ? Number(baseIn) : baseIn;
  if (!Number.isSafeInteger(base) || base <= 0 || base % pageSize !== 0 || base + regionSize > 2 ** 47) {
    throw new InvalidOptionError(
      `base must be a page-aligned user-space address below 2^47 (e.g. 0x480000000000), got ${String(o.base)}`,
    );
  }
  const maxRetries = o.maxRetries ?? 100;
  if (!Number.isSafeInteger(maxRetries) || maxRetries < 0) {
    throw new InvalidOptionError(`maxRetries must be a non-negative integer, got ${String(o.maxRetries)}`);
  }
  if (o.consistency !== undefined && o.consistency !== 'transactional') {
    throw new InvalidOptionError(`consistency "${String(o.consistency)}" is not available; use "transactional"`);
  }
  if (o.durability !== undefined && o.durability !== 'none' && o.durability !== 'replicated' && o.durability !== 'disk') {
    throw new InvalidOptionError(`durability must be "replicated" (the default), "disk" (with a page server) or "none", got ${JSON.stringify(o.durability)}`);
  }
  const replicas = o.replicas ?? 1;
  if (!Number.isSafeInteger(replicas) || replicas < 1 || replicas > 16) {
    throw new InvalidOptionError(`replicas must be a whole number of backups from 1 to 16, got ${String(o.replicas)}`);
  }
  const tokenBatchMs = o.tokenBatchMs ?? (o.durability === 'none' ? 1 : 0);
  if (typeof tokenBatchMs !== 'number' || !Number.isFinite(tokenBatchMs) || tokenBatchMs < 0 || tokenBatchMs > 100) {
    throw new InvalidOptionError(`tokenBatchMs must be a number of milliseconds from 0 (pass the token at once) to 100, got ${String(o.tokenBatchMs)}`);
  }
  const barrierSpinUs = o.barrierSpinUs ?? 20_000;
  if (!Number.isSafeInteger(barrierSpinUs) || barrierSpinUs < 0 || barrierSpinUs > 1_000_000) {
    throw new InvalidOptionError(`barrierSpinUs must be a whole number of microseconds from 0 (never spin) to 1000000, got ${String(o.barrierSpinUs)}`);
  }
  let cluster: ResolvedOptions['cluster'];
  if (o.listen !== undefined || (o.peers !== undefined && o.peers.length > 0)) {
    if (o.peers !== undefined && !Array.isArray(o.peers)) throw new InvalidOptionError('peers must be an array of "host:port" strings');
    const peers = (o.peers ?? []).map((p, i) => checkAddress(`peers[${i}]`, p));
    const listen = checkAddress('listen', o.listen ?? '127.0.0.1:0');
    if (typeof o.secret !== 'string' || o.secret.length === 0) {
      throw new InvalidOptionError('a networked node needs the cluster secret: pass secret (the same string on every node)');
    }
    cluster = {
      listen,
      peers,
      secret: o.secret,
      joinTimeoutMs: checkMs('joinTimeoutMs', o.joinTimeoutMs) ?? 30_000,
      heartbeatMs: checkMs('heartbeatMs', o.heartbeatMs),
      deadAfterMs: checkMs('deadAfterMs', o.deadAfterMs),
      durability: o.durability ?? 'replicated',
      replicas,
      tokenBatchMs,
    };
  } else if (o.secret !== undefined && typeof o.secret !== 'string') {
    throw new InvalidOptionError('secret must be a string');
  } else if (o.durability === 'disk') {
    // A one-node cluster has no network, so no page server ever joins it: its commits would
    // be acknowledged as nothing more than local ones while the caller asked for disk.
    throw new InvalidOptionError(
      "durability 'disk' waits for a page server, and a node without listen or peers has no network for one to join: " +
        'give it listen (then start dsm pageserver --peers <its address>), or join through a page server with peers',
    );
  }
  return { regionSize, base, pageShift: Math.log2(pageSize), maxRetries, barrierSpinUs, cluster };
}
