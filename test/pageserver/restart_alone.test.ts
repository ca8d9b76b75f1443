// A page server restarted with the command line it was started with (no peers) while the
// nodes of its cluster still run: it must join them again and catch up, never found a
// second cluster beside theirs. When nobody of its cluster answers (every process is
// restarting), it founds the cluster again from its store, as before.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { freeAddress, Harness, type RemoteNode, SECRET, until } from '../cluster/harness';
import { askCluster } from './fixtures/ask_cluster';

const CLI = path.join(__dirname, '../../dist/cli.js');
const dsmCli = (...args: string[]) => promisify(execFile)(process.execPath, [CLI, ...args], { timeout: 120_000 });
const FIRST = 3000; // data pages, clear of the heap's own

/** Transactions back to back, each writing its sequence number into two words on two pages; says `ACK tag i` once transaction i is acknowledged. */
const COMMIT_FOREVER = `
  const a = args.first * 1024, b = (args.first + 1) * 1024 + 7;
  for (let i = 1; ; i++) {
    await dsm.transaction(() => { dsm.u32[a] = i; dsm.u32[b] = i; });
    say('ACK ' + args.tag + ' ' + i);
  }
`;

const lastAck = (n: RemoteNode, tag: string): number => {
  let last = 0;
  for (const l of n.lines) if (l.startsWith(`ACK ${tag} `)) last = Number(l.slice(5 + tag.length));
  return last;
};

/** The two words COMMIT_FOREVER writes for `first`, read in one transaction. */
const READ_WORDS = 'return dsm.transaction(() => [args.first * 1024, (args.first + 1) * 1024 + 7].map((w) => dsm.u32[w]));';

