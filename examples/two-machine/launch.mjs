#!/usr/bin/env node
// `npm run demo`: starts the master and the slave of bank.js as two processes on this
// host. As root, where `ip netns` works, each runs in its own network namespace, joined by
// a veth pair: two real network stacks, as on two machines. Options: --duration S,
// --accounts N, --no-netns.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const USAGE = 'usage: npm run demo -- [--duration SECONDS] [--accounts N] [--durability replicated|none] [--no-netns]';
/** Bad options end the demo before anything starts, with what to pass instead. */
function refuse(why) {
  console.error(`demo: ${why}\n${USAGE}`);
  process.exit(2);
}
let o;
try {
  ({ values: o } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' },
      accounts: { type: 'string', default: '1000' },
      'no-netns': { type: 'boolean', default: false },
      durability: { type: 'string', default: 'replicated' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  refuse(e.message);
}
if (o.help) {
  console.log(USAGE);
  process.exit(0);
}
if (!(Number(o.duration) > 0)) refuse(`--duration must be a positive number of seconds, got "${o.duration}"`);
if (!(Number.isInteger(Number(o.accounts)) && Number(o.accounts) >= 2)) refuse(`--accounts must be a whole number of at least 2, got "${o.accounts}"`);
// 'disk' needs a page server, which the demo does not start: its commits would wait for one.
if (o.durability === 'disk') refuse("--durability disk needs a page server; see the README's \"Durability, and a durable cluster\" to run one");
if (o.durability !== 'replicated' && o.durability !== 'none') refuse(`--durability must be replicated or none, got "${o.durability}"`);
const secret = randomBytes(16).toString('hex');
const bank = path.join(here, 'bank.js');

function sh(cmd, args) {
  return spawnSync(cmd, args, { stdio: 'pipe', encoding: 'utf8' });
}

/** Two namespaces and a veth pair, or null when this host cannot (not root, no iproute2). */
function makeNamespaces() {
  if (o['no-netns'] || process.getuid?.() !== 0) return null;
  const tag = process.pid.toString(36);
  const ns = [`dsm-m-${tag}`, `dsm-s-${tag}`];
  const steps = [
    ['ip', ['netns', 'add', ns[0]]],
    ['ip', ['netns', 'add', ns[1]]],
    ['ip', ['link', 'add', `dsmm${tag}`, 'type', 'veth', 'peer', 'name', `dsms${tag}`]],
    ['ip', ['link', 'set', `dsmm${tag}`, 'netns', ns[0]]],
    ['ip', ['link', 'set', `dsms${tag}`, 'netns', ns[1]]],
    ['ip', ['-n', ns[0], 'addr', 'add', '10.77.0.1/24', 'dev', `dsmm${tag}`]],
    ['ip', ['-n', ns[1], 'addr', 'add', '10.77.0.2/24', 'dev', `dsms${tag}`]],
    ['ip', ['-n', ns[0], 'link', 'set', `dsmm${tag}`, 'up']],
    ['ip', ['-n', ns[1], 'link', 'set', `dsms${tag}`, 'up']],
    ['ip', ['-n', ns[0], 'link', 'set', 'lo', 'up']],
    ['ip', ['-n', ns[1], 'link', 'set', 'lo', 'up']],
  ];
  for (const [cmd, args] of steps) {
    const r = sh(cmd, args);
    if (r.status !== 0) {
      console.log(`(network namespaces unavailable: ${(r.stderr || r.error?.message || '').trim()}; running both on loopback)`);
      removeNamespaces(ns);
      return null;
    }
  }
  return ns;
}

function removeNamespaces(ns) {
  for (const n of ns) sh('ip', ['netns', 'del', n]);
}

const ns = makeNamespaces();
const masterHost = ns ? '10.77.0.1' : '127.0.0.1';
const slaveHost = ns ? '10.77.0.2' : '127.0.0.1';
// In namespaces of their own any port is free; on loopback the master takes one the kernel
// gives it, and the slave learns it from the master's 'up at'. (A port found free here and
// closed again could be taken before the master listened on it.)
const port = ns ? 7400 : 0;
console.log(
  ns
    ? `master in namespace ${ns[0]} (${masterHost}), slave in ${ns[1]} (${slaveHost}), joined by a veth pair`
    : `master and slave on loopback (${masterHost})`,
);

const children = [];
/** Starts one machine; `onLine` (if given) sees each line it prints, which still goes to our stdout. */
function start(role, args, namespace, onLine) {
  const cmd = namespace ? 'ip' : process.execPath;
  const argv = [bank, '--role', role, '--secret', secret, '--duration', o.duration, '--accounts', o.accounts, '--durability', o.durability, ...args];
  const full = namespace ? ['netns', 'exec', namespace, process.execPath, ...argv] : argv;
  const child = spawn(cmd, full, { stdio: ['ignore', onLine ? 'pipe' : 'inherit', 'inherit'] });
  children.push(child);
  if (onLine) {
    let rest = '';
    child.stdout.on('data', (d) => {
      process.stdout.write(d);
      const lines = (rest + d).split('\n');
      rest = lines.pop();
      for (const l of lines) onLine(l);
    });
  }
  // 'close', not 'exit': a piped machine's last lines are through before its result counts.
  return new Promise((resolve) => child.on('close', (code, sig) => resolve({ role, code, sig })));
}

// Stopped from outside (a terminal's Ctrl-C reaches the machines too, a kill of this
// process alone does not): stop both machines and remove the namespaces, leave nothing.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (ns) removeNamespaces(ns);
    process.exit(1);
  });
}

// The slave starts once the master listens (it says where), so it does not start by failing
// to reach it; a master that ends before that leaves no slave to start.
let slave;
const master = start('master', ['--listen', `${masterHost}:${port}`], ns?.[0], (line) => {
  const up = / up at (\S+)$/.exec(line);
  if (up && !slave) slave = start('slave', ['--listen', `${slaveHost}:0`, '--connect', up[1]], ns?.[1]);
});
const results = [await master];
if (slave) results.push(await slave);
if (ns) removeNamespaces(ns);
const failed = results.filter((r) => r.code !== 0);
for (const r of failed) console.log(`${r.role} exited with ${r.code ?? r.sig}`);
console.log(failed.length ? 'demo FAILED' : 'demo OK: both machines saw the total conserved and the counter exact');
process.exit(failed.length ? 1 : 0);
