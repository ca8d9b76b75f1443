// Entry point of the service worker thread.
import { parentPort, workerData } from 'node:worker_threads';
import { loadNative } from '../native';
import type { AppRequest, ServiceConfig, ServiceEvent } from './messages';
import { Service } from './service';

const port = parentPort!;
const emit = (e: ServiceEvent) => port.postMessage(e);
const service = new Service(loadNative(), workerData as ServiceConfig, (level, message) =>
  emit({ type: 'log', level, message }),
);
service.start();
port.on('message', (req: AppRequest) => {
  let reply;
  try {
    reply = service.handle(req);
  } catch (e) {
    const err = e as Error & { code?: string };
    reply = { id: req.id, ok: false as const, code: err.code, message: err.message };
  }
  if (reply) port.postMessage(reply);
  if (req.type === 'close') port.close();
});
emit({ type: 'ready' });
