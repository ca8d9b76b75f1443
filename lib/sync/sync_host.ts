// What locks need from their node: transactions, the region's words and page
// versions, named roots, and waiting for a commit or configuration change; and the
// configuration as the app knows it.
import { ClosedError } from '../errors';
import type { Transaction } from '../transaction';
import type { MembershipView } from '../service/watches';

export interface SyncNode {
  readonly u32: Uint32Array;
  /** The native page table's versions (the global time of each page's last commit known here). */
  readonly versions: BigUint64Array;
  readonly pageSize: number;
  nodeId(): number;
  closed(): boolean;
  /** Runs a transaction (also while the node is closing: close() releases held locks). */
  run<T>(fn: (tx: Transaction) => T): Promise<T>;
  /** Sends this node's commits so far to the others now, not with the next batch (another node waits for them). */
  flush(): void;
  /** The pointer named `name`, read outside a transaction (undefined: not set, or not known here yet). */
  root(name: string): number | undefined;
  /** Answers once one of `pages` has a version above `since`, or the configuration is not `epoch` (-1: at once). */
  watch(pages: number[], since: number[], epoch: number): Promise<MembershipView>;
}

/** The configuration as this node's app last learnt it. */
export class MembershipCache {
  private view: MembershipView = { epoch: -1, members: [], nextId: 0 };
  private members = new Set<number>();

  constructor(private readonly node: SyncNode) {}

  get epoch(): number {
    return this.view.epoch;
  }
  get size(): number {
    return this.members.size;
  }

  /** Asks the service for the current configuration. */
  async refresh(): Promise<void> {
    this.set(await this.node.watch([], [], -1));
  }

  /** Waits for a commit to change `page` past `version`, or for a new configuration. */
  async waitChange(page: number, version: number): Promise<void> {
    if (this.node.closed()) throw new ClosedError();
    this.set(await this.node.watch([page], [version], this.view.epoch));
    if (this.node.closed()) throw new ClosedError();
  }

  /**
   * A node id that was given out and is not a member any more: removed (dead, cut off,
   * left), never to come back under that id. An id newer than this view is not gone.
   */
  gone(id: number): boolean {
    return id < this.view.nextId && !this.members.has(id);
  }

  private set(v: MembershipView): void {
    this.view = v;
    this.members = new Set(v.members);
  }
}
