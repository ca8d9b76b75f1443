// Backpressure across the cluster, with real processes: a member that stops reading (a
// stopped process) slows the nodes sending to it instead of growing their memory, and
// everything converges once it runs again.
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, SECRET, settle } from './harness';

const load = createRequire(__filename);
const { fetchStats } = load(path.join(__dirname, '../../dist/service/stats_client.js'));
const KiB = 1 << 10;
const MiB = 1 << 20;
/** The nodes' hard limit here: close to the least the transport allows (a 64 MiB frame must fit). */
const HARD_LIMIT = 72 * MiB;
/** The nodes' backlog threshold here (the default, 8 MiB, would take far more traffic to reach). */
const BACKLOG = 256 * KiB;
const AT = 2000 * 1024;

interface Protocol {
  queuedBytes: Record<string, number>;
  backlogged: boolean;
  commitsWaitingForDrain: number;
  connections: number[];
  heldPageRequests: number;
  heldPageRequestsTotal: number;
  droppedPageRequests: number;
}

async function protocol(n: RemoteNode): Promise<Protocol> {
  return ((await fetchStats(n.address, SECRET)) as { protocol: Protocol }).protocol;
}

/** Polls `test` until it holds; gives up after a generous time-out (no test relies on its length). */
async function until<T>(what: string, get: () => Promise<T>, test: (v: T) => boolean, timeoutMs = 120_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (test(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('backpressure in the cluster', () => {
  // The nodes inherit these at fork: small limits, reached with little traffic.
  beforeAll(() => {
    process.env.DSM_TEST_BACKLOG_BYTES = String(BACKLOG);
    process.env.DSM_TEST_MAX_QUEUED_BYTES = String(HARD_LIMIT);
  });
  afterAll(() => {
    delete process.env.DSM_TEST_BACKLOG_BYTES;
    delete process.env.DSM_TEST_MAX_QUEUED_BYTES;
  });
  const h = new Harness({ deadAfterMs: 600_000 });
  const stopped: RemoteNode[] = [];
  afterEach(async () => {
    for (const n of stopped.splice(0)) n.kill('SIGCONT');
    await h.close();
  });

  it('a stopped member slows the committer, whose queued bytes stay bounded; after it runs again everything converges', async () => {
    // Silence is no failure here (deadAfterMs): only the bytes decide. Durability 'none': with
    // 'replicated' the committer would wait for its stopped backup instead (tested elsewhere).
    const [a, b, c] = await h.cluster(3, { durability: 'none' });
    await a.run('await dsm.transaction(() => { dsm.u32[args.at] = 0; });', { at: AT });
    await settle([a, b, c]);
    await b.stop();
    stopped.push(b);
    // Far more commit traffic than the kernel's socket buffers and the backlog hold: without
    // backpressure it all piles up in a's memory, queued for b.
    const N = 300_000;
    await a.run(
      `globalThis.count = 0;
       globalThis.loop = (async () => {
         for (let i = 0; i < args.n; i++) {
           await dsm.transaction(() => { dsm.u32[args.at] += 1; });
           globalThis.count++;
         }
       })();`,
      { n: N, at: AT },
    );
    // The committer ends up waiting for b rather than finishing while b is stopped.
    const p = await until(
      'a commit waiting for the stopped member',
      async () => ({ p: await protocol(a), count: await a.run<number>('return globalThis.count;') }),
      (v) => v.p.commitsWaitingForDrain > 0 || v.count === N,
    );
    expect(p.count).toBeLessThan(N);
    expect(p.p.backlogged).toBe(true);
    const queued = p.p.queuedBytes[String(b.nodeId)];
    expect(queued).toBeGreaterThan(BACKLOG);
    // The backlog, plus what the app committed with the lent token before the service took
    // it back (a millisecond's worth, unless the service thread was kept waiting).
    expect(queued).toBeLessThan(BACKLOG + MiB);
    // Still stalled a moment later, and still bounded.
    const later = await protocol(a);
    expect(later.queuedBytes[String(b.nodeId)]).toBeLessThan(BACKLOG + MiB);
    // b was never dropped.
    expect(later.connections).toContain(b.nodeId);

    b.kill('SIGCONT');
    stopped.length = 0;
    await a.run('await globalThis.loop;');
    await settle([a, b, c]);
    const values = await Promise.all([a, b, c].map((n) => n.run<number>('return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })));
    expect(values).toEqual([N, N, N]);
    expect((await protocol(a)).backlogged).toBe(false);
  });

  it('a hand-over of more pages than the hard limit to a stopped successor completes once it runs again', async () => {
    // Traced (NODE_DEBUG=dsm): the test sees when a has acknowledged that c leaves.
    const env = process.env.NODE_DEBUG;
    process.env.NODE_DEBUG = 'dsm';
    const [a, b, c] = await h.cluster(3, { regionSize: 128 * MiB }).finally(() => {
      if (env === undefined) delete process.env.NODE_DEBUG;
      else process.env.NODE_DEBUG = env;
    });
    // c writes more pages than the hard limit holds, owning their only copy (and the token).
    const pages = 28_000;
    const FIRST = 2000; // past the heap's metadata
    await c.run('await dsm.transaction(() => { for (let p = 0; p < args.pages; p++) dsm.u32[(args.first + p) * 1024] = p + 1; });', { pages, first: FIRST });
    await settle([a, b, c]);
    // a, the lowest other id, is c's successor: stopped, it reads nothing of the hand-over.
    // c first tells every member it leaves and waits for each to acknowledge: b, stopped,
    // holds c there until a has acknowledged and been stopped in turn.
    await b.stop();
    stopped.push(b);
    let left = false;
    const closed = c.close().finally(() => (left = true));
    const acked = `node ${a.nodeId} -> ${c.nodeId}: type 60 `; // LeaveIntentAck
    await until('a acknowledged that c leaves', async () => a.stderr.includes(acked), (v) => v);
    await a.stop();
    stopped.push(a);
    b.kill('SIGCONT');
    stopped.splice(stopped.indexOf(b), 1);
    // c sends a batch at a time as a reads: it waits, backlogged, with little queued (not
    // done: without a successor reading, a hand-over cannot be complete).
    const p = await until(
      'the leaver backlogged on its successor',
      async () => (left ? undefined : await protocol(c).catch(() => undefined)),
      (v) => v === undefined || v.backlogged,
    );
    expect(p, 'the leaver finished leaving while its successor was stopped').toBeDefined();
    expect(p!.queuedBytes[String(a.nodeId)]).toBeLessThan(8 * MiB);
    a.kill('SIGCONT');
    stopped.length = 0;
    await closed;
    await a.waitForLine((l) => l === `peer-leave ${c.nodeId}`);
    await b.waitForLine((l) => l === `peer-leave ${c.nodeId}`);
    expect(c.stderr).not.toMatch(/may be lost/);
    const sum = 'return dsm.transaction(() => { let s = 0; for (let p = 0; p < args.pages; p++) s += dsm.u32[(args.first + p) * 1024]; return s; });';
    const want = (pages * (pages + 1)) / 2;
    expect(await Promise.all([a, b].map((n) => n.run<number>(sum, { pages, first: FIRST })))).toEqual([want, want]);
  });

  it('without data channels, page requests of a requester whose connection is backlogged are held and answered once it drains: a scan reads exactly what was written', async () => {
    // Every reply over the main connection (a data channel's owner end waits to write
    // instead: see the next test). Set for the processes this test starts.
    process.env.DSM_TEST_NO_DATA_CHANNELS = '1';
    // Durability 'none' and whole pages: b's copies are invalidated, so its scan fetches them
    // (a backup, or a diff, would have kept them current).
    const [a, b] = await h.cluster(2, { regionSize: 64 * MiB, durability: 'none' }).finally(() => delete process.env.DSM_TEST_NO_DATA_CHANNELS);
    const FIRST = 2000;
    const pages = 8000;
    await a.run('await dsm.transaction(() => { for (let p = 0; p < args.pages; p++) dsm.u32.fill(p + 1, (args.first + p) * 1024, (args.first + p + 1) * 1024); });', { pages, first: FIRST });
    await settle([a, b]);
    // The scan keeps several 1 MiB ranges requested at once: their replies, four times the
    // backlog each, find the connection backlogged after the first.
    const sum = await b.run<number>('let s = 0; for (let p = 0; p < args.pages; p++) s += dsm.u32[(args.first + p) * 1024]; return s;', { pages, first: FIRST });
    expect(sum).toBe((pages * (pages + 1)) / 2);
    const p = await protocol(a);
    expect(p.heldPageRequestsTotal).toBeGreaterThan(0);
    expect(p.heldPageRequests).toBe(0);
  });

  it('a scan whose replies outrun the requester, answered by the owner\'s end of a data channel, reads exactly what was written', async () => {
    const [a, b] = await h.cluster(2, { regionSize: 64 * MiB, durability: 'none' });
    const FIRST = 2000;
    const pages = 8000;
    await a.run('await dsm.transaction(() => { for (let p = 0; p < args.pages; p++) dsm.u32.fill(p + 7, (args.first + p) * 1024, (args.first + p + 1) * 1024); });', { pages, first: FIRST });
    await settle([a, b]);
    const served = async () => (await a.run<{ faults: { servedByChannel: number } }>('return dsm.stats();')).faults.servedByChannel;
    const before = await served();
    const sum = await b.run<number>('let s = 0; for (let p = 0; p < args.pages; p++) s += dsm.u32[(args.first + p) * 1024]; return s;', { pages, first: FIRST });
    expect(sum).toBe((pages * (pages + 1)) / 2 + 6 * pages);
    // Nearly all of it came natively (the first request, before the channel opened, did not).
    expect(await served()).toBeGreaterThan(before);
    const p = await protocol(a);
    expect(p.heldPageRequests).toBe(0);
  });
});
