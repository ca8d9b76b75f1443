// The page server in a cluster of real processes: with durability 'disk' every acknowledged
// commit survives SIGKILL of every process (nodes and page server), the cluster restarts from
// the store at its time with nothing half-applied, and a dead node's pages are taken over
// from the page server instead of being lost.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { fetchSnapshot } from '../../lib/pageserver/snapshot_serving';
import { freeAddress, Harness, type RemoteNode, SECRET, until } from '../cluster/harness';

const CLI = path.join(__dirname, '../../dist/cli.js');
const dsmCli = (...args: string[]) => promisify(execFile)(process.execPath, [CLI, ...args], { timeout: 120_000 });

const PAGE_WORDS = 1024;
const FIRST = 3000; // data pages, clear of the heap's own

function seedFrom(env: string | undefined): number {
  return env ? Number(env) : Math.floor(Math.random() * 2 ** 31);
}

/**
 * Transactions back to back, each writing its sequence number into two words on two pages
 * of this node (a transaction half on disk would show them differing); says `ACK i` once
 * transaction i is acknowledged.
 */
const COMMIT_FOREVER = `
  const a = args.first * 1024, b = (args.first + 1) * 1024 + 7;
  for (let i = 1; ; i++) {
    await dsm.transaction(() => { dsm.u32[a] = i; dsm.u32[b] = i; });
    say('ACK ' + args.tag + ' ' + i);
  }
`;

/** 20 whole pages, each filled with salt + i, committed without awaiting each; the process dies the moment all are acknowledged. */
const COMMIT_PAGES_THEN_DIE = `
  const ps = [];
  for (let i = 0; i < 20; i++) ps.push(dsm.transaction(() => dsm.u32.fill(args.salt + i, (args.first + i) * 1024, (args.first + i + 1) * 1024)));
  await Promise.all(ps);
  process.kill(process.pid, 'SIGKILL');
`;

/** Which of those 20 pages read wrong here, and the pages reported lost. */
const READ_PAGES = `
  const bad = [];
  await dsm.transaction(() => {
    for (let i = 0; i < 20; i++) for (let w = 0; w < 1024; w += 101) if (dsm.u32[(args.first + i) * 1024 + w] !== args.salt + i) { bad.push(i); break; }
  });
  return { bad, lost: dsm.lostPages() };
`;

const lastAck = (n: RemoteNode, tag: string): number => {
  let last = 0;
  for (const l of n.lines) if (l.startsWith(`ACK ${tag} `)) last = Number(l.slice(5 + tag.length));
  return last;
};

