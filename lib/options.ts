// Validation of createNode() options: every mistake gets a message that says what to pass.
import { InvalidOptionError } from './errors';

/** Options of {@link createNode}. */
export interface NodeOptions {
  /** Bytes of shared region; a multiple of the page size, at most 4 GiB (default 1 GiB). */
  regionSize?: number;
  /** Virtual address of the region, identical on every node (default 0x600000000000). */
  base?: number | bigint;
  /** DSM page size: the OS page size times a power of two (default: the OS page size). */
  pageSize?: number;
  /** Retries of a conflicting transaction before ERR_DSM_TRANSACTION_CONFLICT (default 100). */
  maxRetries?: number;
  /** Consistency model; only 'transactional' is available so far. */
  consistency?: 'transactional';
}

export interface ResolvedOptions {
  regionSize: number;
  base: number;
  pageShift: number;
  maxRetries: number;
}

export const DEFAULT_BASE = 0x6000_0000_0000;
export const DEFAULT_REGION_SIZE = 1 << 30;
/** Node 20 refuses ArrayBuffers above 4 GiB, and the typed views cover the whole region. */
export const MAX_REGION_SIZE = 4 * 1024 ** 3;
const OS_PAGE_SIZE = 4096;
const KNOWN = new Set(['regionSize', 'base', 'pageSize', 'maxRetries', 'consistency', 'listen', 'peers', 'secret', 'pageServer']);

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
      `base must be a page-aligned user-space address below 2^47 (e.g. 0x600000000000), got ${String(o.base)}`,
    );
  }
  const maxRetries = o.maxRetries ?? 100;
  if (!Number.isSafeInteger(maxRetries) || maxRetries < 0) {
    throw new InvalidOptionError(`maxRetries must be a non-negative integer, got ${String(o.maxRetries)}`);
  }
  if (o.consistency !== undefined && o.consistency !== 'transactional') {
    throw new InvalidOptionError(`consistency "${String(o.consistency)}" is not available; use "transactional"`);
  }
  return { regionSize, base, pageShift: Math.log2(pageSize), maxRetries };
}
