// The page-model table's travels (DESIGN.md "Consistency models"): the models of pages outside
// transactional consistency go to a joiner with its JoinAccept, and each commit's model
// changes (blocks allocated or freed under another model) reach every member ahead of the
// commit. The protocol that moves those pages is sequential.ts; it hears of every change.
import { LOST_OWNER, type ModelRun, Msg } from './protocol';
import { WireError } from './wire';
import { decodeModelSet } from './sequential_wire';
import type { Cluster } from './cluster';
import { MODEL_HERE, MODEL_MASK, PageModel } from '../native';

/** What the sequential protocol keeps per page, dropped as models change. */
export interface ModelProtocol {
  /** Page `page` has model `model` now (transactional: freed): its copy set, hold and pushes are over. */
  modelChanged(page: number, model: number): void;
  /** Every model this node knew is void (joining again). */
  forgetAll(): void;
  /** `page` was lost before this node joined (its admitter names no owner). */
  lostBeforeJoining(page: number): void;
}

export class ModelTable {
  constructor(
    private readonly n: Cluster,
    private readonly models: Uint8Array,
    private readonly protocol: ModelProtocol,
  ) {}

  // ---- a joining node learns the models ----

  /**
   * For a joiner (admission.ts, under the token at the configuration's time): every page
   * here outside transactional consistency, in runs of one model and one owner hint. Model
   * changes reach members ahead of their commits, so this holds every change committed up to
   * that time (and perhaps a later one, which its committer sends the joiner again).
   */
  runs(): ModelRun[] {
    const n = this.n;
    const owners = n.table.owners;
    const out: ModelRun[] = [];
    let last: ModelRun | undefined;
    for (let p = 0; p < this.models.length; p++) {
      const m = this.models[p];
      const model = m & MODEL_MASK;
      if (model === PageModel.transactional) {
        last = undefined;
        continue;
      }
      // A lost page's zero page here is this node's alone: it has no owner to name.
      const owner = m & MODEL_HERE && owners[p] !== LOST_OWNER ? n.id : owners[p];
      if (last && last.model === model && last.owner === owner && last.first + last.count === p) last.count++;
      else out.push((last = { first: p, count: 1, model, owner }));
    }
    return out;
  }

  /**
   * Joining (again): whatever this node knew of models before is void, since the cluster
   * may have freed those blocks meanwhile. Its pages become transactional zero pages here;
   * the joiner then takes the cluster's versions, and the admitter's runs (`adopt`).
   */
  forgetModels(): void {
    const n = this.n;
    for (let p = 0; p < this.models.length; p++) {
      if ((this.models[p] & MODEL_MASK) !== PageModel.transactional) n.native.setModel(p, 1, PageModel.transactional, n.id);
    }
    this.protocol.forgetAll();
  }

  /** The admitter's pages outside transactional consistency: the first touch here asks their owners. */
  adopt(runs: ModelRun[]): void {
    const n = this.n;
    for (const r of runs) {
      if (r.first >= n.config.numPages || r.count > n.config.numPages - r.first || r.model === PageModel.transactional || r.model > PageModel.migratory) {
        throw new WireError('a join names model pages outside the region or an unknown model');
      }
      n.native.setModel(r.first, r.count, r.model, r.owner);
      if (r.owner === LOST_OWNER) for (let p = r.first; p < r.first + r.count; p++) this.protocol.lostBeforeJoining(p);
    }
  }

  // ---- model changes travelling with commits ----

  /** Before this node's commit `time` goes out: every member learns its model changes first. */
  announce(time: number, to: Iterable<{ id: number }>): void {
    const n = this.n;
    const c = n.native.takeModelChanges(time);
    if (c.length === 0) return;
    const b = Buffer.from(c.buffer, c.byteOffset, c.byteLength);
    for (const m of to) if (m.id !== n.id) n.links.send(m.id, Msg.ModelSet, b);
    // Pages freed here: any copy sets and waits for them are over. Pages declared again (a
    // lost page discarded): lost no more.
    for (let i = 0; i < c.length; i += 3) for (let p = c[i]; p < c[i] + c[i + 1]; p++) this.protocol.modelChanged(p, c[i + 2]);
  }

  /** ModelSet: (first, count, model) triples, allocated or freed by the sender. */
  onModelSet(from: number, p: Buffer): void {
    const n = this.n;
    for (const { first, count, model } of decodeModelSet(p, n.config.numPages, PageModel.migratory)) {
      n.native.setModel(first, count, model, from);
      for (let q = first; q < first + count; q++) this.protocol.modelChanged(q, model);
    }
  }
}
