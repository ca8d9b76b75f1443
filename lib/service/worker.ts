// Entry point of the service worker thread.
import { parentPort, workerData } from 'node:worker_threads';
import { Counter, loadNative } from '../native';
import type { AppRequest, ServiceConfig, ServiceEvent } from './messages';
import { CommitRing } from './commit_ring';
import { LocalTokenGate } from './local_token';
import { Service } from './service';

const port = parentPort!;
const config = workerData as ServiceConfig;
const emit = (e: ServiceEvent) => port.postMessage(e);
const log = (level: 'warn' | 'error', message: string) => emit({ type: 'log', level, message });
// A promise rejected with nobody to catch it is a bug (or a peer's input reaching a path
// that forgot to guard it); by default it would end this thread, and with it the service
// every fault and commit of the node waits on. Logged, and the service goes on.
process.on('unhandledRejection', (reason) => {
  const what = reason instanceof Error ? (reason.stack ?? reason.message) : String(reason);
  log('error', `unhandled rejection in the service thread (a bug; the service goes on): ${what}`);
});
const native = loadNative();
const service = new Service(native, config, log);
service.reply = (r) => port.postMessage(r);

async function start(): Promise<void> {
  service.start();
  if (config.cluster) {
    // Loaded only by networked nodes: a one-node cluster never opens a socket.
    const { Transport } = require('./transport') as typeof import('./transport');
    const { Cluster } = require('./cluster') as typeof import('./cluster');
    const cc = config.cluster;
    const transport = new Transport({
      listen: cc.listen,
      secret: cc.secret,
      heartbeatMs: cc.heartbeatMs,
      deadAfterMs: cc.deadAfterMs,
      // Test hooks: small limits let a test reach backpressure with little traffic.
      backlogBytes: Number(process.env.DSM_TEST_BACKLOG_BYTES) || undefined,
      maxQueuedBytes: Number(process.env.DSM_TEST_MAX_QUEUED_BYTES) || undefined,
      logger: { warn: (m: string) => log('warn', m), error: (m: string) => log('error', m) },
    });
    const cluster = new Cluster(
      native,
      transport,
      {
        base: config.base,
        pageSize: config.pageSize,
        numPages: config.numPages,
        peers: cc.peers,
        joinTimeoutMs: cc.joinTimeoutMs,
        durability: cc.durability,
        replicas: cc.replicas,
        tokenBatchMs: cc.tokenBatchMs,
        pageServer: cc.pageServer,
      },
      {
        log,
        event: (type, id) => {
          emit({ type, id });
          service.watches.check();
        },
        publish: (a, s, lowered) => service.publish(a, s, lowered),
        status: (lost, partitioned) => service.publishStatus(lost, partitioned),
        discarding: (page) => service.discarding(page),
        rejoined: (id, time) => {
          service.restartTimes(time);
          service.publishNodeId();
          emit({ type: 'rejoined', id });
          service.watches.check();
        },
        durable: (time) => {
          if (service.publishDurable(time)) emit({ type: 'durable' });
        },
        appInFlight: () => service.appInFlight(),
        members: (nextId, ids) => service.publishMembers(nextId, ids),
        progress: (phase, done, total) => emit({ type: 'progress', phase, done, total }),
        uncertain: (removed) => {
          if (removed) service.removedFromCluster();
          emit({ type: 'uncertain' });
        },
      },
      new LocalTokenGate(config.gate),
      config.localCommits!,
      new CommitRing(config.commitRing!),
    );
    cluster.statsForClient = () => ({
      ...service.stats(),
      nodeId: cluster.id,
      // Which cluster this node is in (cluster_identity.ts): two clusters founded from one store share the secret, not this.
      cluster: cluster.identity,
      counters: namedCounters(native.counters()),
      hotPages: service.hotPages,
      protocol: cluster.debugState(),
    });
    service.cluster = cluster;
    if (cc.pageServer) {
      // Loaded only by page servers: other nodes never load the embedded store.
      const { StoreFeed } = require('../pageserver/feed') as typeof import('../pageserver/feed');
      const feed = await StoreFeed.open(cluster, cc.pageServer.dir, { pageSize: config.pageSize, regionSize: config.numPages * config.pageSize });
      cluster.store = feed;
      const base = cluster.statsForClient;
      cluster.statsForClient = () => ({ ...(base!() as object), pageStore: feed.stats() });
    }
    try {
      await cluster.start();
    } catch (e) {
      await transport.close().catch(() => undefined);
      await cluster.store?.close().catch(() => undefined);
      throw e;
    }
  }
  service.publishNodeId();
  emit({ type: 'ready', nodeId: service.nodeId, address: service.cluster?.address ?? '' });
}

async function stop(): Promise<void> {
  await service.cluster?.close();
  service.stop();
}

port.on('message', (req: AppRequest) => {
  if (req.type === 'close') {
    stop().then(
      () => port.postMessage({ id: req.id, ok: true }),
      (e: Error) => port.postMessage({ id: req.id, ok: false, message: e.message }),
    );
    return;
  }
  let reply;
  try {
    reply = service.handle(req);
  } catch (e) {
    const err = e as Error & { code?: string };
    reply = { id: req.id, ok: false as const, code: err.code, message: err.message };
  }
  if (reply) port.postMessage(reply);
});

start().catch((e: Error & { code?: string }) => {
  service.stop();
  emit({ type: 'failed', code: e.code ?? 'ERR_DSM_SYSTEM', message: e.message });
});

/** The native counters by name (the order of `Counter`). */
function namedCounters(c: Float64Array): Record<string, number> {
  return Object.fromEntries(Object.entries(Counter).map(([name, i]) => [name, c[i]]));
}
