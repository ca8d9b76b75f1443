#!/usr/bin/env node
// The `dsm` command: run a node, ask a node for its figures, run the demo or the benchmarks.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type { HotPage } from './conflict_monitor';
import { createNode } from './node';
import { checkAddress } from './options';

const root = path.join(__dirname, '..');

// What a node's service reports (process warnings with codes DSM_SERVICE_WARN and
// DSM_SERVICE_ERROR) as plain lines of this command; Node's own printer adds a process id
// and a hint about --trace-warnings to each. Other warnings print as Node would.
process.removeAllListeners('warning');
process.on('warning', (w: Error & { code?: string }) => {
  if (w.code === 'DSM_SERVICE_WARN') console.error(`dsm: warning: ${w.message}`);
  else if (w.code === 'DSM_SERVICE_ERROR') console.error(`dsm: error: ${w.message}`);
  else console.error(`(node) ${w.name}: ${w.message}`);
});

function size(v: string): number {
  const m = /^(\d+)([kKmMgG]?)i?[bB]?$/.exec(v);
  if (!m) throw new InvalidArgumentError(`"${v}" is not a size (e.g. 256M, 1G)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * mult;
}

/** A --connect address: host:port, checked before anything is opened. */
function hostPort(v: string): string {
  try {
    return checkAddress('--connect', v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

function secretFrom(opt?: string): string {
  const s = opt ?? process.env.DSM_SECRET;
  if (!s) {
    console.error('dsm: the cluster secret is required: pass --secret S or set DSM_SECRET');
    process.exit(2);
  }
  return s;
}

/** Runs a child to completion, forwarding its output and exit code. */
function run(cmd: string, args: string[]): void {
  const c = spawn(cmd, args, { stdio: 'inherit', cwd: root });
  const forward = (sig: NodeJS.Signals) => c.kill(sig);
  process.on('SIGINT', forward).on('SIGTERM', forward);
  c.on('exit', (code, sig) => process.exit(code ?? (sig ? 1 : 0)));
}

// Every node of a cluster must run the same version (the protocol and the region's layout
// are checked against it): --version says which one this is.
const { version } = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string };
const program = new Command('dsm').description('node-dsm: transactional distributed shared memory for Node.js').version(version);

program
  .command('node')
  .description('run a DSM node (it serves its peers until interrupted)')
  .option('--listen <host:port>', 'address to listen on for peers', '127.0.0.1:0')
  .option('--peers <list>', 'comma-separated host:port of members to join through', '')
  .option('--secret <secret>', 'cluster secret (or DSM_SECRET)')
  .option('--region-size <size>', 'region size, e.g. 256M', size, 1 << 30)
  .option('--script <file>', 'a module exporting async function (dsm) to run on the node')
  .option('--durability <mode>', "'replicated' (a commit resolves once its backups hold it), 'disk' (once a page server has it on disk) or 'none'", 'replicated')
  .option('--replicas <n>', 'backups of each commit with --durability replicated', (v: string) => Number(v), 1)
  .option('--token-batch-ms <ms>', 'with --durability none: how long a committing node may keep the token after another asks (default 1; 0: pass at once)', (v: string) => Number(v))
  .option('--metrics <host:port>', 'serve Prometheus metrics (GET /metrics) on this address')
  .option('--join-timeout <ms>', 'how long to keep trying --peers before giving up (default 30000)', (v: string) => Number(v))
  .action(async (o: { listen: string; peers: string; secret?: string; regionSize: number; script?: string; durability: string; replicas: number; tokenBatchMs?: number; metrics?: string; joinTimeout?: number }) => {
    // Loaded before the node joins: a missing or malformed script must not cost the
    // cluster a member that joins and vanishes.
    let script: ((dsm: Awaited<ReturnType<typeof createNode>>) => unknown) | undefined;
    if (o.script) {
      const file = path.resolve(o.script);
      if (!fs.existsSync(file)) throw new InvalidArgumentError(`the script ${file} does not exist`);
      const mod = require(file);
      script = typeof mod === 'function' ? mod : mod?.default;
      if (typeof script !== 'function') throw new InvalidArgumentError(`${o.script} must export a function (dsm) => ...`);
    }
    // The metrics endpoint is bound first: an address it cannot have must not cost the
    // cluster a member that joins and vanishes.
    const metrics = o.metrics ? await serveMetrics(o.metrics, secretFrom(o.secret)) : undefined;
    const dsm = await createNode({
      listen: o.listen,
      peers: o.peers ? o.peers.split(',').filter(Boolean) : [],
      secret: secretFrom(o.secret),
      regionSize: o.regionSize,
      durability: o.durability as 'none' | 'replicated' | 'disk',
      replicas: o.replicas,
      tokenBatchMs: o.tokenBatchMs,
      joinTimeoutMs: o.joinTimeout,
    });
    const stop = async () => {
      await metrics?.close();
      await dsm.close();
      process.exit(0);
    };
    // Before the line that says it runs: whoever reads it may stop it at once.
    process.once('SIGINT', stop).once('SIGTERM', stop);
    console.log(`dsm: node ${dsm.nodeId} listening on ${dsm.address}`);
    metrics?.serve(dsm.address);
    dsm.on('peer-join', ({ id }: { id: number }) => console.log(`dsm: node ${id} joined`));
    dsm.on('peer-leave', ({ id }: { id: number }) => console.log(`dsm: node ${id} left`));
    if (script) {
      try {
        await script(dsm);
      } catch (e) {
        // Leave the cluster properly (its pages handed over) before saying why.
        await metrics?.close();
        await dsm.close().catch(() => undefined);
        // The script's own error: where it was thrown is what its author needs.
        const err = e as Error & { code?: string };
        const what = err instanceof Error ? `${err.code?.startsWith('ERR_DSM_') ? `${err.code}: ` : ''}${err.stack ?? err.message}` : String(e);
        console.error(`dsm: the script ${o.script} failed: ${what}`);
        process.exit(1);
      }
    }
  });

program
  .command('pageserver')
  .description('run a page server: a member that stores every commit on disk (it serves until interrupted)')
  .requiredOption('--dir <dir>', "the store directory (created when new; an existing store joins its cluster if members of it still run, else founds it again)")
  .option('--listen <host:port>', 'address to listen on for peers', '127.0.0.1:0')
  .option('--peers <list>', "comma-separated host:port of members to join through (a store that holds commits joins only its own cluster; none: join the store's cluster if it still runs, else found it)", '')
  .option('--found', "found the cluster again from the store even if members of its cluster still run (a second cluster beside theirs)")
  .option('--secret <secret>', 'cluster secret (or DSM_SECRET)')
  .option('--region-size <size>', 'region size of a new store, e.g. 256M (an existing store keeps its own)', size)
  .option('--metrics <host:port>', 'serve Prometheus metrics (GET /metrics) on this address')
  .action(async (o: { dir: string; listen: string; peers: string; found?: boolean; secret?: string; regionSize?: number; metrics?: string }) => {
    const { startPageServer } = require('./pageserver/server') as typeof import('./pageserver/server');
    const metrics = o.metrics ? await serveMetrics(o.metrics, secretFrom(o.secret)) : undefined;
    const ps = await startPageServer({
      dir: o.dir,
      listen: o.listen,
      peers: o.peers ? o.peers.split(',').filter(Boolean) : [],
      found: o.found === true,
      secret: secretFrom(o.secret),
      regionSize: o.regionSize,
      onProgress: ({ phase, done, total }) => {
        if (process.stderr.isTTY) process.stderr.write(`\rdsm: ${phase} ${done}/${total} pages (${total ? Math.floor((100 * done) / total) : 100}%)\x1b[K${done === total ? '\n' : ''}`);
      },
    });
    // Joining a running cluster, the store is made current from the cluster (nothing of it is
    // on disk yet): the time it joined at says more than its durable time.
    // (A founder is node 0; without --peers it may have joined its store's running cluster.)
    const at = ps.nodeId !== 0 ? `joined the cluster at time ${ps.appliedTime}` : `store at time ${ps.durableTime}`;
    const stop = async () => {
      await metrics?.close();
      await ps.close();
      process.exit(0);
    };
    // Before the line that says it runs: whoever reads it may stop it at once.
    process.once('SIGINT', stop).once('SIGTERM', stop);
    console.log(`dsm: page server (node ${ps.nodeId}) listening on ${ps.address}, ${at}`);
    metrics?.serve(ps.address);
  });

program
  .command('snapshot')
  .description("write a consistent image of a running cluster's heap (taken by its page server, without stopping it) to one file")
  .requiredOption('--connect <host:port>', 'the page server', hostPort)
  .requiredOption('--out <file>', 'the snapshot file to write (must not exist)')
  .option('--secret <secret>', 'cluster secret (or DSM_SECRET)')
  .action(async (o: { connect: string; out: string; secret?: string }) => {
    const { fetchSnapshot } = require('./pageserver/snapshot_serving') as typeof import('./pageserver/snapshot_serving');
    const tty = process.stderr.isTTY;
    const info = await fetchSnapshot(o.connect, secretFrom(o.secret), o.out, (bytes) => {
      if (tty) process.stderr.write(`\rdsm: received ${(bytes / 2 ** 20).toFixed(1)} MiB`);
    });
    if (tty) process.stderr.write('\n');
    console.log(`dsm: snapshot at global time ${info.time}${info.cluster ? ` of cluster ${info.cluster.id}` : ''}: ${info.pages} pages, ${info.bytes} bytes in ${o.out}`);
  });

program
  .command('stats')
  .description("print a running node's figures")
  .requiredOption('--connect <host:port>', 'the node to ask', hostPort)
  .option('--secret <secret>', 'cluster secret (or DSM_SECRET)')
  .option('--json', 'print JSON')
  .option('--hot', 'print only the pages that caused the most aborts on that node (false sharing), and what they hold')
  .action(async (o: { connect: string; secret?: string; json?: boolean; hot?: boolean }) => {
    const { fetchStats } = require('./service/stats_client') as typeof import('./service/stats_client');
    const s = await fetchStats(o.connect, secretFrom(o.secret));
    const hot = (s.hotPages ?? []) as HotPage[];
    if (o.hot) console.log(o.json ? JSON.stringify(hot, null, 2) : formatHot(hot));
    else console.log(o.json ? JSON.stringify(s, null, 2) : formatStats(s));
  });

program
  .command('restore')
  .description('make a page-server directory from a snapshot file (checked whole first)')
  .requiredOption('--from <file>', 'the snapshot file')
  .requiredOption('--dir <dir>', 'the new store directory (missing or empty)')
  .action(async (o: { from: string; dir: string }) => {
    const { restoreSnapshot } = require('./pageserver/snapshot') as typeof import('./pageserver/snapshot');
    const tty = process.stderr.isTTY;
    const info = await restoreSnapshot(o.from, o.dir, ({ phase, done, total }) => {
      if (tty) process.stderr.write(`\rdsm: ${phase} ${done}/${total} pages (${total ? Math.floor((100 * done) / total) : 100}%)\x1b[K`);
    });
    if (tty) process.stderr.write('\n');
    console.log(`dsm: restored ${info.pages} pages at time ${info.time}${info.cluster ? ` of cluster ${info.cluster.id}` : ''} into ${path.resolve(o.dir)}`);
  });

program
  .command('demo')
  .description('the two-machine bank demo, both machines on this host')
  .allowUnknownOption()
  .helpOption(false)
  .action((_o, cmd: Command) => run(process.execPath, [path.join(root, 'examples/two-machine/launch.mjs'), ...cmd.args]));

program
  .command('bench')
  .description('run the benchmarks (table + JSON in benchmarks/results)')
  .allowUnknownOption()
  .helpOption(false)
  .action((_o, cmd: Command) => run(process.execPath, [path.join(root, 'node_modules/zx/build/cli.js'), path.join(root, 'benchmarks/run.mjs'), ...cmd.args]));

/**
 * The metrics endpoint for a node of this process, bound before the node starts; each scrape
 * asks the node (once `serve` has named it) as `dsm stats` does.
 */
async function serveMetrics(listen: string, secret: string): Promise<{ serve(address: string): void; close(): Promise<void> }> {
  const { startMetricsServer } = require('./metrics') as typeof import('./metrics');
  const { fetchStats } = require('./service/stats_client') as typeof import('./service/stats_client');
  let node = '';
  const m = await startMetricsServer(listen, () => (node ? fetchStats(node, secret, 5000) : Promise.reject(new Error('the node is still starting'))));
  return {
    serve(address: string) {
      node = address;
      console.log(`dsm: metrics on http://${m.address}/metrics`);
    },
    close: () => m.close(),
  };
}

/** The hot-page table: one line a page, hottest first. */
function formatHot(hot: HotPage[]): string {
  if (hot.length === 0) return 'no aborts caused by other nodes\' commits on this node';
  const rows = hot.map((h) => {
    const by = Object.entries(h.byNode).map(([id, n]) => `node ${id}: ${n}`).join(', ');
    // Barrier and lock roots start with a NUL byte: printed escaped.
    const roots = h.roots.length ? ` [roots: ${h.roots.map((r) => (/[\x00-\x1f]/.test(r) ? JSON.stringify(r) : r)).join(', ')}]` : '';
    return `${String(h.page).padStart(8)}  ${String(h.ptr).padStart(12)}  ${String(h.aborts).padStart(7)}  ${by.padEnd(24)}  ${h.holds}${roots}`;
  });
  return [`${'page'.padStart(8)}  ${'ptr'.padStart(12)}  ${'aborts'.padStart(7)}  ${'caused by'.padEnd(24)}  holds`, ...rows].join('\n');
}

function formatStats(s: Record<string, unknown>): string {
  const lines: string[] = [];
  const put = (k: string, v: unknown) => lines.push(`${k.padEnd(30)} ${Array.isArray(v) ? v.join(', ') : String(v)}`);
  for (const [k, v] of Object.entries(s)) {
    // The protocol state is for debugging: one JSON line, last; hot pages have --hot.
    if (k === 'protocol') continue;
    if (k === 'hotPages') {
      put('hotPages', `${(v as unknown[]).length} (dsm stats --hot lists them)`);
      continue;
    }
    if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k2, v2] of Object.entries(v)) put(`${k}.${k2}`, typeof v2 === 'object' ? JSON.stringify(v2) : v2);
    else put(k, v);
  }
  if (s.protocol !== undefined) put('protocol', JSON.stringify(s.protocol));
  return lines.join('\n');
}

program.parseAsync().catch((e: Error & { code?: string }) => {
  // node-dsm's stable codes help a user search the docs; commander's and Node's do not.
  console.error(`dsm: ${e.code?.startsWith('ERR_DSM_') ? `${e.code}: ` : ''}${e.message}`);
  process.exit(1);
});
