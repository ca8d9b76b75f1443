// A test hook (DSM_TEST_HOLD_SEQUENTIAL=grant,invalidation,push,declaration,allocation, or
// some of them): the first ownership grant, invalidation or pushed copy of each sequential page a
// node receives is held until that page's model changes here to one outside transactional
// consistency (its block freed and allocated again), then taken in, as if they had been
// slow on the way. It makes the arrival of a message about a page's earlier life after its
// new one began happen on demand. With 'declaration' it is the other way round: from the
// first commit that frees a block of another model, every commit this node receives is held until a
// sequential reply sent in a later life of its page than this node knows arrives, then taken
// in, in order, as if the commits had been slow and the reply fast (it came from another
// node, or the commits waited behind a lost connection). With 'allocation', from the first
// commit that allocates a block of another model, every commit this node receives is held
// until this node answers a recovery or runs one, then taken in: a commit that reaches the
// survivors only after they told a recovery what they had applied, and that the regenerated
// token makes void. Tests: stale_messages.test.ts, void_declarations.test.ts. Off, it holds
// nothing.
import { PageModel } from '../native';

export type HeldKind = 'grant' | 'invalidation' | 'push' | 'declaration' | 'allocation';

export class HeldForTest {
  private readonly kinds = new Set((process.env.DSM_TEST_HOLD_SEQUENTIAL ?? '').split(',').filter(Boolean));
  private readonly held = new Map<number, Array<() => void>>();
  private readonly once = new Set<string>();
  /** Commits held by 'declaration' or 'allocation', in arrival order; undefined before the first and after the release. */
  private commits?: Array<() => void>;
  /** Where the hook says it started holding commits. */
  log?: (message: string) => void;
  /** Which of the two holds them. */
  private holding?: 'declaration' | 'allocation';

  /** True if `take` (the message's handling) is held for `page`; it runs later (modelChanged). */
  hold(kind: HeldKind, page: number, take: () => void): boolean {
    if (!this.kinds.has(kind) || this.once.has(`${kind} ${page}`)) return false;
    this.once.add(`${kind} ${page}`);
    let q = this.held.get(page);
    if (!q) this.held.set(page, (q = []));
    q.push(take);
    return true;
  }

  /** Page `page` has model `model` now: its held messages are taken in next tick. */
  modelChanged(page: number, model: number): void {
    const q = this.held.get(page);
    if (!q || model === PageModel.transactional) return;
    this.held.delete(page);
    process.nextTick(() => {
      for (const take of q) take();
    });
  }

  /** True if the handling of a commit (`take`) is held ('declaration', 'allocation'); `models`: its model changes, (first, count, model) triples. */
  holdCommit(models: Uint32Array | undefined, take: () => void): boolean {
    if (!this.commits) {
      let frees = false;
      let allocates = false;
      for (let i = 2; models && i < models.length; i += 3) {
        if (models[i] === PageModel.transactional) frees = true;
        else allocates = true;
      }
      const kind = frees && this.kinds.has('declaration') ? 'declaration' : allocates && this.kinds.has('allocation') ? 'allocation' : undefined;
      if (!kind || this.once.has(kind)) return false;
      this.once.add(kind);
      this.holding = kind;
      this.commits = [];
      this.log?.(`test hook: holding the commits this node receives (${kind})`);
    }
    this.commits.push(take);
    return true;
  }

  /** A reply from a later life of its page than this node knows arrived: commits held by 'declaration' are taken in next tick. */
  laterReply(): void {
    if (this.holding === 'declaration') this.release();
  }

  /** This node answered a recovery or runs one: commits held by 'allocation' are taken in next tick. */
  recovering(): void {
    if (this.holding === 'allocation') this.release();
  }

  private release(): void {
    const q = this.commits;
    if (!q) return;
    this.commits = undefined;
    this.holding = undefined;
    process.nextTick(() => {
      for (const take of q) take();
    });
  }

  clear(): void {
    this.held.clear();
    this.commits = undefined;
    this.holding = undefined;
  }
}
