// A page server started with peers on a store that holds a cluster's heap joins only that
// cluster, or one founded again from a store of it at or after the store's time: joining
// any other would replace the store's heap with that cluster's. It is refused
// (ERR_DSM_STORE) before anything in the store changes, and the other cluster does not
// admit it. An empty or new directory joins any cluster: that is how a page server is added.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { PageStore } from '../../lib/pageserver/store';
import { Harness, type RemoteNode, SECRET, until } from '../cluster/harness';
import { askCluster } from './fixtures/ask_cluster';

const CLI = path.join(__dirname, '../../dist/cli.js');
const dsmCli = (...args: string[]) => promisify(execFile)(process.execPath, [CLI, ...args], { timeout: 120_000 });
const FIRST = 3000; // a data page, clear of the heap's own
const WORD = FIRST * 1024;

/** `args.k` transactions, each adding 1 to the word; returns the node's global time after them. */
const COMMIT = 'for (let i = 0; i < args.k; i++) await dsm.transaction(() => { dsm.u32[args.w] += 1; }); return dsm.globalTime;';
const READ = 'return dsm.transaction(() => dsm.u32[args.w]);';

/** What a closed store holds: its record, its time, and the page the tests write (version and first word). */
async function storeState(dir: string): Promise<{ record: string; time: number; version: number; word: number }> {
  const record = fs.readFileSync(path.join(dir, 'cluster.json'), 'utf8');
  const s = await PageStore.open(dir);
  try {
    const p = s.readPage(FIRST);
    const word = p?.data ? new DataView(p.data.buffer, p.data.byteOffset).getUint32(0, true) : -1;
    return { record, time: s.appliedTime, version: p?.version ?? 0, word };
  } finally {
    await s.close();
  }
}

const refusal = (p: Promise<unknown>): Promise<(Error & { code?: string }) | undefined> =>
  p.then(
    () => undefined,
    (e: Error & { code?: string }) => e,
  );

/** Closes a page server cleanly (its store then holds everything, nothing left in its log) and ends its process. */
async function stop(...ns: RemoteNode[]): Promise<void> {
  for (const n of ns) await n.close();
  for (const n of ns) n.kill('SIGKILL');
  await Promise.all(ns.map((n) => n.exited));
}

