// Loads the compiled addon and types its raw surface. Internal: the public API is in node.ts.
import path from 'node:path';
import { NativeLoadError } from './errors';

/** What `open()` returns: views over native memory, valid until `close()`. */
export interface NativeRegion {
  /** The app view. */
  buffer: ArrayBuffer;
  pageSize: number;
  numPages: number;
  /** Page states (see PageState). */
  states: Uint8Array;
  owners: Uint16Array;
  versions: BigUint64Array;
  /** Counters, in the order of `Counter`. */
  stats: BigUint64Array;
}

// The constants below are compiled in for their types; the addon exports its own
// (`constants`), and loading it compares the two, so neither side can change alone.

/** Order of native/stats.h. */
export const Counter = {
  readFaults: 0,
  writeFaults: 1,
  serviceFaults: 2,
  violations: 3,
  protectionResets: 4,
  shadowRestores: 5,
  begins: 6,
  commits: 7,
  aborts: 8,
  installs: 9,
  invalidations: 10,
  updates: 11,
  writeAhead: 12,
  writeAheadUnused: 13,
  answeredByChannel: 14,
  sentByFault: 15,
  servedByChannel: 16,
  leaseAlarms: 17,
  refusedFaults: 18,
} as const;

/** Order of native/page_table.h. */
export const PageState = { invalid: 0, validUnmapped: 1, read: 2, write: 3 } as const;

/** The page table's model byte (native/page_table.h PageModel): the model in the low bits, | MODEL_HERE when owned here. */
export const PageModel = { transactional: 0, local: 1, sequential: 2, migratory: 3 } as const;
export const MODEL_MASK = 0x7f;
export const MODEL_HERE = 0x80;

/**
 * Requests the app posts to the service. `hold` takes the token for the app's next run (so
 * it cannot be doomed: anti-starvation after repeated conflicts); `release` gives it back
 * when that run commits nothing.
 */
export const CommitKind = { commit: 1, sync: 2, hold: 3, release: 4 } as const;
/** Answers to those requests (native/commit_channel.h). */
export const CommitStatus = { committed: 1, doomed: 2, failed: 3, partitioned: 4 } as const;
/** runTransaction statuses (native/app_interrupt.h). */
export const RunStatus = { returned: 0, threw: 1, terminated: 2 } as const;

/** What the addon exports as `constants`: name to number, per table. */
export type SharedConstants = Record<string, Record<string, number>>;

const expectedConstants: SharedConstants = {
  pageStates: PageState,
  counters: Counter,
  commitKinds: CommitKind,
  commitStatuses: CommitStatus,
  runStatuses: RunStatus,
};

/** Every difference between the addon's constants and ours, as "table.name: ..." lines; empty when they agree. */
export function constantsMismatch(addon: unknown): string[] {
  if (typeof addon !== 'object' || addon === null) return ['the addon exports no constants'];
  const theirs = addon as Partial<SharedConstants>;
  const out: string[] = [];
  for (const table of new Set([...Object.keys(expectedConstants), ...Object.keys(theirs)])) {
    const a = expectedConstants[table] ?? {};
    const b = theirs[table] ?? {};
    for (const name of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const here = a[name] ?? 'missing';
      const there = b[name] ?? 'missing';
      if (here !== there) out.push(`${table}.${name}: ${here} in TypeScript, ${there} in the addon`);
    }
  }
  return out;
}

