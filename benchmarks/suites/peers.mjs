// The same workloads on node-dsm and on Redis, both measured in this run: every figure is a
// ratio to Redis. Each Redis client and each DSM node runs its operations one after another,
// awaiting each. Two clients / two nodes are this process and one forked child.
//
//   counter:  INCR of one key         vs  dsm.transaction(() => { u32[i] += 1 }) on one counter
//   bank:     1,000 accounts of 1,000; random source, destination and amount 1..10; a transfer
//             that would leave a negative balance moves nothing. Redis: an atomic Lua script
//             (EVALSHA) or WATCH/MULTI/EXEC (retried on abort). DSM: one account per page
//             (spread, 1,000 pages) or all 1,000 u32 accounts on one page (packed).
//   durability: DSM 'none' against Redis without a replica; DSM 'replicated' (replicas: 1)
//             against Redis with one replica (--replicaof) and WAIT 1 0 after every transfer;
//             DSM 'disk' (a page server in a third process) against Redis with appendonly yes,
//             appendfsync always, on the same disk.
//   floor:    beside the 'disk' rows, what no design with a separate durable server can beat
//             here: a server doing nothing but write each 128-byte request into a
//             preallocated file and fdatasync it (one fdatasync for all that arrived
//             together) before echoing it,
//             two clients awaiting each, in the same run.
//
// Starts its own redis-server processes (persistence off, loopback, a free port); the binary
// is `redis-server` on PATH or $DSM_REDIS_SERVER. Without one, prints a skip note and an
// empty row list. Money is counted after every bank run; a mismatch exits non-zero.
// Prints one JSON line (see run.mjs).
import { ask as askChild, nextMessage } from '../child_messages.mjs';
import { fork, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
const require = createRequire(import.meta.url);
const PAGE = 4096;
const ACCOUNTS = 1000;
const INITIAL = 1000;
const SECRET = 'bench';
const REGION = 256 << 20;
const now = () => Number(process.hrtime.bigint());

const TRANSFER_LUA = `
local amount = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1])) < amount then return 0 end
redis.call('DECRBY', KEYS[1], amount)
redis.call('INCRBY', KEYS[2], amount)
return 1`;

const key = (i) => `acct:${i}`;
function pick() {
  const src = Math.floor(Math.random() * ACCOUNTS);
  let dst = Math.floor(Math.random() * (ACCOUNTS - 1));
  if (dst >= src) dst += 1;
  return [src, dst, 1 + Math.floor(Math.random() * 10)];
}

function redisClient(port) {
  const Redis = require('ioredis');
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
  r.defineCommand('transfer', { numberOfKeys: 2, lua: TRANSFER_LUA }); // EVALSHA, EVAL once on NOSCRIPT
  return r;
}

// One operation of a workload, on a Redis client or on a DSM node.
function operation(w, r, dsm) {
  switch (w.kind) {
    case 'redis-incr':
      return () => r.incr('counter');
    case 'redis-lua':
      return () => { const [s, d, a] = pick(); return r.transfer(key(s), key(d), a); };
    case 'redis-lua-wait':
      // One round trip: the script and WAIT go out together; WAIT answers once the replica has it.
      return async () => {
        const [s, d, a] = pick();
        const res = await r.pipeline().transfer(key(s), key(d), a).wait(1, 0).exec();
        if (res[0][0] || res[1][0]) throw res[0][0] || res[1][0];
        if (res[1][1] < 1) throw new Error(`WAIT 1 0 answered ${res[1][1]} replicas`);
      };
    case 'redis-watch':
      return async () => {
        const [s, d, a] = pick();
        for (;;) {
          await r.watch(key(s), key(d));
          const [bs] = await r.mget(key(s), key(d));
          if (Number(bs) < a) { await r.unwatch(); return; }
          if (await r.multi().decrby(key(s), a).incrby(key(d), a).exec()) return; // null: aborted
        }
      };
    case 'floor-durable':
      return () => r.call();
    case 'dsm-incr': {
      const at = w.ptr / 4;
      return () => dsm.transaction(() => { dsm.u32[at] += 1; });
    }
    case 'dsm-bank': {
      const base = w.ptr / 4;
      const stride = w.stride / 4;
      return () => {
        const [s, d, a] = pick();
        return dsm.transaction(() => {
          const u = dsm.u32;
          if (u[base + s * stride] < a) return;
          u[base + s * stride] -= a;
          u[base + d * stride] += a;
        });
      };
    }
    default:
      throw new Error(`unknown workload ${w.kind}`);
  }
}

// Runs `w` for warmMs, then counts operations for runMs, with `w.inflight` (default 1)
// operations outstanding at once, each awaited before its loop issues the next. Returns { rate, total }.
async function runWorkload(w, r, dsm) {
  const op = operation(w, r, dsm);
  let total = 0;
  let n = 0;
  const warmEnd = now() + w.warmMs * 1e6;
  let t0 = 0;
  let end = Infinity;
  const loop = async () => {
    while (now() < warmEnd) { await op(); total++; }
    t0 ||= now();
    if (end === Infinity) end = t0 + w.runMs * 1e6;
    while (now() < end) { await op(); n++; }
  };
  await Promise.all(Array.from({ length: w.inflight ?? 1 }, loop));
  const elapsed = now() - t0;
  return { rate: n / (elapsed / 1e9), total: total + n };
}

const FLOOR_REQUEST = 128;

/** Workloads run through a client of a server (Redis or the floor server), not a DSM node. */
const viaClient = (kind) => kind.startsWith('redis') || kind.startsWith('floor');

/** A client of the floor server: call() sends one request and resolves when its echo is back. */
async function floorClient(port) {
  const sock = net.connect(port, '127.0.0.1');
  sock.setNoDelay(true);
  sock.on('error', () => {}); // the server is killed once its rows are measured
  await new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
  const waiting = [];
  let bytes = 0;
  sock.on('data', (d) => {
    bytes += d.length;
    while (bytes >= FLOOR_REQUEST && waiting.length) { bytes -= FLOOR_REQUEST; waiting.shift()(); }
  });
  const req = Buffer.alloc(FLOOR_REQUEST, 7);
  return {
    call: () => new Promise((res) => { waiting.push(res); sock.write(req); }),
    disconnect: () => sock.destroy(),
  };
}

function dsmSum(dsm, ptr, stride) {
  return dsm.transaction(() => {
    let s = 0;
    for (let i = 0; i < ACCOUNTS; i++) s += dsm.u32[(ptr + i * stride) / 4];
    return s;
  });
}

if (process.argv[2] === 'pageserver') {
  // The page server of the 'disk' rows, in a process of its own. argv: pageserver <dir>
  process.on('disconnect', () => process.exit(1));
  const { startPageServer } = require('../..');
  const ps = await startPageServer({ dir: process.argv[3], secret: SECRET, regionSize: REGION });
  process.on('message', async (m) => {
    if (m.cmd === 'close') {
      await ps.close();
      process.exit(0);
    }
  });
  process.send({ address: ps.address });
} else if (process.argv[2] === 'floor') {
  // The floor server of the 'disk' rows. argv: floor <file> <clients>. With 1, requests
  // that arrived in one turn of the event loop share one write and one fdatasync, as
  // Redis's and the page server's group commits do; with 2, it waits (up to 1 ms) until
  // both clients' requests are in, so every fdatasync carries both: the best any group
  // commit could do for two clients awaiting each. Each request is echoed only after its
  // fdatasync. The file is written and synced whole first and then written over in a ring,
  // so an fdatasync never has a file size to write too (appending cost more here: ~7.2k
  // echoes/s against ~8.3k).
  process.on('disconnect', () => process.exit(1));
  const fs = require('node:fs');
  const RING = 64 << 20;
  const fd = fs.openSync(process.argv[3], 'w+');
  const zeros = Buffer.alloc(1 << 20);
  for (let at = 0; at < RING; at += zeros.length) fs.writeSync(fd, zeros, 0, zeros.length, at);
  fs.fsyncSync(fd);
  const clients = Number(process.argv[4]);
  let at = 0;
  const pending = [];
  let timer = null;
  const flush = () => {
    clearTimeout(timer);
    timer = null;
    const batch = pending.splice(0);
    const bytes = Buffer.concat(batch.map((b) => b.d));
    if (at + bytes.length > RING) at = 0;
    fs.writeSync(fd, bytes, 0, bytes.length, at);
    at += bytes.length;
    fs.fdatasyncSync(fd);
    for (const b of batch) b.s.write(b.d);
  };
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    s.on('error', () => {});
    s.on('data', (d) => {
      const n = pending.push({ s, d });
      if (clients === 1) { if (n === 1) setImmediate(flush); } else if (n >= clients) flush();
      else if (n === 1) timer = setTimeout(flush, 1);
    });
  });
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
} else if (process.argv[2] === 'node') {
  // The second node (and second Redis client). argv: node <address> <durability options JSON>
  process.on('disconnect', () => process.exit(1));
  const { createNode } = require('../..');
  let dsm = await createNode({ peers: [process.argv[3]], secret: SECRET, regionSize: REGION, ...JSON.parse(process.argv[4]) });
  const clients = new Map();
  const client = async (port, kind) => {
    if (!clients.has(port)) {
      if (kind.startsWith('floor')) clients.set(port, await floorClient(port));
      else { const r = redisClient(port); await r.connect(); clients.set(port, r); }
    }
    return clients.get(port);
  };
  process.on('message', async (m) => {
    try {
      if (m.cmd === 'run') {
        if (m.w.time != null) await dsm.waitForGlobalTime(m.w.time);
        const r = viaClient(m.w.kind) ? await client(m.w.port, m.w.kind) : null;
        const res = await runWorkload(m.w, r, dsm);
        process.send({ ...res, time: dsm.globalTime });
      } else if (m.cmd === 'read') {
        await dsm.waitForGlobalTime(m.time);
        const value = m.stride == null ? await dsm.transaction(() => dsm.u32[m.ptr / 4]) : await dsmSum(dsm, m.ptr, m.stride);
        process.send({ value });
      } else if (m.cmd === 'close') {
        for (const r of clients.values()) r.disconnect();
        await dsm.close();
        process.exit(0);
      }
    } catch (e) {
      process.send({ error: String(e?.stack ?? e) });
    }
  });
  process.send('ready');
} else {
  await main();
}

