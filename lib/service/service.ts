// The service: runs in a worker thread and owns page installation, global time and the
// commit order. The app thread may be blocked inside the fault handler while a fault waits
// here, so nothing in this file may touch the app view (only the native system view).
import { CommitStatus, type NativeAddon } from '../native';
import type { AppRequest, ServiceConfig, ServiceReply } from './messages';

export class Service {
  private readonly time: BigUint64Array;
  /** Test hook: pages invalidated on purpose, with the byte their reinstalled copy holds. */
  private readonly testPages = new Map<number, number>();

  constructor(
    private readonly native: NativeAddon,
    private readonly config: ServiceConfig,
    private readonly log: (level: 'warn' | 'error', message: string) => void,
  ) {
    this.time = new BigUint64Array(config.timeBuffer);
  }

  start(): void {
    this.native.attachService(() => this.onWake());
  }

  stop(): void {
    this.native.detachService();
  }

  get globalTime(): number {
    return Number(this.time[0]);
  }

  /** Woken by the native side: faults the handler could not resolve, or a commit request. */
  private onWake(): void {
    const reqs = this.native.takeRequests();
    for (let i = 0; i < reqs.length; i += 3) {
      const slot = reqs[i];
      const page = reqs[i + 1];
      try {
        this.resolve(page);
      } catch (e) {
        this.log('error', `resolving a fault on page ${page} failed: ${(e as Error).message}`);
      }
      this.native.completeRequest(slot);
    }
    const kind = this.native.takeCommitRequest();
    if (kind !== 0) this.commit();
  }

  private resolve(page: number): void {
    const fill = this.testPages.get(page);
    this.testPages.delete(page);
    const data = new Uint8Array(this.config.pageSize);
    if (fill !== undefined) data.fill(fill);
    // On one node an invalid page only arises from the test hook; the page's committed
    // contents live nowhere else, so it is rebuilt from what the hook recorded.
    this.native.install(page, data, this.globalTime, this.config.nodeId);
  }

  /** One node: the token is always here and nothing can doom a finished transaction. */
  private commit(): void {
    const t = this.time[0] + 1n;
    this.time[0] = t;
    this.time[1] = t;
    this.native.commit(Number(t), this.config.nodeId);
    this.native.replyCommit(CommitStatus.committed, Number(t));
  }

  handle(req: AppRequest): ServiceReply | undefined {
    switch (req.type) {
      case 'test-invalidate':
        this.testPages.set(req.page, req.fill);
        this.native.invalidate(req.page, this.globalTime, this.config.nodeId);
        return { id: req.id, ok: true };
      case 'test-touch-app-view':
        this.native.touchAppView(req.page);
        return { id: req.id, ok: true };
      case 'close':
        this.stop();
        return { id: req.id, ok: true };
    }
  }
}