export interface NativeAddon {
  /** `onCommitReply` runs on the app thread when the service answers a posted commit. */
  open(o: { base: number; size: number; pageShift: number; startInvalid: boolean }, onCommitReply?: () => void): NativeRegion;
  close(): void;
  /** Empties the program's views of the region (length 0); the region stays mapped until close(). */
  detachAppView(): void;
  begin(): void;
  end(): number;
  abort(): void;
  /** Stamps the written pages; with `withChanges`, returns [written pages, their changes] for the commit record (native/dsm.h Commit). */
  commit(time: number, owner: number): void;
  commit(time: number, owner: number, withChanges: true): [Uint32Array, Buffer];
  /**
   * Commits like commit(time, owner, true) and writes its record into the commit ring's
   * `words` at word `w` (lib/service/commit_ring.ts); returns the word after it. `room`: the
   * words free there, checked for beforehand (the process aborts if the record is larger).
   */
  commitToRing(time: number, owner: number, words: Uint32Array, w: number, room: number): number;
  doomed(): boolean;
  /** [page, committing node] that doomed the live transaction first, or null (not doomed, or doomed by a lost page). */
  doomCause(): [number, number] | null;
  readSet(): Uint32Array;
  writeSet(): Uint32Array;
  takeViolations(): number;
  attachService(onRequests: () => void): void;
  detachService(): void;
  /** Triples of (slot, page, flags). */
  takeRequests(): Uint32Array;
  completeRequest(slot: number): void;
  install(page: number, data: Uint8Array | null, version: number, owner: number): boolean;
  invalidate(page: number, version: number, owner: number): boolean;
  /** invalidate() of many pages in one call (one lock hold); true when any doomed the live transaction. */
  invalidatePages(pages: Uint32Array, versions: Float64Array, owners: Uint16Array): boolean;
  /** Service: the nodes backing this node's commits up (commits carry whole pages they may lack). */
  setBackups(ids: Uint16Array): void;
  /** Applies another node's commit: updates current copies, invalidates the rest. -1: malformed changes, 1: doomed the live transaction. */
  applyCommit(time: number, owner: number, pages: Uint32Array, changes: Uint8Array): number;
  copyCommitted(page: number): Buffer;
  pageState(page: number): number;
  /** Installs fetched pages in one call (data: the pages back to back, null for zeros); returns how many. */
  installPages(pages: Uint32Array, versions: Float64Array, owners: Uint16Array, data: Uint8Array | null): number;
  /**
   * Reads page replies from this (authenticated) socket straight into the region; returns
   * its id. With `serve`, the owner's end: answers member `member`'s page requests from the
   * committed copies where the native rules allow (setServing), hands the rest over (takeForwarded).
   */
  openDataChannel(
    fd: number,
    cfg: { clusterId: number; protocolVersion: number; replyType: number; heartbeatType: number; maxFrame: number; heartbeatMs: number; serve?: { requestType: number; me: number; member: number } },
  ): number;
  /** Writes a frame on a data channel (a page request, DataReady); false when it is gone or the write failed. */
  sendOnChannel(id: number, type: number, payload: Uint8Array): boolean;
  /** The page requests a channel's owner end handed over, 22-byte PageRequest payloads back to back. */
  takeForwarded(id: number): Buffer;
  /** What answering page requests natively needs: the commit lease (ms from now, Infinity) and the time up to which commits went out. */
  setServing(rules: { leaseMs?: number; servable?: number }): void;
  /** Faults on `owner`'s pages send their requests over data channel `channel` (native/fault_routes.h); false when it is gone. */
  routeFaults(owner: number, channel: number, wire: { requestType: number; requester: number }): boolean;
  /** While a scan is on, faults leave their requests to the service (its read-ahead). */
  faultsScanning(on: boolean): void;
  closeDataChannel(id: number): void;
  /** Finished replies of data channels: [channel, request id (0xffffffff: closed; 0xfffffffe: requests handed over), newest version] triples. */
  takeData(): Float64Array;
  /** The last page a read fault granted locally, or -1 (a scan's progress over fetched pages). */
  lastReadFault(): number;
  /** The committed contents of `pages`, back to back into `out`. */
  copyCommittedPages(pages: Uint32Array, out: Uint8Array): void;
  /** What `pages` hold now (the live transaction's writes included), back to back into `out`, read without touching the app view. */
  copyCurrentPages(pages: Uint32Array, out: Uint8Array): void;
  /** begin, fn(tx), end in one call; [status (RunStatus), value or thrown error, pages written]. */
  runTransaction(fn: (tx: unknown) => unknown, tx: unknown): [number, unknown, number];
  /** App: asks the service to commit (or sync); false when no service is attached. */
  postCommit(kind: number): boolean;
  /** App: [status, time] of the service's answer, or null. */
  takeCommitReply(): [number, number] | null;
  /** App: keeps this process's CPU awake at idle priority for up to `us` microseconds, until stopIdlePoll(); false when it cannot (idle_poller.h). */
  pollIdle(us: number): boolean;
  stopIdlePoll(): void;
  /** Service: the pending commit request kind (0: none). */
  takeCommitRequest(): number;
  /** Service: answers the pending commit request. */
  replyCommit(status: number, time: number): void;
  /** Service: interrupts the app thread if it runs a doomed transaction. */
  interruptApp(): void;
  /** Service: reports a page whose only up-to-date copy is gone. */
  markLost(page: number): void;
  /**
   * Service: nothing can be fetched for a transaction now (no quorum, or joining again).
   * On, the live transaction is doomed and its faults on pages not here get scratch memory
   * instead of waiting; returns how many waiting faults it woke.
   */
  refuseRunFaults(on: boolean): number;
  /** App: the lost page number, or -1. */
  takeLost(): number;
  /** App, inside a transaction: pages that take `model` (native PageModel) when it commits. */
  declareModel(firstPage: number, count: number, model: number): void;
  /** App, inside a transaction: the heap handed out pages [firstPage, firstPage + count); dooms the run if another node's allocation of them has arrived (or arrives later); whether the run is doomed. */
  claimFresh(firstPage: number, count: number): boolean;
  /** App, inside a transaction (tx.discardLost): if `page`'s owner is still `lostOwner`, declares its model (atomically with the service's setModel) and zeroes the copy here; whether it did. */
  declareLost(page: number, model: number, lostOwner: number): boolean;
  /** App: the page of another node's local allocation touched here, or -1. */
  takeLocalTouched(): number;
  /** Service: (first, count, model) triples of this node's commits up to `time`. */
  takeModelChanges(time: number): Uint32Array;
  /** Service: pages another node's commit allocated (`owner`) or freed take `model`. */
  setModel(first: number, count: number, model: number, owner: number): void;
  /** Service, sequential owner: copies the page into `out`, keeping a read copy (drop false) or handing ownership to `newOwner`. */
  shareSequential(page: number, out: Uint8Array, drop: boolean, newOwner: number): boolean;
  /** Service: a sequential copy arrived (null: keep the one here); `own`: this node owns it, no other copy exists. */
  installSequential(page: number, data: Uint8Array | null, own: boolean, owner: number): void;
  /** Service: another node takes ownership of a sequential page; the copy here goes. */
  dropSequential(page: number, newOwner: number): void;
  /** Service: every other copy of this owned sequential page is gone. */
  ownSequential(page: number): void;
  /** Service: another node's local page was touched here. */
  refuseLocal(page: number): void;
  /** Service: the lease ran out (true) or is back (false); sequential and migratory pages here lose their access while it is out. Returns how many lost it. */
  fenceModels(on: boolean): number;
  /** Whether sequential and migratory pages are fenced (by the service, or by the lease alarm on the app thread). */
  modelsFenced(): boolean;
  /** Service: the model byte of every page (PageModel | 0x80 when owned here), read-only. */
  pageModels(): Uint8Array;
  /** Service: views of the page table (read them, never write). */
  pageTable(): { states: Uint8Array; owners: Uint16Array; versions: BigUint64Array };
  /** A copy of the counters, in the order of `Counter`. */
  counters(): Float64Array;
  /** Any thread: the descriptor holding an exclusive lock (flock) on `path`, created if missing; -1 while another holds it. */
  lockFile(path: string): number;
  /** Empties the file `lockFile` locked and closes its descriptor, releasing the lock. */
  unlockFile(fd: number): void;
  /** The numbers shared with TypeScript (checked on load against the tables above). */
  constants: SharedConstants;
}