function findRedisServer() {
  const isExe = (p) => { try { accessSync(p, constants.X_OK); return true; } catch { return false; } };
  if (process.env.DSM_REDIS_SERVER) return isExe(process.env.DSM_REDIS_SERVER) ? process.env.DSM_REDIS_SERVER : null;
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir && isExe(path.join(dir, 'redis-server'))) return path.join(dir, 'redis-server');
  return null;
}

async function main() {
  const bin = findRedisServer();
  if (!bin) {
    const why = 'redis-server not installed (apt-get install redis-server)';
    console.error(`peers: skipped: ${process.env.DSM_REDIS_SERVER ? `DSM_REDIS_SERVER=${process.env.DSM_REDIS_SERVER} is not an executable; ` : ''}${why}`);
    console.log(JSON.stringify({ suite: 'peers', rows: [], skipped: why }));
    return;
  }

  // Everything started here is stopped on the way out, however we leave.
  const started = [];
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'dsm-peers-'));
  const cleanup = () => {
    for (const p of started) if (p.exitCode === null && p.signalCode === null) { try { p.kill('SIGKILL'); } catch {} }
    try { rmSync(tmp, { recursive: true, force: true }); } catch {}
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { cleanup(); process.exit(1); });
  let stopping = false;
  const fail = (msg) => { stopping = true; console.error(`peers: ${msg}`); cleanup(); process.exit(1); };
  process.on('uncaughtException', (e) => fail(e?.stack ?? String(e)));
  process.on('unhandledRejection', (e) => fail(e?.stack ?? String(e)));

  const freePort = () => new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
  async function startRedis(name, extra = []) {
    const port = await freePort();
    const dir = path.join(tmp, name);
    require('node:fs').mkdirSync(dir);
    const p = spawn(bin, ['--save', '', '--appendonly', 'no', '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    started.push(p);
    let log = '';
    p.stdout.on('data', (d) => { log = (log + d).slice(-4000); });
    p.stderr.on('data', (d) => { log = (log + d).slice(-4000); });
    p.on('exit', (code, sig) => { if (!stopping) fail(`${name} redis-server exited (${code ?? sig}):\n${log}`); });
    const r = redisClient(port);
    r.on('error', () => {});
    const deadline = Date.now() + 10000;
    for (;;) {
      try { await r.connect(); await r.ping(); break; } catch (e) {
        r.disconnect();
        if (Date.now() > deadline) fail(`${name} redis-server did not answer on port ${port}: ${e.message}\n${log}`);
        await new Promise((res) => setTimeout(res, 50));
      }
    }
    return { port, proc: p, r };
  }

  const rows = [];
  const row = (name, value, baseline, baselineValue, target = null) => {
    rows.push({ name, value, unit: 'ops/s', baseline, baselineValue, ratio: baselineValue ? value / baselineValue : null, target });
    console.error(`peers: ${name}: ${value.toFixed(0)} vs ${baselineValue.toFixed(0)} ops/s`);
  };
  const self = fileURLToPath(import.meta.url);
  const { createNode } = require('../..');

  // The DSM node of this process.
  let a = await createNode({ listen: '127.0.0.1:0', secret: SECRET, regionSize: REGION, durability: 'none' });
  const primary = await startRedis('primary');
  const r1 = primary.r;

  let child = null;
  const ask = async (msg) => {
    const m = await askChild(child, msg);
    if (m?.error) throw new Error(`second node: ${m.error}`);
    return m;
  };
  async function startChild(options) {
    child = fork(self, ['node', a.address, JSON.stringify(options)]);
    started.push(child);
    await nextMessage(child, 'that it joined');
  }
  async function stopChild() {
    const exited = new Promise((r) => child.once('exit', r));
    child.send({ cmd: 'close' });
    await exited;
    child = null;
  }

  const SOLO = { warmMs: 200, runMs: 1000 };
  // Two nodes on fresh accounts climb for seconds before they level out (each node's first
  // touches of the pages, then both threads' JIT on each side): measured in one process,
  // 2 s windows in a row, replicated 4.3k -> 6.5k -> 7.4k -> 7.2k transfers/s and 'none'
  // 15.2k -> 19.4k -> 20.3k -> 21.0k. Both sides warm up as long, Redis too.
  const DUO = { warmMs: 3000, runMs: 2000 };
  // Runs a workload here, and at the same time in the child if `two`; returns ops/s and total ops.
  async function measure(w, two) {
    const r = viaClient(w.kind) ? (w.client ?? r1) : null;
    const there = two ? ask({ cmd: 'run', w: { ...w, client: undefined } }) : null;
    const here = await runWorkload(w, r, a);
    const other = there ? await there : { rate: 0, total: 0, time: 0 };
    return { rate: here.rate + other.rate, total: here.total + other.total, time: other.time };
  }

  async function resetRedisAccounts(r) {
    await r.flushall();
    const args = [];
    for (let i = 0; i < ACCOUNTS; i++) args.push(key(i), INITIAL);
    await r.mset(...args);
  }
  async function checkRedisMoney(r, what) {
    const v = await r.mget(...Array.from({ length: ACCOUNTS }, (_, i) => key(i)));
    const sum = v.reduce((s, x) => s + Number(x), 0);
    if (sum !== ACCOUNTS * INITIAL) fail(`${what}: money not conserved on Redis: ${sum} != ${ACCOUNTS * INITIAL}`);
  }
  async function redisBank(kind, two, r = r1, port = primary.port, inflight = 1) {
    await resetRedisAccounts(r);
    const res = await measure({ kind, port, client: r, inflight, ...(two ? DUO : SOLO) }, two);
    await checkRedisMoney(r, kind);
    return res.rate;
  }
  // Fresh accounts, spread (one per page) or packed (one page); returns ops/s after checking money.
  async function dsmBank(layout, two, label, inflight = 1) {
    const { ptr, stride } = await a.transaction((tx) => {
      let p;
      if (layout === 'spread') p = tx.alloc(ACCOUNTS * PAGE);
      else {
        p = tx.alloc(ACCOUNTS * 4);
        if (Math.floor(p / PAGE) !== Math.floor((p + ACCOUNTS * 4 - 1) / PAGE)) p = tx.alloc(2 * PAGE); // whole pages, page-aligned
      }
      const st = layout === 'spread' ? PAGE : 4;
      for (let i = 0; i < ACCOUNTS; i++) a.u32[(p + i * st) / 4] = INITIAL;
      return { ptr: p, stride: st };
    });
    const res = await measure({ kind: 'dsm-bank', ptr, stride, inflight, time: a.globalTime, ...(two ? DUO : SOLO) }, two);
    if (two) await a.waitForGlobalTime(res.time);
    const sums = [await dsmSum(a, ptr, stride)];
    if (two) sums.push((await ask({ cmd: 'read', ptr, stride, time: a.globalTime })).value);
    for (const s of sums) if (s !== ACCOUNTS * INITIAL) fail(`${label}: money not conserved: sum of accounts ${sums.join(' / ')} (this node / other node) != ${ACCOUNTS * INITIAL}`);
    return res.rate;
  }
  async function dsmCounter(two) {
    const ptr = await a.transaction((tx) => tx.alloc(4));
    const res = await measure({ kind: 'dsm-incr', ptr, time: a.globalTime, ...(two ? DUO : SOLO) }, two);
    if (two) await a.waitForGlobalTime(res.time);
    const got = await a.transaction(() => a.u32[ptr / 4]);
    if (got !== res.total) fail(`counter ${two ? '2 nodes' : '1 node'}: ${got} after ${res.total} increments`);
    return res.rate;
  }
  async function redisCounter(two) {
    await r1.flushall();
    const res = await measure({ kind: 'redis-incr', port: primary.port, ...(two ? DUO : SOLO) }, two);
    const got = Number(await r1.get('counter'));
    if (got !== res.total) fail(`redis counter: ${got} after ${res.total} INCRs`);
    return res.rate;
  }

  // One client, one node (no peer yet: the node holds the token).
  row('counter 1 node vs redis INCR', await dsmCounter(false), 'redis INCR, 1 client', await redisCounter(false));
  const lua1 = await redisBank('redis-lua', false);
  const watch1 = await redisBank('redis-watch', false);
  const spread1 = await dsmBank('spread', false, 'bank 1 node spread');
  const packed1 = await dsmBank('packed', false, 'bank 1 node packed');
  row('bank 1 node spread vs redis lua', spread1, 'redis Lua EVALSHA, 1 client', lua1);
  row('bank 1 node packed vs redis lua', packed1, 'redis Lua EVALSHA, 1 client', lua1);
  row('bank 1 node spread vs redis watch', spread1, 'redis WATCH/MULTI/EXEC, 1 client', watch1);
  row('bank 1 node packed vs redis watch', packed1, 'redis WATCH/MULTI/EXEC, 1 client', watch1);

  // Two clients, two nodes, durability 'none' (Redis without a replica).
  await startChild({ durability: 'none' });
  const tag = ' (none)';
  row('counter 2 nodes vs redis INCR', await dsmCounter(true), 'redis INCR, 2 clients, one key', await redisCounter(true));
  const lua2 = await redisBank('redis-lua', true);
  const watch2 = await redisBank('redis-watch', true);
  const spread2 = await dsmBank('spread', true, 'bank 2 nodes spread');
  const packed2 = await dsmBank('packed', true, 'bank 2 nodes packed');
  row(`bank 2 nodes spread${tag} vs redis lua`, spread2, 'redis Lua EVALSHA, 2 clients', lua2, '>= 1.5');
  row(`bank 2 nodes packed${tag} vs redis lua`, packed2, 'redis Lua EVALSHA, 2 clients', lua2, '>= 1.0');
  row(`bank 2 nodes spread${tag} vs redis watch`, spread2, 'redis WATCH/MULTI/EXEC, 2 clients', watch2);
  row(`bank 2 nodes packed${tag} vs redis watch`, packed2, 'redis WATCH/MULTI/EXEC, 2 clients', watch2);

  // Replicated: Redis with one replica and WAIT 1 0 after every transfer; DSM with
  // durability 'replicated', replicas: 1 (when createNode takes it).
  const replica = await startRedis('replica', ['--replicaof', '127.0.0.1', String(primary.port)]);
  for (const deadline = Date.now() + 10000; ; await new Promise((res) => setTimeout(res, 50))) {
    if (/master_link_status:up/.test(await replica.r.info('replication')) && /connected_slaves:1/.test(await r1.info('replication'))) break;
    if (Date.now() > deadline) fail('the Redis replica did not connect to the primary within 10 s');
  }
  const luaWait2 = await redisBank('redis-lua-wait', true);
  await stopChild();
  await a.close();
  a = await createNode({ listen: '127.0.0.1:0', secret: SECRET, regionSize: REGION, durability: 'replicated', replicas: 1 });
  await startChild({ durability: 'replicated', replicas: 1 });
  const spreadR = await dsmBank('spread', true, 'bank 2 nodes spread (replicated)');
  const packedR = await dsmBank('packed', true, 'bank 2 nodes packed (replicated)');
  row('bank 2 nodes spread (replicated) vs redis lua + replica', spreadR, 'redis Lua EVALSHA + WAIT 1 0, 1 replica, 2 clients', luaWait2, '>= 1.0');
  row('bank 2 nodes packed (replicated) vs redis lua + replica', packedR, 'redis Lua EVALSHA + WAIT 1 0, 1 replica, 2 clients', luaWait2, '>= 1.0');
  await stopChild();
  await a.close();

  // On disk: Redis with appendonly yes, appendfsync always (an fsync before each reply,
  // group-committed across clients); DSM with a page server and durability 'disk' (a commit
  // resolves once the page server's group commit has it on disk).
  const durable = await startRedis('durable', ['--appendonly', 'yes', '--appendfsync', 'always']);
  const psProc = fork(self, ['pageserver', path.join(tmp, 'pagestore')]);
  started.push(psProc);
  const { address: psAddress } = await new Promise((resolve, reject) => {
    psProc.once('message', resolve);
    psProc.once('exit', (c) => reject(new Error(`the page server exited (${c}) while starting`)));
  });
  a = await createNode({ listen: '127.0.0.1:0', peers: [psAddress], secret: SECRET, regionSize: REGION, durability: 'disk' });
  await startChild({ durability: 'disk' });
  const luaDisk2 = await redisBank('redis-lua', true, durable.r, durable.port);
  const spreadD = await dsmBank('spread', true, 'bank 2 nodes spread (disk)');
  const packedD = await dsmBank('packed', true, 'bank 2 nodes packed (disk)');
  row('bank 2 nodes spread (disk) vs redis lua aof always', spreadD, 'redis Lua EVALSHA, appendfsync always, 2 clients', luaDisk2, '>= 2.0');
  row('bank 2 nodes packed (disk) vs redis lua aof always', packedD, 'redis Lua EVALSHA, appendfsync always, 2 clients', luaDisk2, '>= 2.0');
  // 16 transactions outstanding per node / 16 commands per client: group commit at work on both.
  const luaDisk16 = await redisBank('redis-lua', true, durable.r, durable.port, 16);
  const spreadD16 = await dsmBank('spread', true, 'bank 2 nodes spread (disk, 16 in flight)', 16);
  row('bank 2 nodes spread (disk), 16 in flight vs redis lua aof always, 16 in flight', spreadD16, 'redis Lua EVALSHA, appendfsync always, 2 clients x 16 in flight', luaDisk16, '>= 2.0');
  // The floor: a bare durable server on the same disk, two clients awaiting each.
  async function floor(clients) {
    const proc = fork(self, ['floor', path.join(tmp, `floor${clients}.log`), String(clients)]);
    started.push(proc);
    const { port } = await nextMessage(proc, 'the floor server');
    const here = await floorClient(port);
    const rate = (await measure({ kind: 'floor-durable', port, client: here, ...DUO }, true)).rate;
    here.disconnect();
    proc.kill('SIGKILL');
    return rate;
  }
  const floorAny = await floor(1);
  const floorBoth = await floor(2);
  row('floor: bare durable server (write + fdatasync before each echo, group-committed), 2 clients, vs redis lua aof always', floorAny, 'redis Lua EVALSHA, appendfsync always, 2 clients', luaDisk2);
  row('floor: the same, each fdatasync waiting for both clients, vs redis lua aof always', floorBoth, 'redis Lua EVALSHA, appendfsync always, 2 clients', luaDisk2);
  row('bank 2 nodes spread (disk) vs the floor', spreadD, 'bare durable server, 2 clients', floorAny);
  await stopChild();
  await a.close();
  const psExit = new Promise((r) => psProc.once('exit', r));
  psProc.send({ cmd: 'close' });
  await psExit;

  stopping = true;
  r1.disconnect();
  replica.r.disconnect();
  durable.r.disconnect();
  cleanup();
  console.log(JSON.stringify({ suite: 'peers', rows }));
}
