// Sequential and migratory pages lost with their owner, known to every member (README
// "Consistency models"). A search that finds neither the owner nor a read copy decides the
// page lost; the deciding node tells every member (SeqLost), so each lists the page in
// dsm.lostPages() and the first touch of it on each node raises ERR_DSM_PAGE_LOST. Before,
// the decider alone heard of it and owned zeros, which every other node then fetched from it
// without a word: the loss looked like a write of zeros nobody made.
//
// A lost page's owner is LOST_OWNER on every node that knows of the loss: its touches get a
// zero page of their own, never served (requests and searches are answered `lost`), and a
// joiner learns it from its admitter's model runs. It ends as an allocation does: the
// transaction that discards it (tx.discardLost) declares its model again, and its commit's
// model change makes the committer the owner of a zero page on every node.
import { LOST_OWNER, Msg } from './protocol';
import { decodeLost, encodeLost } from './sequential_wire';
import type { Cluster } from './cluster';
import { MODEL_MASK, PageModel } from '../native';

export class SequentialLoss {
  constructor(
    private readonly n: Cluster,
    private readonly models: Uint8Array,
  ) {}

  /**
   * `page` is lost (decided here, or heard of in an answer): listed from now on; `announce`:
   * this node decided it, and tells every other member. The caller installs the zero page.
   */
  record(page: number, announce: boolean): void {
    const n = this.n;
    if (n.membership.lostPages.has(page)) return;
    n.membership.lostPages.add(page);
    n.publishStatus();
    if (!announce) return;
    const b = encodeLost(page);
    for (const id of n.members.keys()) if (id !== n.id) n.links.send(id, Msg.SeqLost, b);
  }

  /** SeqLost: another member decided `page` lost. */
  onLost(from: number, p: Buffer): void {
    const n = this.n;
    const page = decodeLost(p, n.config.numPages);
    const model = this.models[page] & MODEL_MASK;
    if (model !== PageModel.sequential && model !== PageModel.migratory) return; // freed meanwhile
    const owner = n.table.owners[page];
    if (owner === LOST_OWNER) return;
    if (n.table.states[page] !== 0) {
      // A copy is here, so the page is not lost: the search missed this node (it joined or
      // took the page while the search's rounds ran). The sender's own zero page is its alone.
      n.ev.log('warn', `node ${from} took sequential page ${page} for lost, but this node holds it; kept`);
      return;
    }
    // A hint naming a live member other than the sender: a discard may have made the page
    // new there since (its model change, from another connection, can pass this message).
    // This node learns of the loss from its first touch then, as that member answers `lost`.
    if (owner !== from && owner !== n.id && n.members.has(owner)) return;
    n.native.dropSequential(page, LOST_OWNER);
    this.record(page, false);
  }

  /** A joiner's admitter names `page`'s owner LOST_OWNER: it was lost before this node joined. */
  joined(page: number): void {
    this.n.membership.lostPages.add(page);
  }

  /** `page` took a model again (allocated, freed, or declared again by a discard): no longer lost. */
  changed(page: number): void {
    this.n.membership.discarded(page);
  }
}