/** The test and benchmark hooks: a separate addon, so the production one does not export them. */
export interface NativeHooks {
  /** Reads one byte at `address` from native code on the calling thread: a real fault where it is unmapped or protected. */
  readByte(address: number): number;
  /** Median ns of one SIGSEGV + mprotect + return, through a minimal handler. */
  measureFaultFloor(pages: number, rounds: number): number;
  /** Median ns of one single-page mprotect. */
  measureMprotect(pages: number, rounds: number): number;
  /** Median ns of one malloc(size) over `count` live allocations. */
  measureMalloc(size: number, count: number, rounds: number): number;
  /** The addon's commit-ring writer (native/commit_record.h) alone: writes a record at word `w` of `words`; returns the word after it. */
  putCommitRecord(words: Uint32Array, w: number, time: number, pages: Uint32Array, changes: Uint8Array): number;
}

let cached: NativeAddon | undefined;
let cachedHooks: NativeHooks | undefined;

/** The addon, loaded once per thread. Fails with a message that says how to fix it. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  const addon = loadAddon<NativeAddon>('node_dsm');
  const diff = constantsMismatch(addon.constants);
  if (diff.length) {
    throw new NativeLoadError(
      `the node-dsm addon does not match its TypeScript (built from different sources?):\n  ${diff.join('\n  ')}\n` +
        'Rebuild both with "npm run build" (or reinstall node-dsm).',
    );
  }
  cached = addon;
  return cached;
}

/** The test and benchmark hooks (build/Release/node_dsm_hooks.node), loaded once per thread. */
export function loadNativeHooks(): NativeHooks {
  cachedHooks ??= loadAddon<NativeHooks>('node_dsm_hooks');
  return cachedHooks;
}

function loadAddon<T>(name: string): T {
  if (process.platform !== 'linux') {
    throw new NativeLoadError(`node-dsm needs Linux (memfd, SIGSEGV page faults); this is ${process.platform}`);
  }
  const root = path.join(__dirname, '..');
  const candidates = [`build/Release/${name}.node`, `build/Debug/${name}.node`];
  const errors: string[] = [];
  for (const rel of candidates) {
    try {
      return require(path.join(root, rel)) as T;
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code !== 'MODULE_NOT_FOUND') errors.push(`${rel}: ${err.message}`);
    }
  }
  throw new NativeLoadError(
    errors.length
      ? `the node-dsm addon failed to load:\n  ${errors.join('\n  ')}\nRebuild it with "npm rebuild node-dsm".`
      : `the node-dsm addon is not built (looked for ${candidates.join(', ')} in ${root}). ` +
          'Build it with "npm install" (needs python3, make and g++) or "npx node-gyp rebuild".',
  );
}
