// The Prometheus text endpoint of `dsm node --metrics` and `dsm pageserver --metrics`. Each
// scrape asks the node for its figures the way `dsm stats` does (an authenticated client
// connection on loopback), so nodes and page servers expose the same thing and the node's
// threads do no work between scrapes. Every number in the stats becomes a gauge named after
// its path (protocol.durableTime -> dsm_protocol_durable_time), labelled with the node id.
import http from 'node:http';
import { Gauge, Registry } from 'prom-client';
import { checkAddress } from './options';
import { splitAddress } from './service/transport';
import { ListenError } from './service/transport_errors';

/** Numeric figures of a stats object, flattened to metric names. */
export function flatten(stats: Record<string, unknown>, prefix = 'dsm', out = new Map<string, number>()): Map<string, number> {
  for (const [k, v] of Object.entries(stats)) {
    const name = `${prefix}_${k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/[^A-Za-z0-9_]/g, '_').toLowerCase()}`;
    if (typeof v === 'number' && Number.isFinite(v)) out.set(name, v);
    else if (typeof v === 'boolean') out.set(name, v ? 1 : 0);
    else if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v as Record<string, unknown>, name, out);
  }
  return out;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  readonly address: string;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` on `listen` (host:port), each scrape filled from `source()`.
 *
 * @example
 * const m = await startMetricsServer('127.0.0.1:9400', () => fetchStats(address, secret));
 */
export async function startMetricsServer(listen: string, source: () => Promise<Record<string, unknown>>): Promise<MetricsServer> {
  const registry = new Registry();
  const gauges = new Map<string, Gauge>();
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('try GET /metrics\n');
      return;
    }
    source()
      .then(async (stats) => {
        const node = String(stats.nodeId ?? '');
        for (const [name, value] of flatten(stats)) {
          if (name === 'dsm_node_id') continue;
          let g = gauges.get(name);
          if (!g) {
            g = new Gauge({ name, help: `node-dsm figure ${name.slice(4)} (see dsm stats)`, labelNames: ['node'], registers: [registry] });
            gauges.set(name, g);
          }
          g.set({ node }, value);
        }
        res.writeHead(200, { 'content-type': registry.contentType }).end(await registry.metrics());
      })
      .catch((e: Error) => res.writeHead(503, { 'content-type': 'text/plain' }).end(`the node did not answer: ${e.message}\n`));
  });
  const { host, port } = splitAddress(checkAddress('the metrics address', listen));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new ListenError(listen, e)));
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as { address: string; port: number };
  return {
    address: `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
