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
//
// Each loss names the page's generation (model_table.ts: the time of its latest model
// declaration the decider knows of). A discard's model change and another node's loss
// announcement travel on different connections, so a member can hear of a loss after the
// discard that ended it: a loss of an older generation than it knows is void, and a model
// change of the lost generation or an older one, heard of after the loss, ends nothing.
// Before generations, a member took a loss for void whenever its owner hint named a live
// member other than the announcer; a hint is only a hint, and a member whose hint named a
// node the page had since moved away from never listed the loss, so its tx.discardLost left
// the page alone while the nodes that had been told kept writing to their own zero pages
// (the random model workload read 0 where another node had written).
import { LOST_OWNER, Msg } from './protocol';
import { decodeLost, encodeLost } from './sequential_wire';
import type { Cluster } from './cluster';
import { MODEL_MASK, PageModel } from '../native';

export class SequentialLoss {
  /** Pages known lost here, with the generation each was lost in. */
  private readonly lostIn = new Map<number, number>();

  constructor(
    private readonly n: Cluster,
    private readonly models: Uint8Array,
    private readonly generationOf: (page: number) => number,
  ) {}

  /**
   * `page` is lost in `generation` (decided here, or heard of in an answer): listed from now
   * on; `announce`: this node decided it, and tells every other member. The caller installs
   * the zero page.
   */
  record(page: number, announce: boolean, generation = this.generationOf(page)): void {
    const n = this.n;
    this.lostIn.set(page, Math.max(generation, this.lostIn.get(page) ?? 0));
    if (n.membership.lostPages.has(page)) return;
    n.membership.lostPages.add(page);
    n.publishStatus();
    if (!announce) return;
    const b = encodeLost(page, generation);
    for (const id of n.members.keys()) if (id !== n.id) n.links.send(id, Msg.SeqLost, b);
  }

  /** SeqLost: another member decided `page` lost. */
  onLost(from: number, p: Buffer): void {
    const n = this.n;
    const { page, generation } = decodeLost(p, n.config.numPages);
    // A discard (or a free and an allocation) made the page new since: that loss is over.
    if (generation < this.generationOf(page)) return;
    const model = this.models[page] & MODEL_MASK;
    if (model !== PageModel.sequential && model !== PageModel.migratory) return; // freed meanwhile
    if (n.table.owners[page] === LOST_OWNER) return;
    if (n.table.states[page] !== 0) {
      // A copy is here, so the page is not lost: the search missed this node (it joined or
      // took the page while the search's rounds ran). The sender's own zero page is its alone.
      n.ev.log('warn', `node ${from} took sequential page ${page} for lost, but this node holds it; kept`);
      return;
    }
    n.native.dropSequential(page, LOST_OWNER);
    this.record(page, false, generation);
  }

  /** The generation `page` is known lost in here (undefined: not lost). */
  lostGeneration(page: number): number | undefined {
    return this.lostIn.get(page);
  }

  /** A joiner's admitter names `page`'s owner LOST_OWNER: it was lost before this node joined. */
  joined(page: number, generation: number): void {
    this.lostIn.set(page, generation);
    this.n.membership.lostPages.add(page);
  }

  /** `page` took a model again at `time` (allocated, freed, or declared again by a discard): no longer lost. */
  changed(page: number, time: number): void {
    const lost = this.lostIn.get(page);
    if (lost !== undefined && lost >= time) return;
    this.lostIn.delete(page);
    this.n.membership.discarded(page);
  }

  /** Joining again: what this node knew of losses is void (the admitter's runs say it anew). */
  forget(): void {
    this.lostIn.clear();
  }
}