describe('a page server restarted alone', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('joins the cluster its nodes still run (no second cluster), catches up and acknowledges again', async () => {
    await h.within(100_000, async (step) => {
      const dir = h.tempDir('dsm-restart-alone-');
      const fast = { heartbeatMs: 100, deadAfterMs: 1000 };
      const listen = await freeAddress();
      // The command line the operator runs, both times: no peers.
      const psOptions = { dir, listen, ...fast };
      const ps = await h.pageServer(psOptions);
      const opts = { peers: [ps.address], durability: 'disk', ...fast };
      const a = await h.start(opts);
      const b = await h.start(opts);
      a.run(COMMIT_FOREVER, { first: FIRST, tag: 'a' }).catch(() => undefined);
      b.run(COMMIT_FOREVER, { first: FIRST + 10, tag: 'b' }).catch(() => undefined);
      step('waiting for the first acknowledged commits');
      await Promise.all([a.waitForLine((l) => l === 'ACK a 20'), b.waitForLine((l) => l === 'ACK b 20')]);
      step('killing the page server');
      ps.kill('SIGKILL');
      await ps.exited;
      await a.waitForLine((l) => l === `peer-leave ${ps.nodeId}`);
      // The nodes commit on (their commits wait for a page server's disk, and say so).
      await until('a node says its commit waits for a page server', 60_000, async () => /waits for a page server, and none is in the cluster/.test(a.stderr) || undefined);

      step('restarting the page server with the same options');
      const ps2 = await h.pageServer(psOptions);
      // A member of the running cluster, not the founder of another (a founder is node 0).
      expect(ps2.nodeId).not.toBe(0);
      await a.waitForLine((l) => l === `peer-join ${ps2.nodeId}`);
      expect(ps2.stderr).toMatch(/joining the running cluster through/);
      step('waiting for the nodes to be acknowledged again');
      const goOn = { a: lastAck(a, 'a') + 20, b: lastAck(b, 'b') + 20 };
      await Promise.all([a.waitForLine((l) => l === `ACK a ${goOn.a}`), b.waitForLine((l) => l === `ACK b ${goOn.b}`)]);
      // The page server holds their commits: it applied past what the nodes acknowledged before.
      const t = await a.run<number>('return dsm.globalTime;');
      await until('the page server applies the nodes\' commits', 60_000, async () => ((await ps2.run<number>('return ps.appliedTime;')) >= t ? true : undefined));

      step('killing every process, and restarting from the store');
      for (const n of [ps2, a, b]) n.kill('SIGKILL');
      await Promise.all([ps2, a, b].map((n) => n.exited));
      const acked = { a: lastAck(a, 'a'), b: lastAck(b, 'b') };
      // Nobody answers at the recorded addresses: it founds the cluster again from its store.
      const ps3 = await h.pageServer(psOptions);
      expect(ps3.nodeId).toBe(0);
      expect(ps3.stderr).toMatch(/no member of this store's cluster answered at .*: founding it again from the store/);
      const c = await h.start({ peers: [ps3.address], durability: 'disk' });
      const [a1, a2] = await c.run<number[]>(READ_WORDS, { first: FIRST });
      const [b1, b2] = await c.run<number[]>(READ_WORDS, { first: FIRST + 10 });
      // Whole transactions, and every acknowledged one (one more may be on disk unacknowledged).
      expect([a1 === a2, b1 === b2]).toEqual([true, true]);
      expect(a1 - acked.a).toBeGreaterThanOrEqual(0);
      expect(a1 - acked.a).toBeLessThanOrEqual(1);
      expect(b1 - acked.b).toBeGreaterThanOrEqual(0);
      expect(b1 - acked.b).toBeLessThanOrEqual(1);
    });
  });

  it('refuses a store whose members\' addresses answer for another cluster, and founds a separate one when told to (found)', async () => {
    await h.within(100_000, async (step) => {
      const dir = h.tempDir('dsm-restart-other-');
      const [listen, nodeListen] = [await freeAddress(), await freeAddress()];
      const psOptions = { dir, listen };
      const ps = await h.pageServer(psOptions);
      const a = await h.start({ listen: nodeListen, peers: [ps.address], durability: 'disk' });
      await a.run('await dsm.transaction(() => { dsm.u32[args.w] = 4242; });', { w: FIRST * 1024 });
      step('stopping every process; another cluster is founded at the node\'s address');
      for (const n of [ps, a]) n.kill('SIGKILL');
      await Promise.all([ps, a].map((n) => n.exited));
      const stranger = await h.start({ listen: nodeListen });
      await stranger.run('await dsm.transaction(() => { dsm.u32[args.w] = 1; });', { w: FIRST * 1024 });

      step('restarting the page server with the same options');
      const err = await h.pageServer(psOptions).then(
        () => undefined,
        (e: Error & { code?: string }) => e,
      );
      expect(err).toMatchObject({ code: 'ERR_DSM_STORE' });
      expect(err!.message).toContain(`${nodeListen} is a member of cluster`);
      expect(err!.message).toMatch(/would make a second cluster .* --found/);
      expect(fs.existsSync(path.join(dir, 'data.mdb'))).toBe(true);
      // The command line says the same, and exits.
      await expect(dsmCli('pageserver', '--dir', dir, '--listen', listen, '--secret', SECRET)).rejects.toMatchObject({ stderr: expect.stringMatching(/ERR_DSM_STORE[^]*is a member of cluster/) });

      step('founding a separate cluster from the store anyway');
      const ps2 = await h.pageServer({ ...psOptions, found: true });
      expect(ps2.nodeId).toBe(0);
      const c = await h.start({ peers: [ps2.address], durability: 'disk' });
      expect(await c.run('return dsm.transaction(() => dsm.u32[args.w]);', { w: FIRST * 1024 })).toBe(4242);
      // The stranger's cluster is untouched by all this.
      expect(await stranger.run('return dsm.transaction(() => dsm.u32[args.w]);', { w: FIRST * 1024 })).toBe(1);
    });
  });

  it('of two page servers, one whose store is ahead refuses a cluster founded again from the other\'s; one whose store is behind joins it', async () => {
    await h.within(110_000, async (step) => {
      const fast = { heartbeatMs: 100, deadAfterMs: 1000 };
      const d1 = h.tempDir('dsm-restart-two-');
      const d2 = h.tempDir('dsm-restart-two-');
      const p1Options = { dir: path.join(d1, 'store'), listen: await freeAddress(), ...fast };
      const p2Options = { dir: path.join(d2, 'store'), listen: await freeAddress(), ...fast };
      const p1 = await h.pageServer(p1Options);
      const p2 = await h.pageServer({ ...p2Options, peers: [p1.address] });
      const a = await h.start({ peers: [p1.address], durability: 'disk', ...fast });
      a.run(COMMIT_FOREVER, { first: FIRST, tag: 'a' }).catch(() => undefined);
      await a.waitForLine((l) => l === 'ACK a 20');
      step('killing the first page server; the node commits on with the second');
      p1.kill('SIGKILL');
      await a.waitForLine((l) => l === `peer-leave ${p1.nodeId}`);
      const goOn = lastAck(a, 'a') + 20;
      await a.waitForLine((l) => l === `ACK a ${goOn}`);
      for (const n of [p2, a]) n.kill('SIGKILL');
      await Promise.all([p1, p2, a].map((n) => n.exited));
      const acked = lastAck(a, 'a');
      // The same two stores, twice: once restarted in the wrong order, once in the right one.
      const copy = (o: { dir: string }) => {
        const dir = `${o.dir}-copy`;
        fs.cpSync(o.dir, dir, { recursive: true });
        return { ...o, dir };
      };
      const [p1Copy, p2Copy] = [copy(p1Options), copy(p2Options)];

      step('the store that is behind founds again first (nobody answers); the one ahead refuses its cluster');
      const behind = await h.pageServer(p1Copy);
      expect(behind.nodeId).toBe(0);
      const err = await h.pageServer(p2Copy).then(
        () => undefined,
        (e: Error & { code?: string }) => e,
      );
      expect(err).toMatchObject({ code: 'ERR_DSM_STORE' });
      expect(err!.message).toMatch(/founded again at time \d+ from a store of cluster \w+\), which does not hold this store's commits after time \d+/);
      behind.kill('SIGKILL');
      await behind.exited;

      step('the store that is ahead founds again first; the one behind joins its cluster');
      const ahead = await h.pageServer(p2Options);
      expect(ahead.nodeId).toBe(0);
      const b = await h.start({ peers: [ahead.address], durability: 'disk', ...fast });
      const rejoined = await h.pageServer(p1Options);
      expect(rejoined.nodeId).not.toBe(0);
      expect(rejoined.stderr).toMatch(/joining the running cluster through/);
      const [w1, w2] = await b.run<number[]>(READ_WORDS, { first: FIRST });
      expect(w1).toBe(w2);
      expect(w1).toBeGreaterThanOrEqual(acked);
      // Both page servers hold the cluster's commits from here on.
      await b.run('await dsm.transaction(() => { dsm.u32[args.w] = 777; });', { w: (FIRST + 20) * 1024 });
      const t = await b.run<number>('return dsm.globalTime;');
      for (const p of [ahead, rejoined]) await until('a page server applies the new commit', 60_000, async () => ((await p.run<number>('return ps.appliedTime;')) >= t ? true : undefined));
    });
  });

  it('a whole-cluster restart with the nodes up first at their old addresses (joining, not members) still founds from the store', async () => {
    await h.within(100_000, async (step) => {
      const dir = h.tempDir('dsm-restart-nodes-first-');
      const [listen, aListen, bListen] = [await freeAddress(), await freeAddress(), await freeAddress()];
      const ps = await h.pageServer({ dir, listen });
      const a = await h.start({ listen: aListen, peers: [listen], durability: 'disk' });
      const b = await h.start({ listen: bListen, peers: [listen], durability: 'disk' });
      await a.run('await dsm.transaction(() => { dsm.u32[args.w] = 99; });', { w: FIRST * 1024 });
      for (const n of [ps, a, b]) n.kill('SIGKILL');
      await Promise.all([ps, a, b].map((n) => n.exited));

      step('restarting the nodes first: they wait to join the page server');
      const joining = [h.start({ listen: aListen, peers: [listen], durability: 'disk' }), h.start({ listen: bListen, peers: [listen], durability: 'disk' })];
      for (const address of [aListen, bListen]) {
        await until(`the node at ${address} listens`, 60_000, () => {
          const [host, port] = address.split(':');
          return new Promise<true | undefined>((resolve) => {
            const s = net.connect({ host, port: Number(port) });
            s.once('connect', () => (s.destroy(), resolve(true)));
            s.once('error', () => resolve(undefined));
          });
        });
      }
      step('restarting the page server: the nodes answer, as no members of a cluster');
      const ps2 = await h.pageServer({ dir, listen });
      expect(ps2.nodeId).toBe(0);
      expect(ps2.stderr).toMatch(new RegExp(`no member of this store's cluster answered at .*${aListen} \\(not a member of a cluster\\)`));
      const [a2, b2] = await Promise.all(joining);
      expect(await b2.run('return dsm.transaction(() => dsm.u32[args.w]);', { w: FIRST * 1024 })).toBe(99);
      await a2.run('await dsm.transaction(() => { dsm.u32[args.w] = 100; });', { w: FIRST * 1024 });
    });
  });

  it('two page servers of one cluster restarted at the same moment make one cluster: one founds, the other joins it', async () => {
    await h.within(100_000, async (step) => {
      const o1 = { dir: path.join(h.tempDir('dsm-restart-both-'), 'store'), listen: await freeAddress() };
      const o2 = { dir: path.join(h.tempDir('dsm-restart-both-'), 'store'), listen: await freeAddress() };
      const p1 = await h.pageServer(o1);
      const p2 = await h.pageServer({ ...o2, peers: [p1.address] });
      const a = await h.start({ peers: [p1.address], durability: 'disk' });
      for (let i = 1; i <= 10; i++) await a.run('await dsm.transaction(() => { dsm.u32[args.w] = args.i; });', { w: FIRST * 1024, i });
      // Both stores hold every commit: either may found, and the other holds nothing it lacks.
      const t = await a.run<number>('return dsm.globalTime;');
      for (const p of [p1, p2]) await until('a page server has every commit on disk', 60_000, async () => ((await p.run<number>('return ps.durableTime;')) >= t ? true : undefined));
      for (const n of [p1, p2, a]) n.kill('SIGKILL');
      await Promise.all([p1, p2, a].map((n) => n.exited));
      // An address both stores recorded, where something takes the connection and holds each
      // page server's question until both answer as page servers starting: their questions
      // overlap, as when both start at one moment, whatever the processes' start times.
      const held: net.Socket[] = [];
      let released = false;
      const release = () => {
        released = true;
        for (const x of held) x.destroy();
      };
      const hold = net.createServer((c) => {
        c.on('error', () => undefined);
        held.push(c);
        if (released) release();
      });
      void (async () => {
        for (const o of [o1, o2]) await until('a page server asks whether its cluster runs', 60_000, async () => ((await askCluster(o.listen))?.starting ? true : undefined));
        release();
      })().catch(release);
      await new Promise<void>((r) => hold.listen(0, '127.0.0.1', r));
      const holdAddress = `127.0.0.1:${(hold.address() as net.AddressInfo).port}`;
      for (const o of [o1, o2]) {
        const file = path.join(o.dir, 'cluster.json');
        const rec = JSON.parse(fs.readFileSync(file, 'utf8')) as { former: string[] };
        fs.writeFileSync(file, JSON.stringify({ ...rec, former: [holdAddress, ...rec.former] }));
      }

      step('restarting both page servers at once');
      const [q1, q2] = await Promise.all([h.pageServer(o1), h.pageServer(o2)]).finally(() => hold.close());
      expect([q1.nodeId, q2.nodeId].filter((id) => id === 0)).toHaveLength(1);
      const [founder, joiner] = q1.nodeId === 0 ? [q1, q2] : [q2, q1];
      expect(joiner.stderr).toMatch(/joining the running cluster through/);
      const b = await h.start({ peers: [joiner.address], durability: 'disk' });
      expect(await b.run('return dsm.transaction(() => dsm.u32[args.w]);', { w: FIRST * 1024 })).toBe(10);
      await b.run('await dsm.transaction(() => { dsm.u32[args.w] = 11; });', { w: FIRST * 1024 });
      const t2 = await b.run<number>('return dsm.globalTime;');
      for (const p of [founder, joiner]) await until('both page servers apply the new commit', 60_000, async () => ((await p.run<number>('return ps.appliedTime;')) >= t2 ? true : undefined));
    });
  });

  it('refuses to join its cluster when the cluster runs behind the store\'s time (the rebase on joining cannot go back)', async () => {
    await h.within(100_000, async () => {
      // A cluster whose time stays low, running.
      const q = await h.pageServer({ dir: path.join(h.tempDir('dsm-restart-behind-'), 'store') });
      await h.start({ peers: [q.address], durability: 'disk' });
      const { identity } = (await askCluster(q.address)) as { identity: { id: string; foundedAt: number; from: string } };
      // A store far ahead of it, which its record says belongs to that cluster (what a recovery
      // that made the store's last commits void would leave, without staging one).
      const dir = path.join(h.tempDir('dsm-restart-behind-'), 'store');
      const ps = await h.pageServer({ dir });
      const a = await h.start({ peers: [ps.address], durability: 'disk' });
      for (let i = 1; i <= 30; i++) await a.run('await dsm.transaction(() => { dsm.u32[args.w] = args.i; });', { w: FIRST * 1024, i });
      for (const n of [ps, a]) n.kill('SIGKILL');
      await Promise.all([ps, a].map((n) => n.exited));
      fs.writeFileSync(path.join(dir, 'cluster.json'), JSON.stringify({ identity, members: [q.address], former: [] }));
      const err = await h.pageServer({ dir }).then(
        () => undefined,
        (e: Error & { code?: string }) => e,
      );
      expect(err).toMatchObject({ code: 'ERR_DSM_STORE' });
      expect(err!.message).toMatch(/is at time \d+, and its cluster, running at \S+, only at \d+: the store holds commits the cluster does not/);
      expect(err!.message).toContain('once the cluster has committed past time');
    });
  });
});