describe('page server', () => {
  const h = new Harness();
  const dirs: string[] = [];
  const newDir = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'dsm-pagestore-'));
    dirs.push(d);
    return path.join(d, 'store');
  };
  afterEach(async () => {
    await h.close();
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('every acknowledged durable commit survives SIGKILL of every process, and the cluster restarts at the stored time', async () => {
    const seed = seedFrom(process.env.DSM_SEED);
    // DSM_CRASH_SPAN widens the range (a soak: the log checkpoints every 2 s, so a few
    // thousand commits put the kill across checkpoints and the reuse of retired log files).
    const after = 20 + (seed % Number(process.env.DSM_CRASH_SPAN ?? 200));
    console.log(`page server crash: seed=${seed} (replay with DSM_SEED=${seed}); killing after ${after} acknowledged commits`);
    const dir = newDir();
    const ps = await h.pageServer({ dir });
    const opts = { peers: [ps.address], durability: 'disk' };
    const a = await h.start(opts);
    const b = await h.start(opts);
    a.run(COMMIT_FOREVER, { first: FIRST, tag: 'a' }).catch(() => undefined);
    b.run(COMMIT_FOREVER, { first: FIRST + 10, tag: 'b' }).catch(() => undefined);
    await Promise.all([a.waitForLine((l) => l === `ACK a ${after}`), b.waitForLine((l) => l === `ACK b ${after}`)]);
    // Everything dies at once.
    for (const n of [ps, a, b]) n.kill('SIGKILL');
    await Promise.all([ps, a, b].map((n) => n.exited));
    const acked = { a: lastAck(a, 'a'), b: lastAck(b, 'b') };

    // Loading the store reports progress, ending with every page.
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['-e', `require(${JSON.stringify(path.join(__dirname, '../..'))}).startPageServer({ dir: ${JSON.stringify(dir)}, secret: 's', onProgress: (p) => console.log(JSON.stringify(p)) }).then((ps) => ps.close())`],
      { timeout: 60_000 },
    );
    const progress = stdout.trim().split('\n').map((l) => JSON.parse(l) as { phase: string; done: number; total: number });
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)).toMatchObject({ phase: 'loading' });
    expect(progress.at(-1)!.done).toBe(progress.at(-1)!.total);

    const ps2 = await h.pageServer({ dir });
    const stored = await ps2.run<number>('return ps.durableTime;');
    expect(stored).toBeGreaterThan(0);
    const c = await h.start({ peers: [ps2.address], durability: 'disk' });
    const got = await c.run<{ time: number; words: number[] }>(
      `return { time: dsm.globalTime, words: await dsm.transaction(() => [args.a * 1024, (args.a + 1) * 1024 + 7, args.b * 1024, (args.b + 1) * 1024 + 7].map((w) => dsm.u32[w])) };`,
      { a: FIRST, b: FIRST + 10 },
    );
    expect(got.time).toBeGreaterThanOrEqual(stored);
    const [a1, a2, b1, b2] = got.words;
    // Whole transactions only, and at least every acknowledged one (one more may have reached the disk unacknowledged).
    expect(a1).toBe(a2);
    expect(b1).toBe(b2);
    expect(a1 - acked.a).toBeGreaterThanOrEqual(0);
    expect(a1 - acked.a).toBeLessThanOrEqual(1);
    expect(b1 - acked.b).toBeGreaterThanOrEqual(0);
    expect(b1 - acked.b).toBeLessThanOrEqual(1);
    // The restarted cluster goes on.
    expect(await c.run('return dsm.transaction(() => ++dsm.u32[args.w]);', { w: (FIRST + 20) * PAGE_WORDS })).toBe(1);
  });

  it('the page server killed and restarted while nodes commit: they wait, then go on, and nothing acknowledged is lost', async () => {
    const dir = newDir();
    const fast = { heartbeatMs: 100, deadAfterMs: 1000 };
    const ps = await h.pageServer({ dir, ...fast });
    const opts = { peers: [ps.address], durability: 'disk', ...fast };
    const a = await h.start(opts);
    const b = await h.start(opts);
    a.run(COMMIT_FOREVER, { first: FIRST, tag: 'a' }).catch(() => undefined);
    b.run(COMMIT_FOREVER, { first: FIRST + 10, tag: 'b' }).catch(() => undefined);
    await Promise.all([a.waitForLine((l) => l === 'ACK a 20'), b.waitForLine((l) => l === 'ACK b 20')]);
    ps.kill('SIGKILL');
    await a.waitForLine((l) => l === `peer-leave ${ps.nodeId}`);
    // Each node's commit in flight waits for a page server now, and the node says so.
    for (const n of [a, b]) await until('a node says its commit waits for a page server', 60_000, async () => /commit \d+ waits for a page server, and none is in the cluster/.test(n.stderr) || undefined);
    // A new page server process on the same store joins the running cluster and catches up.
    const ps2 = await h.pageServer({ dir, peers: [a.address], ...fast });
    const goOn = { a: lastAck(a, 'a') + 20, b: lastAck(b, 'b') + 20 };
    await Promise.all([a.waitForLine((l) => l === `ACK a ${goOn.a}`), b.waitForLine((l) => l === `ACK b ${goOn.b}`)]);
    for (const n of [ps2, a, b]) n.kill('SIGKILL');
    await Promise.all([ps2, a, b].map((n) => n.exited));
    const acked = { a: lastAck(a, 'a'), b: lastAck(b, 'b') };
    const ps3 = await h.pageServer({ dir });
    const c = await h.start({ peers: [ps3.address], durability: 'disk' });
    const [a1, a2, b1, b2] = await c.run<number[]>(
      'return dsm.transaction(() => [args.a * 1024, (args.a + 1) * 1024 + 7, args.b * 1024, (args.b + 1) * 1024 + 7].map((w) => dsm.u32[w]));',
      { a: FIRST, b: FIRST + 10 },
    );
    expect([a1 === a2, b1 === b2]).toEqual([true, true]);
    expect(a1 - acked.a).toBeGreaterThanOrEqual(0);
    expect(a1 - acked.a).toBeLessThanOrEqual(1);
    expect(b1 - acked.b).toBeGreaterThanOrEqual(0);
    expect(b1 - acked.b).toBeLessThanOrEqual(1);
  });

  it("a dead node's pages are taken over from the page server, not lost", async () => {
    const ps = await h.pageServer({ dir: newDir(), heartbeatMs: 100, deadAfterMs: 1000 });
    const opts = { peers: [ps.address], durability: 'disk', heartbeatMs: 100, deadAfterMs: 1000 };
    const a = await h.start(opts);
    const b = await h.start(opts);
    // a writes 20 whole pages nobody else reads, and dies the moment they are acknowledged.
    a.run(COMMIT_PAGES_THEN_DIE, { first: FIRST, salt: 500 }).catch(() => undefined);
    await b.waitForLine((l) => l === `peer-leave ${a.nodeId}`);
    expect(await b.run(READ_PAGES, { first: FIRST, salt: 500 })).toEqual({ bad: [], lost: [] });
  });

  it('pages two nodes write in turn reach each other as diffs, and the page server stores them from those diffs', async () => {
    const dir = newDir();
    const ps = await h.pageServer({ dir });
    const opts = { peers: [ps.address], durability: 'disk' };
    const a = await h.start(opts);
    const b = await h.start(opts);
    const stats = (n: RemoteNode) => n.run<{ u: number; i: number }>('const s = dsm.stats(); return { u: s.updates, i: s.invalidations };');
    // Both read the 8 pages once (current copies on both), then take turns writing them.
    const READ = 'return dsm.transaction(() => { let s = 0; for (let i = 0; i < 8; i++) s += dsm.u32[(args.first + i) * 1024 + 5]; return s; });';
    await a.run(READ, { first: FIRST });
    await b.run(READ, { first: FIRST });
    const [a0, b0] = [await stats(a), await stats(b)];
    const WRITE = 'for (let i = 0; i < 8; i++) await dsm.transaction(() => { dsm.u32[(args.first + i) * 1024 + 5] += args.add; });';
    for (let round = 0; round < 5; round++) {
      await a.run(WRITE, { first: FIRST, add: 1 });
      await b.run(`await dsm.waitForGlobalTime(${await a.run<number>('return dsm.globalTime;')}); ${WRITE}`, { first: FIRST, add: 10 });
      await a.run(`await dsm.waitForGlobalTime(${await b.run<number>('return dsm.globalTime;')});`);
    }
    const [a1, b1] = [await stats(a), await stats(b)];
    // Every one of the other node's 40 commits updated the copy here; none threw it away
    // (a page last written by the other node used to go out whole, and whole pages reach
    // only backups: the copy here was invalidated and fetched again).
    expect([a1.u - a0.u, b1.u - b0.u]).toEqual([40, 40]);
    expect([a1.i - a0.i, b1.i - b0.i]).toEqual([0, 0]);
    // The page server made every version from diffs: a node that starts after both are gone reads them.
    for (const n of [ps, a, b]) n.kill('SIGKILL');
    await Promise.all([ps, a, b].map((n) => n.exited));
    const ps2 = await h.pageServer({ dir });
    const c = await h.start({ peers: [ps2.address] });
    expect(await c.run(READ, { first: FIRST })).toBe(8 * 5 * 11);
  });

  it('a cluster restarted from the store keeps the models of its allocations', async () => {
    const dir = newDir();
    const ps = await h.pageServer({ dir });
    const a = await h.start({ peers: [ps.address], durability: 'disk' });
    const { seq, mine } = await a.run<{ seq: number; mine: number }>(`return dsm.transaction((tx) => {
      const seq = tx.alloc(2 * 4096, { model: 'sequential' });
      const mine = tx.alloc(4096, { model: 'local' });
      dsm.u32[seq / 4] = 5;
      dsm.u32[seq / 4 + 1024] = 6;
      return { seq, mine };
    });`);
    // Outside any transaction: never sent to a page server, so not on disk.
    await a.run('dsm.u32[args.at + 1] = 7;', { at: seq / 4 });
    for (const n of [ps, a]) n.kill('SIGKILL');
    await Promise.all([ps, a].map((n) => n.exited));

    const ps2 = await h.pageServer({ dir });
    const b = await h.start({ peers: [ps2.address] });
    const words = 'return [dsm.u32[args.at], dsm.u32[args.at + 1], dsm.u32[args.at + 1024]];';
    // What the last transaction wrote; sequential again: written outside transactions, seen by the next node.
    expect(await b.run(words, { at: seq / 4 })).toEqual([5, 0, 6]);
    await b.run('dsm.u32[args.at] = 9;', { at: seq / 4 });
    expect((await b.run<{ faults: { violations: number } }>('return dsm.stats();')).faults.violations).toBe(0);
    const c = await h.start({ peers: [ps2.address] });
    expect(await c.run(words, { at: seq / 4 })).toEqual([9, 0, 6]);
    // The local block's node is gone: refused, as a dead node's local pages are.
    const touched = await c.run<{ code?: string }>('dsm.u32[args.at]; try { dsm.stats(); return {}; } catch (e) { return { code: e.code }; }', { at: mine / 4 });
    expect(touched).toEqual({ code: 'ERR_DSM_LOCAL_PAGE' });
  });

  it('a page server that was away while a sequential block was written in a transaction rejoins and goes on acknowledging', async () => {
    const dir = newDir();
    const fast = { heartbeatMs: 100, deadAfterMs: 1000 };
    const ps = await h.pageServer({ dir, ...fast });
    const a = await h.start({ peers: [ps.address], durability: 'none', ...fast });
    const b = await h.start({ peers: [ps.address], durability: 'none', ...fast });
    ps.kill('SIGKILL');
    await ps.exited;
    await a.waitForLine((l) => l === `peer-leave ${ps.nodeId}`);
    // The store's copy of these pages is now behind, and they cannot be fetched as pages: the
    // rejoining page server used to wait for them forever, acknowledging nothing more.
    const seq = await a.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4096, { model: 'sequential' }); dsm.u32[p / 4] = 5; return p; });`);
    await h.pageServer({ dir, peers: [a.address], ...fast });
    const c = await h.start({ peers: [b.address], durability: 'disk', ...fast });
    expect(await c.run('return dsm.transaction(() => ++dsm.u32[args.w]);', { w: FIRST * PAGE_WORDS })).toBe(1);
    expect(await c.run('return dsm.u32[args.at];', { at: seq / 4 })).toBe(5);
  });

  it('a snapshot taken while nodes commit restores to a consistent state (bank total conserved)', async () => {
    const ps = await h.pageServer({ dir: newDir() });
    const opts = { peers: [ps.address], durability: 'disk' };
    const a = await h.start(opts);
    const b = await h.start(opts);
    // 64 accounts of 1000, one per page, so transfers touch two pages.
    await a.run('await dsm.transaction(() => { for (let i = 0; i < 64; i++) dsm.u32[(args.first + i) * 1024] = 1000; });', { first: FIRST });
    const TRANSFER = `
      let seed = args.seed;
      const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % 64;
      for (let n = 0; !globalThis.stop; n++) {
        const from = rnd(), to = rnd();
        await dsm.transaction(() => {
          const f = (args.first + from) * 1024, t = (args.first + to) * 1024;
          const amount = Math.min(dsm.u32[f], 7);
          dsm.u32[f] -= amount; dsm.u32[t] += amount;
        });
        if (n === 50) say('transfers running');
      }`;
    const runs = [a.run(TRANSFER, { first: FIRST, seed: 1 }), b.run(TRANSFER, { first: FIRST, seed: 2 })];
    await Promise.all([a, b].map((n) => n.waitForLine((l) => l === 'transfers running')));
    const file = path.join(path.dirname(newDir()), 'bank.snapshot');
    const { stdout } = await dsmCli('snapshot', '--connect', ps.address, '--secret', SECRET, '--out', file);
    expect(stdout).toMatch(/snapshot at global time \d+/);
    await Promise.all([a, b].map((n) => n.run('globalThis.stop = true;')));
    await Promise.all(runs);

    // A new cluster from the snapshot: restore, found it with a page server, read the bank.
    const dir2 = newDir();
    await dsmCli('restore', '--from', file, '--dir', dir2);
    const ps2 = await h.pageServer({ dir: dir2 });
    const c = await h.start({ peers: [ps2.address], durability: 'disk' });
    const total = await c.run<number>('return dsm.transaction(() => { let s = 0; for (let i = 0; i < 64; i++) s += dsm.u32[(args.first + i) * 1024]; return s; });', { first: FIRST });
    expect(total).toBe(64 * 1000);
    // Damaged: one byte flipped, refused without making anything.
    const bytes = fs.readFileSync(file);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    fs.writeFileSync(file, bytes);
    const dir3 = newDir();
    await expect(dsmCli('restore', '--from', file, '--dir', dir3)).rejects.toMatchObject({ stderr: expect.stringMatching(/ERR_DSM_SNAPSHOT/) });
    expect(fs.existsSync(dir3) && fs.readdirSync(dir3).length > 0).toBe(false);
    // A node that is not a page server has no store to snapshot.
    await expect(dsmCli('snapshot', '--connect', c.address, '--secret', SECRET, '--out', `${file}.2`)).rejects.toMatchObject({ stderr: expect.stringMatching(/not a page server/) });
  });

  it("with no other node to back it up, a 'replicated' commit waits for the page server, and survives its node", async () => {
    const fast = { heartbeatMs: 100, deadAfterMs: 1000 };
    const ps = await h.pageServer({ dir: newDir(), ...fast });
    const a = await h.start({ peers: [ps.address], durability: 'replicated', ...fast });
    a.run(COMMIT_PAGES_THEN_DIE, { first: FIRST, salt: 900 }).catch(() => undefined);
    await a.exited;
    // A node joining later (through the page server, once it has removed a) reads every page.
    const b = await h.start({ peers: [ps.address], ...fast });
    // b may join before the page server has removed a: until then b and the page server wait
    // out a's lease and recover (ERR_DSM_PARTITIONED meanwhile, which says: retry).
    const got = await until('the cluster to recover from the loss of a', 60_000, () =>
      b.run(READ_PAGES, { first: FIRST, salt: 900 }).catch((e: { code?: string }) => {
        if (e.code === 'ERR_DSM_PARTITIONED') return undefined;
        throw e;
      }),
    );
    expect(got).toEqual({ bad: [], lost: [] });
  });

  it("a founder with durability 'disk' and no page server says what it waits for, and goes on once a page server joins it", async () => {
    // Chosen first, so the page server can be told where to join before the founder's
    // createNode (which waits for its first durable commit) has returned.
    const address = await freeAddress();
    const starting = h.start({ listen: address, durability: 'disk' });
    const said = await until('the founder says it waits for a page server', 60_000, async () =>
      h.nodes[0]?.stderr.match(/durability 'disk': commit \d+ waits for a page server, and none is in the cluster; start one \(dsm pageserver --dir DIR --peers (\S+)/)?.[1],
    );
    expect(said).toBe(address);
    await h.pageServer({ dir: newDir(), peers: [address] });
    const a = await starting;
    const p = await a.run<number>('return await dsm.transaction((tx) => { const p = tx.alloc(8); dsm.u32[p >> 2] = 42; return p; });');
    expect(await a.run<number>('return dsm.u32[args.p >> 2];', { p })).toBe(42);
    expect(a.stderr.match(/waits for a page server/g)).toHaveLength(1);
  });

  it('refuses bad options clearly', async () => {
    const ps = await h.pageServer({ dir: newDir() });
    await ps.close();
    const dir = newDir();
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not a store');
    const other = await h.start({});
    await expect(other.run('return pkg.startPageServer({ dir: args.dir, secret: "s" });', { dir })).rejects.toMatchObject({ code: 'ERR_DSM_STORE' });
    await expect(other.run('return pkg.startPageServer({ secret: "s" });')).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION' });
    await expect(other.run('return pkg.startPageServer({ dir: args.dir, secret: "s", replicas: 2 });', { dir: newDir() })).rejects.toMatchObject({
      code: 'ERR_DSM_INVALID_OPTION',
      message: expect.stringContaining('unknown option "replicas"'),
    });
    // A directory that cannot be made is refused (in /proc, Node's recursive mkdir never returned).
    await expect(h.pageServer({ dir: '/proc/no-such-store' })).rejects.toMatchObject({ code: 'ERR_DSM_STORE' });
  });

  it('a page server that cannot listen or join leaves a new directory as it found it, and an existing store untouched', async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const taken = `127.0.0.1:${(busy.address() as net.AddressInfo).port}`;
    try {
      // A missing directory stays missing; an empty one stays, empty (the store used to be
      // left there, with the failed attempt's 1 GiB region).
      const dir = newDir();
      const listenFails = () => expect(dsmCli('pageserver', '--dir', dir, '--listen', taken, '--secret', SECRET)).rejects.toMatchObject({ stderr: expect.stringContaining('ERR_DSM_LISTEN') });
      await listenFails();
      expect(fs.existsSync(dir)).toBe(false);
      fs.mkdirSync(dir);
      await listenFails();
      expect(fs.readdirSync(dir)).toEqual([]);
      // A join refused, from code, in a process that goes on.
      const ps = await h.pageServer({ dir: newDir() });
      const nested = path.join(newDir(), 'deeper', 'store');
      await expect(h.pageServer({ dir: nested, secret: 'not-the-secret', peers: [ps.address] })).rejects.toMatchObject({ code: 'ERR_DSM_AUTH_FAILED' });
      expect(fs.existsSync(path.dirname(path.dirname(nested)))).toBe(false);
      // The corrected command, with the region size wanted (it used to be refused: the store held 1 GiB).
      const R = { regionSize: 32 << 20 };
      const ps2 = await h.pageServer({ dir, ...R });
      const a = await h.start({ peers: [ps2.address], durability: 'disk', ...R });
      await a.run('await dsm.transaction(() => { dsm.u32[args.w] = 77; });', { w: FIRST * PAGE_WORDS });
      await a.close();
      const time = await ps2.run<number>('return ps.durableTime;');
      expect(time).toBeGreaterThan(0);
      await ps2.close();
      // A store that was there before is never removed by a start that fails.
      await listenFails();
      const ps3 = await h.pageServer({ dir, ...R });
      expect(await ps3.run<number>('return ps.durableTime;')).toBe(time);
      const b = await h.start({ peers: [ps3.address], durability: 'disk', ...R });
      expect(await b.run('return dsm.transaction(() => dsm.u32[args.w]);', { w: FIRST * PAGE_WORDS })).toBe(77);
    } finally {
      busy.close();
    }
  });

  it('a page server that dies during dsm snapshot is said to have gone away, not to be perhaps no page server', async () => {
    const R = { regionSize: 64 << 20 };
    const ps = await h.pageServer({ dir: newDir(), ...R });
    const a = await h.start({ peers: [ps.address], durability: 'disk', ...R });
    // 32 MiB of pages: far more than the sockets between hold, so the kill cuts the stream.
    await a.run(
      'const ps = []; for (let i = 0; i < 8192; i++) { ps.push(dsm.transaction(() => dsm.u32.fill(i + 1, (args.first + i) * 1024, (args.first + i + 1) * 1024))); if (ps.length >= 64) await ps.shift(); } await Promise.all(ps);',
      { first: FIRST },
    );
    const dir = path.dirname(newDir());
    const out = path.join(dir, 'cut.snapshot');
    let killedAt = 0;
    const err = await fetchSnapshot(ps.address, SECRET, out, (bytes) => {
      if (bytes > 0 && !killedAt) {
        killedAt = bytes;
        ps.kill('SIGKILL');
      }
    }).then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    expect(killedAt).toBeGreaterThan(0);
    expect(err).toMatchObject({ code: 'ERR_DSM_SNAPSHOT', message: expect.stringMatching(/the page server at \S+ went away during the snapshot .*Try again once it is back/) });
    expect(err!.message).not.toContain('is it a page server');
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});
