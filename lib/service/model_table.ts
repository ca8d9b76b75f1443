// The page-model table's travels (DESIGN.md "Consistency models"): the models of pages outside
// transactional consistency go to a joiner with its JoinAccept, and each commit's model
// changes (blocks allocated or freed under another model) travel in the commit and take
// effect as it arrives. The protocol that moves those pages is sequential.ts; it hears of
// every change.
import { LOST_OWNER, type ModelRun } from './protocol';
import { WireError } from './wire';
import { checkModelChanges } from './sequential_wire';
import type { Cluster } from './cluster';
import type { SequentialLoss } from './sequential_loss';
import { MODEL_HERE, MODEL_MASK, PageModel } from '../native';

/** What the sequential protocol keeps per page, dropped as models change. */
export interface ModelProtocol {
  /** Page `page` has model `model` now, declared at `time` (transactional: freed): its copy set, hold and pushes are over. */
  modelChanged(page: number, model: number, time: number): void;
  /** Every model this node knew is void (joining again). */
  forgetAll(): void;
}

export class ModelTable {
  /**
   * Per page that ever left transactional consistency: the global time of the commit that declared
   * its model last, as far as this node knows (its generation). Model changes come from
   * their committers over separate connections, so a node can hear of a later declaration
   * before an earlier one (a block freed by one node and allocated again by another), or of
   * a page's loss after a discard made it new again: a message about an older generation
   * is void.
   */
  private readonly generations = new Map<number, number>();
  /**
   * Per page in `generations` declared by a commit (not learned at a join): the generation
   * of the token that commit was made with. A recovery that replaces that token after the
   * commit's time makes the commit void, and its declarations with it (voidDeclarations).
   */
  private readonly tokens = new Map<number, number>();

  constructor(
    private readonly n: Cluster,
    private readonly models: Uint8Array,
    private readonly protocol: ModelProtocol,
    private readonly loss: SequentialLoss,
  ) {}

  // ---- a joining node learns the models ----

  /**
   * For a joiner (admission.ts, under the token at the configuration's time): every page
   * here outside transactional consistency, in runs of one model and one owner hint. Model
   * changes take effect as their commits arrive, and every commit up to that time has been
   * applied here, so this holds every change committed up to it; later ones reach the
   * joiner in their commits.
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
      const generation = this.generationOf(p);
      if (last && last.model === model && last.owner === owner && last.generation === generation && last.first + last.count === p) last.count++;
      else out.push((last = { first: p, count: 1, model, owner, generation }));
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
    this.generations.clear();
    this.tokens.clear();
    this.loss.forget();
    this.protocol.forgetAll();
  }

  /** The admitter's pages outside transactional consistency: the first touch here asks their owners. */
  adopt(runs: ModelRun[]): void {
    const n = this.n;
    for (const r of runs) {
      if (r.first >= n.config.numPages || r.count > n.config.numPages - r.first || r.model === PageModel.transactional || r.model > PageModel.migratory) {
        throw new WireError('a join names model pages outside the region or an unknown model');
      }
      if (!Number.isSafeInteger(r.generation)) throw new WireError('a join names a model run of a generation past 2^53');
      n.native.setModel(r.first, r.count, r.model, r.owner);
      for (let p = r.first; p < r.first + r.count; p++) {
        this.generations.set(p, r.generation);
        this.tokens.delete(p);
        if (r.owner === LOST_OWNER) this.loss.joined(p, r.generation);
      }
    }
  }

  // ---- model changes travelling with commits ----

