// The figures of one node that dsm.stats() returns (node.ts), and what each counts.
import type { HotPage } from './conflict_monitor';

/** Figures of one node, from {@link DsmNode.stats}. */
export interface DsmStats {
  nodeId: number;
  globalTime: number;
  faults: {
    /** Read faults resolved inside the handler (read tracking). */
    read: number;
    /** Write faults resolved inside the handler (shadow on write). */
    write: number;
    /** Faults that needed the service thread (page not valid on this node). */
    service: number;
    /** Writes outside a transaction (rolled back). */
    violations: number;
    /**
     * Read faults inside a transaction on a page this node wrote last time: granted write
     * access at once (one fault instead of a read and a write fault), and of those, pages
     * the transaction only read after all (`writeAheadUnused`; they count as reads).
     */
    writeAhead: number;
    writeAheadUnused: number;
    /** Of `service`, faults a data channel answered without the service: its native reader woke the thread as it installed the page, or the thread saw the page arrive before the service took its request (no JavaScript between the reply and the faulting thread). */
    answeredByChannel: number;
    /** Of `service`, faults whose page request the faulting thread sent itself, on the owner's data channel (no JavaScript before the request left). */
    sentByFault: number;
    /** Other nodes' page requests this node answered natively, on their data channels (no JavaScript on this node). */
    servedByChannel: number;
    /**
     * Faults of a transaction on pages not here while this node had no quorum (or was joining
     * again): no page was fetched; the run was given scratch memory, not committed, and the
     * transaction rejected with ERR_DSM_PARTITIONED instead of waiting for the cut to heal.
     */
    refused: number;
  };
  /**
   * `heldFromStart`: transactions that ran holding the commit token from their first run,
   * because one page kept dooming runs here (durability 'replicated' or 'disk').
   */
  transactions: { begun: number; committed: number; aborted: number; retried: number; heldFromStart: number };
  pages: { invalid: number; validUnmapped: number; read: number; write: number };
  /**
   * Pages of the region by consistency model (`tx.alloc(size, { model })`), as this node's
   * page table knows them; every page not allocated outside transactional consistency
   * counts as transactional.
   */
  models: { transactional: number; sequential: number; migratory: number; local: number };
  /** Whole-region revokes forced by mprotect ENOMEM (too many memory areas). */
  protectionResets: number;
  shadowRestores: number;
  installs: number;
  /** Copies made stale by other nodes' commits (fetched again if read). */
  invalidations: number;
  /** Copies brought to another node's commit by applying its diff (no fetch needed). */
  updates: number;
  /**
   * Times this node's lease ran out before its service thread saw it (a stall, a SIGSTOP)
   * and the app thread fenced its sequential and migratory pages itself.
   */
  leaseAlarms: number;
  /**
   * The false-sharing monitor: the pages that caused the most of this node's aborts, most
   * first, with the nodes whose commits caused them and what each page holds. An object
   * that shows up here shares a page with what other nodes write: give it its own page
   * (allocate it larger than 4 KiB) or separate it from the data the others change.
   */
  hotPages: HotPage[];
}
