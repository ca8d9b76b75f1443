// What barriers and locks need from their node: transactions, the region's words and page
// versions, named objects of their own, and waiting for a commit or configuration change.
import { ClosedError, InvalidOptionError } from '../errors';
import { ROOT_NAME_MAX } from '../alloc/layout';
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
  /** The pointer named `name`, read outside a transaction (undefined: not set, or not known here yet). */
  root(name: string): number | undefined;
  /** Answers once one of `pages` has a version above `since`, or the configuration is not `epoch` (-1: at once). */
  watch(pages: number[], since: number[], epoch: number): Promise<MembershipView>;
}

/** Bytes of a barrier's or lock's state object: a whole page of its own, so no other data shares it. */
export const SYNC_OBJECT_BYTES = 4096;

const encoder = new TextEncoder();

/** The root naming the state of barrier or lock `name` (`what`: 'barrier' | 'lock'). */
export function syncRootName(what: string, name: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new InvalidOptionError(`dsm.${what}: the name must be a non-empty string, got ${String(name)}`);
  const root = `\0${what}:${name}`;
  const bytes = encoder.encode(root).length;
  if (bytes > ROOT_NAME_MAX) {
    throw new InvalidOptionError(`dsm.${what}: the name "${name}" is too long: at most ${ROOT_NAME_MAX - (bytes - encoder.encode(name).length)} UTF-8 bytes`);
  }
  return root;
}

/** The pointer to the state object named `root`, made (zeroed, on a page of its own) by the first caller. */
export async function syncObject(node: SyncNode, root: string): Promise<number> {
  const known = node.root(root);
  if (known) return known;
  return node.run((tx) => {
    // Read in the transaction: two nodes making it at once conflict on the root, and the
    // second sees the first's object when it runs again.
    const p = node.root(root);
    if (p) return p;
    const q = tx.alloc(SYNC_OBJECT_BYTES);
    tx.setRoot(root, q);
    return q;
  });
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
