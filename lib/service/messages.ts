// Messages between the app thread and the service worker (in-process, over the worker's
// MessagePort). Network frames between nodes are defined in protocol.ts, not here.

/** Sent once, as workerData, when the service starts. */
export interface ServiceConfig {
  nodeId: number;
  numPages: number;
  pageSize: number;
  /** One BigUint64 word: the node's global time, written by the service, read by the app. */
  timeBuffer: SharedArrayBuffer;
}

export type AppRequest =
  | { id: number; type: 'commit'; pages: Uint32Array }
  | { id: number; type: 'test-invalidate'; page: number; fill: number }
  | { id: number; type: 'test-touch-app-view'; page: number }
  | { id: number; type: 'close' };

export type ServiceReply =
  | { id: number; ok: true; time?: number }
  | { id: number; ok: false; doomed?: boolean; code?: string; message?: string };

/** Unsolicited events from the service. */
export type ServiceEvent = { type: 'ready' } | { type: 'log'; level: 'warn' | 'error'; message: string };
