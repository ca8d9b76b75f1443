#!/usr/bin/env node
// The `dsm` command: run a node, ask a node for its figures, run the demo or the benchmarks.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type { HotPage } from './conflict_monitor';
import { createNode } from './node';

const root = path.join(__dirname, '..');

function size(v: string): number {
  const m = /^(\d+)([kKmMgG]?)i?[bB]?$/.exec(v);
  if (!m) throw new InvalidArgumentError(`"${v}" is not a size (e.g. 256M, 1G)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * mult;
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

const program = new Command('dsm').description('node-dsm: transactional distributed shared memory for Node.js');

program
  .command('node')
  .description('run a DSM node (it serves its peers until interrupted)')
  .option('--listen <host:port>', 'address to listen on for peers', '127.0.0.1:0')
  .option('--peers <list>', 'comma-separated host:port of members to join through', '')
  .option('--secret <secret>', 'cluster secret (or DSM_SECRET)')
  .option('--region-size <size>', 'region size, e.g. 256M', size, 1 << 30)
  .option('--script <file>', 'a module exporting async function (dsm) to run on the node')
  .option('--durability <mode>', "'replicated' (a commit resolves once its backups hold it) or 'none'", 'replicated')
  .option('--replicas <n>', 'backups of each commit with --durability replicated', (v: string) => Number(v), 1)
  .action(async (o: { listen: string; peers: string; secret?: string; regionSize: number; script?: string; durability: string; replicas: number }) => {
    const dsm = await createNode({
      listen: o.listen,
      peers: o.peers ? o.peers.split(',').filter(Boolean) : [],
      secret: secretFrom(o.secret),
      regionSize: o.regionSize,
      durability: o.durability as 'none' | 'replicated',
      replicas: o.replicas,
    });
    console.log(`dsm: node ${dsm.nodeId} listening on ${dsm.address}`);
    dsm.on('peer-join', ({ id }: { id: number }) => console.log(`dsm: node ${id} joined`));
    dsm.on('peer-leave', ({ id }: { id: number }) => console.log(`dsm: node ${id} left`));
    const stop = async () => {
      await dsm.close();
      process.exit(0);
    };
    process.once('SIGINT', stop).once('SIGTERM', stop);
    if (o.script) {
      const mod = require(path.resolve(o.script));
      const fn = typeof mod === 'function' ? mod : mod.default;
      if (typeof fn !== 'function') throw new InvalidArgumentError(`${o.script} must export a function (dsm) => ...`);
      await fn(dsm);
    }
  });

program
  .command('stats')
  .description("print a running node's figures")
  .requiredOption('--connect <host:port>', 'the node to ask')
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
  console.error(`dsm: ${e.code ? `${e.code}: ` : ''}${e.message}`);
  process.exit(1);
});
