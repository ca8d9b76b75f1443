// The events a node emits, typed, and listeners refused for names no node emits (a misspelt
// one would never fire). DsmNode extends NodeEmitter.
import { EventEmitter } from 'node:events';
import { InvalidOptionError } from './errors';

export interface CommitEvent {
  time: number;
  pages: number;
}

/** A run of a transaction that will not commit: doomed by another node's commit ('conflict'), or its function threw ('error'). */
export interface AbortEvent {
  /** 0 for the first run, then 1, 2, ... */
  attempt: number;
  reason: 'conflict' | 'error';
}

/** A peer that joined the cluster or left it (died, was cut off, closed). */
export interface PeerEvent {
  id: number;
}

/** The events a node emits, and what each listener gets. */
export interface NodeEvents {
  commit: CommitEvent;
  abort: AbortEvent;
  'peer-join': PeerEvent;
  'peer-leave': PeerEvent;
}

const NODE_EVENTS: ReadonlySet<string> = new Set(['commit', 'abort', 'peer-join', 'peer-leave']);
/** EventEmitter's own, and 'error', which `events.once()` and `events.on()` listen to whatever they wait for. */
const EMITTER_EVENTS: ReadonlySet<string> = new Set(['error', 'newListener', 'removeListener']);

/** A listener for an event no node emits would never run: a misspelt name is refused instead. */
function checkEvent(method: string, event: string | symbol): void {
  if (typeof event === 'symbol' || NODE_EVENTS.has(event) || EMITTER_EVENTS.has(event)) return;
  throw new InvalidOptionError(`dsm.${method}: a node emits no event "${String(event)}"; its events are ${[...NODE_EVENTS].map((e) => `'${e}'`).join(', ')}`);
}

/** EventEmitter with the node's events: 'commit', 'abort', 'peer-join', 'peer-leave'. */
export class NodeEmitter extends EventEmitter {
  /**
   * Listens to 'commit' (`{ time, pages }`), 'abort' (`{ attempt, reason }`), 'peer-join' or
   * 'peer-leave' (`{ id }`). Another name raises ERR_DSM_INVALID_OPTION (a misspelt one would
   * never fire).
   * @example dsm.on('peer-leave', ({ id }) => console.log(`node ${id} left`));
   */
  override on<K extends keyof NodeEvents>(event: K, listener: (e: NodeEvents[K]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    checkEvent('on', event);
    return super.on(event, listener);
  }

  /** As `on`, once. */
  override once<K extends keyof NodeEvents>(event: K, listener: (e: NodeEvents[K]) => void): this;
  override once(event: string | symbol, listener: (...args: any[]) => void): this;
  override once(event: string | symbol, listener: (...args: any[]) => void): this {
    checkEvent('once', event);
    return super.once(event, listener);
  }

  /** As `on`. */
  override addListener(event: string | symbol, listener: (...args: any[]) => void): this {
    checkEvent('addListener', event);
    return super.addListener(event, listener);
  }

  /** As `on`, ahead of the listeners already there. */
  override prependListener(event: string | symbol, listener: (...args: any[]) => void): this {
    checkEvent('prependListener', event);
    return super.prependListener(event, listener);
  }

  /** As `once`, ahead of the listeners already there. */
  override prependOnceListener(event: string | symbol, listener: (...args: any[]) => void): this {
    checkEvent('prependOnceListener', event);
    return super.prependOnceListener(event, listener);
  }
}
