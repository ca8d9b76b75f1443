// Sequential page requests that get no answer (sequential.ts): each becomes a search after
// ASK_RETRY_MS, as the transactional pages' fetches are asked again (pager.ts).

/**
 * How long a request may go unanswered. A request lost on its way along the owner hints
 * (forwarded into a node as it closed, say) left its thread waiting for good; a search is
 * answered by every member itself. An owner serves a request asked twice like any other,
 * and answers nobody waits for any more are dropped (sequential.ts onReply).
 */
export const ASK_RETRY_MS = 1000;

export class UnansweredRequests {
  private readonly timers = new Map<number, NodeJS.Timeout>();

  /** `expired(page)`: the request for `page` went unanswered for ASK_RETRY_MS. */
  constructor(private readonly expired: (page: number) => void) {}

  /** A request for `page` was sent. */
  sent(page: number): void {
    this.answered(page);
    const timer = setTimeout(() => {
      this.timers.delete(page);
      this.expired(page);
    }, ASK_RETRY_MS);
    timer.unref();
    this.timers.set(page, timer);
  }

  /** The request for `page` was answered, or became a search. */
  answered(page: number): void {
    clearTimeout(this.timers.get(page));
    this.timers.delete(page);
  }
}