describe('a page server started with peers on an existing store', () => {
  const h = new Harness();
  afterEach(() => h.close());

  /** A store of cluster X holding word 3, with every process of X stopped: its directory, X's id and the store's state. */
  async function storeOfStoppedCluster(prefix: string) {
    const dir = path.join(h.tempDir(prefix), 'store');
    const x = await h.pageServer({ dir });
    const a = await h.start({ peers: [x.address], durability: 'disk' });
    await a.run(COMMIT, { w: WORD, k: 3 });
    const xId = (await askCluster(x.address))!.identity.id;
    await stop(x);
    a.kill('SIGKILL');
    await a.exited;
    return { dir, xId, before: await storeState(dir) };
  }

  it("refuses another cluster's peers before its store changes, and that cluster does not admit it; a new or empty directory joins that cluster", async () => {
    await h.within(120_000, async (step) => {
      const { dir, xId, before } = await storeOfStoppedCluster('dsm-peers-other-');
      expect(before.word).toBe(3);

      step('another cluster, further on in time than the store');
      const y = await h.pageServer({ dir: path.join(h.tempDir('dsm-peers-y-'), 'store') });
      const b = await h.start({ peers: [y.address], durability: 'disk' });
      await b.run(COMMIT, { w: WORD, k: before.time + 10 });
      const yAnswer = (await askCluster(y.address))!;
      expect(yAnswer.identity.id).not.toBe(xId);

      step("starting a page server on the store with the other cluster's peers");
      const err = await refusal(h.pageServer({ dir, peers: [y.address] }));
      expect(err).toMatchObject({ code: 'ERR_DSM_STORE' });
      expect(err!.message).toContain(`belongs to cluster ${xId}`);
      expect(err!.message).toContain(`${y.address} is a member of cluster ${yAnswer.identity.id}`);
      expect(err!.message).toMatch(/new directory/);
      expect(await storeState(dir)).toEqual(before);
      // Refused before its join: the other cluster has the members it had.
      expect((await askCluster(y.address))!.members.sort()).toEqual(yAnswer.members.sort());
      // The command line says the same, and exits.
      await expect(dsmCli('pageserver', '--dir', dir, '--peers', y.address, '--secret', SECRET)).rejects.toMatchObject({ stderr: expect.stringMatching(/ERR_DSM_STORE[^]*is a member of cluster/) });
      expect(await storeState(dir)).toEqual(before);

      step('a new directory, and an empty one, join the other cluster');
      const added = await h.pageServer({ dir: path.join(h.tempDir('dsm-peers-new-'), 'store'), peers: [y.address] });
      const empty = await h.pageServer({ dir: h.tempDir('dsm-peers-empty-'), peers: [y.address] });
      expect([added.nodeId, empty.nodeId].filter((id) => id === 0)).toHaveLength(0);
      const t = await b.run<number>(COMMIT, { w: WORD, k: 1 });
      for (const p of [added, empty]) await until('an added page server applies the new commit', 60_000, async () => ((await p.run<number>('return ps.appliedTime;')) >= t ? true : undefined));

      step("the store still holds its own cluster's heap");
      const x2 = await h.pageServer({ dir, found: true });
      const c = await h.start({ peers: [x2.address] });
      expect(await c.run(READ, { w: WORD })).toBe(3);
    });
  });

  it('rejoins its own cluster with peers, joins one founded again from a store of it at or after its time, and refuses one founded again from an older store', async () => {
    await h.within(150_000, async (step) => {
      const fast = { heartbeatMs: 100, deadAfterMs: 1000 };
      const o1 = { dir: path.join(h.tempDir('dsm-peers-own-'), 'store'), ...fast };
      const o2 = { dir: path.join(h.tempDir('dsm-peers-own-'), 'store'), ...fast };
      const p1 = await h.pageServer(o1);
      let p2 = await h.pageServer({ ...o2, peers: [p1.address] });
      const a = await h.start({ peers: [p1.address], durability: 'disk', ...fast });
      await a.run(COMMIT, { w: WORD, k: 10 });

      step('killing the second page server; the node commits on; the page server rejoins with peers');
      p2.kill('SIGKILL');
      await p2.exited;
      let t = await a.run<number>(COMMIT, { w: WORD, k: 10 });
      p2 = await h.pageServer({ ...o2, peers: [p1.address] });
      expect(p2.nodeId).not.toBe(0);
      await until('the rejoined page server applies what it missed', 60_000, async () => ((await p2.run<number>('return ps.appliedTime;')) >= t ? true : undefined));

      step('the first page server leaves; the second goes on holding the commits (its store is ahead)');
      await stop(p1);
      t = await a.run<number>(COMMIT, { w: WORD, k: 10 });
      await until('the second page server has every commit on disk', 60_000, async () => ((await p2.run<number>('return ps.durableTime;')) >= t ? true : undefined));
      await stop(p2);
      a.kill('SIGKILL');
      await a.exited;
      // The same two stores, twice: once the older founds again first, once the newer.
      const copy = (o: { dir: string }) => {
        const dir = `${o.dir}-copy`;
        fs.cpSync(o.dir, dir, { recursive: true });
        return { ...o, dir };
      };
      const [o1Copy, o2Copy] = [copy(o1), copy(o2)];

      step('the older store founds again; the newer, given it as peer, is refused');
      const behind = await h.pageServer(o1Copy);
      expect(behind.nodeId).toBe(0);
      const before = await storeState(o2Copy.dir);
      const err = await refusal(h.pageServer({ ...o2Copy, peers: [behind.address] }));
      expect(err).toMatchObject({ code: 'ERR_DSM_STORE' });
      expect(err!.message).toMatch(/founded again at time \d+ from a store of cluster \w+\), which does not hold this store's commits after time \d+/);
      expect(await storeState(o2Copy.dir)).toEqual(before);
      behind.kill('SIGKILL');
      await behind.exited;

      step('the newer store founds again; the older, given it as peer, joins');
      const ahead = await h.pageServer(o2);
      expect(ahead.nodeId).toBe(0);
      const joined = await h.pageServer({ ...o1, peers: [ahead.address] });
      expect(joined.nodeId).not.toBe(0);
      const b = await h.start({ peers: [ahead.address], durability: 'disk', ...fast });
      expect(await b.run(READ, { w: WORD })).toBe(30);
      t = await b.run<number>(COMMIT, { w: WORD, k: 1 });
      for (const p of [ahead, joined]) await until('both page servers apply the new commit', 60_000, async () => ((await p.run<number>('return ps.appliedTime;')) >= t ? true : undefined));
    });
  });

  it("a store restored from a snapshot joins only the snapshot's cluster with peers: another cluster's are refused before it changes", async () => {
    await h.within(120_000, async (step) => {
      const x = await h.pageServer({ dir: path.join(h.tempDir('dsm-peers-snap-x-'), 'store') });
      const a = await h.start({ peers: [x.address], durability: 'disk' });
      await a.run(COMMIT, { w: WORD, k: 3 });
      const xId = (await askCluster(x.address))!.identity.id;

      step('a snapshot of the running cluster, restored into a new directory');
      const work = h.tempDir('dsm-peers-snap-');
      const file = path.join(work, 'heap.snap');
      const dir = path.join(work, 'restored');
      expect((await dsmCli('snapshot', '--connect', x.address, '--secret', SECRET, '--out', file)).stdout).toContain(`of cluster ${xId}`);
      expect((await dsmCli('restore', '--from', file, '--dir', dir)).stdout).toContain(`of cluster ${xId}`);
      const before = await storeState(dir);
      expect(before.word).toBe(3);

      step("another cluster's peers: refused, the restored store unchanged");
      const y = await h.pageServer({ dir: path.join(h.tempDir('dsm-peers-snap-y-'), 'store') });
      const b = await h.start({ peers: [y.address], durability: 'disk' });
      await b.run(COMMIT, { w: WORD, k: before.time + 10 });
      const err = await refusal(h.pageServer({ dir, peers: [y.address] }));
      expect(err).toMatchObject({ code: 'ERR_DSM_STORE' });
      expect(err!.message).toContain(`belongs to cluster ${xId}`);
      expect(await storeState(dir)).toEqual(before);

      step("its own cluster's peers: it joins and catches up");
      const t = await a.run<number>(COMMIT, { w: WORD, k: 2 });
      const joined = await h.pageServer({ dir, peers: [x.address] });
      expect(joined.nodeId).not.toBe(0);
      await until('the restored page server applies what the cluster committed since the snapshot', 60_000, async () => ((await joined.run<number>('return ps.appliedTime;')) >= t ? true : undefined));
    });
  });

  it('checks the cluster that admits it again, before its store changes (a peer that did not answer the question)', async () => {
    await h.within(100_000, async (step) => {
      const { dir, xId, before } = await storeOfStoppedCluster('dsm-peers-admit-');
      const y = await h.pageServer({ dir: path.join(h.tempDir('dsm-peers-admit-y-'), 'store') });
      const b = await h.start({ peers: [y.address], durability: 'disk' });
      await b.run(COMMIT, { w: WORD, k: before.time + 10 });

      step('joining through an address that drops its first connection (the question) and passes the next ones to the other cluster');
      const [yHost, yPort] = y.address.split(':');
      let connections = 0;
      const proxy = net.createServer((c) => {
        c.on('error', () => undefined);
        if (connections++ === 0) return c.destroy();
        const to = net.connect({ host: yHost, port: Number(yPort) });
        to.on('error', () => c.destroy());
        c.pipe(to).pipe(c);
        c.on('close', () => to.destroy());
      });
      await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
      try {
        const via = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
        const err = await refusal(h.pageServer({ dir, peers: [via] }));
        expect(err).toMatchObject({ code: 'ERR_DSM_STORE' });
        expect(err!.message).toContain(`belongs to cluster ${xId}`);
        expect(err!.message).toContain(`${via} is a member of cluster`);
        // Asked once, joined once: the refusal is final, not tried again until the join's time-out.
        expect(connections).toBe(2);
      } finally {
        proxy.close();
      }
      expect(await storeState(dir)).toEqual(before);
      // The other cluster took it in before it refused: it removes it as a member that died, and commits on.
      await until('the other cluster has its two members again', 60_000, async () => ((await askCluster(y.address))?.members.length === 2 ? true : undefined));
      await b.run(COMMIT, { w: WORD, k: 1 });
    });
  });
});