  /**
   * This node's commit at `time`: the model changes it made (for its record), declared here.
   * They travel in the commit itself, so every member takes them in as the commit arrives,
   * and a re-sent commit carries them too. Before, they went ahead of the commit in a
   * message of their own that nobody kept: a member that got the commit from a backup (the
   * committer died between the two sends) or from a re-send never heard of them, and took a
   * sequential block for transactional pages.
   */
  take(time: number, token: number): Uint32Array | undefined {
    const c = this.n.native.takeModelChanges(time);
    if (c.length === 0) return undefined;
    // Pages freed here: any copy sets and waits for them are over. Pages declared again (a
    // lost page discarded): lost no more.
    for (let i = 0; i < c.length; i += 3) for (let p = c[i]; p < c[i] + c[i + 1]; p++) this.declared(p, c[i + 2], time, token);
    return c;
  }

  /** Throws WireError unless `changes` (a received commit's) name pages of the region and known models. */
  check(changes: Uint32Array): void {
    checkModelChanges(changes, this.n.config.numPages, PageModel.migratory);
  }

  /**
   * Another node's commit at `time`, arrived here (once: commits.ts onCommit): the (first,
   * count, model) triples it allocated, freed or declared again, in order (a block freed and
   * allocated again in one commit names its pages twice). Pages this node knows a later
   * declaration of, or knows lost in this declaration's generation or a later one (the
   * committer died, and a search found no copy before this commit came), keep what they have.
   */
  apply(committer: number, time: number, token: number, changes: Uint32Array): void {
    const n = this.n;
    const current = (q: number) => time >= this.generationOf(q) && time > (this.loss.lostGeneration(q) ?? -1);
    for (let i = 0; i < changes.length; i += 3) {
      const first = changes[i];
      const last = first + changes[i + 1];
      const model = changes[i + 2];
      for (let q = first; q < last; ) {
        if (!current(q)) {
          q++;
          continue;
        }
        let end = q + 1;
        while (end < last && current(end)) end++;
        n.native.setModel(q, end - q, model, committer);
        for (let k = q; k < end; k++) this.declared(k, model, time, token);
        q = end;
      }
    }
  }

  /** The generation of `page`: the time of its latest model declaration known here (0: none). */
  generationOf(page: number): number {
    return this.generations.get(page) ?? 0;
  }

  /**
   * A recovery replaced a token (`isVoid`: whether a commit at a time made with a token of
   * a generation is void now): the declarations of commits made with it after the time it
   * was replaced at are void like those commits. They took effect here as the commits
   * arrived (or were made here), and nothing else undoes them: the heap's pages roll back
   * to the time of the regeneration, where those blocks are free, and a page left of its
   * model here doomed every run the heap handed it to, again and again, and a commit of
   * this node's carried it to every member (test: void_alloc.test.ts). A block such a
   * commit allocated is free again here (free memory is zero). One it freed cannot come
   * back: its pages were zeroed here.
   */
  voidDeclarations(isVoid: (token: number, time: number) => boolean): void {
    const n = this.n;
    let freed = 0;
    let allocated = 0;
    for (const [page, token] of [...this.tokens]) {
      const time = this.generations.get(page) ?? 0;
      if (!isVoid(token, time)) continue;
      this.tokens.delete(page);
      // Declared by nothing the cluster committed: any declaration after the regeneration applies.
      this.generations.delete(page);
      if ((this.models[page] & MODEL_MASK) === PageModel.transactional) {
        freed++;
        continue;
      }
      allocated++;
      n.native.setModel(page, 1, PageModel.transactional, n.id);
      this.protocol.modelChanged(page, PageModel.transactional, time);
      this.n.pager.modelChanged(page);
    }
    if (allocated) n.ev.log('warn', `${allocated} page(s) allocated by void commits are free again here`);
    if (freed) n.ev.log('warn', `${freed} page(s) freed by void commits stay free here: their contents were zeroed when the free arrived`);
  }

  private declared(page: number, model: number, time: number, token: number): void {
    // Kept for freed pages too: an allocation of the block before its free, heard of late, is void.
    this.generations.set(page, time);
    this.tokens.set(page, token);
    this.protocol.modelChanged(page, model, time);
    this.n.pager.modelChanged(page);
  }
}
