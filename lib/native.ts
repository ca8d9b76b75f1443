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
} as const;

/** Order of native/page_table.h. */
export const PageState = { invalid: 0, validUnmapped: 1, read: 2, write: 3 } as const;

/** CommitChannel kinds and statuses (native/commit_channel.h). */
/**
 * Requests the app posts to the service. `hold` takes the token for the app's next run (so
 * it cannot be doomed: anti-starvation after repeated conflicts); `release` gives it back
 * when that run commits nothing.
 */
export const CommitKind = { commit: 1, sync: 2, hold: 3, release: 4 } as const;
export const CommitStatus = { committed: 1, doomed: 2, failed: 3, partitioned: 4 } as const;
/** runTransaction statuses. */
export const RunStatus = { returned: 0, threw: 1, terminated: 2 } as const;

export interface NativeAddon {
  /** `onCommitReply` runs on the app thread when the service answers a posted commit. */
  open(o: { base: number; size: number; pageShift: number; startInvalid: boolean }, onCommitReply?: () => void): NativeRegion;
  close(): void;
  begin(): void;
  end(): number;
  abort(): void;
  commit(time: number, owner: number): void;
  doomed(): boolean;
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
  copyCommitted(page: number): Buffer;
  pageState(page: number): number;
  touchAppView(page: number): number;
  measureFaultFloor(pages: number, rounds: number): number;
  measureMprotect(pages: number, rounds: number): number;
  /** Installs fetched pages in one call (data: the pages back to back, null for zeros); returns how many. */
  installPages(pages: Uint32Array, versions: Float64Array, owners: Uint16Array, data: Uint8Array | null): number;
  /** Reads page replies from this (authenticated) socket straight into the region; returns its id. */
  openDataChannel(fd: number, cfg: { clusterId: number; protocolVersion: number; replyType: number; heartbeatType: number; maxFrame: number; heartbeatMs: number }): number;
  closeDataChannel(id: number): void;
  /** Finished replies of data channels: [channel, request id (0xffffffff: closed), newest version] triples. */
  takeData(): Float64Array;
  /** The last page a read fault granted locally, or -1 (a scan's progress over fetched pages). */
  lastReadFault(): number;
  /** The committed contents of `pages`, back to back into `out`. */
  copyCommittedPages(pages: Uint32Array, out: Uint8Array): void;
  measureMalloc(size: number, count: number, rounds: number): number;
  /** begin, fn(tx), end in one call; [status (RunStatus), value or thrown error, pages written]. */
  runTransaction(fn: (tx: unknown) => unknown, tx: unknown): [number, unknown, number];
  /** App: asks the service to commit (or sync); false when no service is attached. */
  postCommit(kind: number): boolean;
  /** App: [status, time] of the service's answer, or null. */
  takeCommitReply(): [number, number] | null;
  /** Service: the pending commit request kind (0: none). */
  takeCommitRequest(): number;
  /** Service: answers the pending commit request. */
  replyCommit(status: number, time: number): void;
  /** Service: interrupts the app thread if it runs a doomed transaction. */
  interruptApp(): void;
  /** Service: reports a page whose only up-to-date copy is gone. */
  markLost(page: number): void;
  /** App: the lost page number, or -1. */
  takeLost(): number;
  /** Service: views of the page table (read them, never write). */
  pageTable(): { states: Uint8Array; owners: Uint16Array; versions: BigUint64Array };
  /** Test hook: reads `address` (outside the region) from native code: a real segfault. */
  faultOutsideRegion(address: number): number;
  /** A copy of the counters, in the order of `Counter`. */
  counters(): Float64Array;
}

let cached: NativeAddon | undefined;

/** The addon, loaded once per thread. Fails with a message that says how to fix it. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  if (process.platform !== 'linux') {
    throw new NativeLoadError(`node-dsm needs Linux (memfd, SIGSEGV page faults); this is ${process.platform}`);
  }
  const root = path.join(__dirname, '..');
  const candidates = ['build/Release/node_dsm.node', 'build/Debug/node_dsm.node'];
  const errors: string[] = [];
  for (const rel of candidates) {
    try {
      cached = require(path.join(root, rel)) as NativeAddon;
      return cached;
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
