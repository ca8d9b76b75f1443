// Sequential pages follow the commit lease (lib/service/lease_fence.ts): a node stalled or
// cut off past the failure detector, which the others removed and whose pages they took
// over, neither reads their old contents nor writes into them once its lease has run out.
// Its touches wait until it has joined again, and then see the cluster's page.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, settle, until } from './harness';
import { NetnsHarness, netnsUnavailable } from './netns';

const READ = 'const v = dsm.u32[args.at]; try { dsm.stats(); return { v }; } catch (e) { return { v, code: e.code }; }';
const WRITE = 'dsm.u32[args.at] = args.v; try { dsm.stats(); return {}; } catch (e) { return { code: e.code }; }';
const FENCED = "this node's lease ran out";

/** A sequential page b owns with 2 in it, and c holds a read copy of: its first word's index. */
async function ownedByB(a: RemoteNode, b: RemoteNode, c: RemoteNode): Promise<number> {
  const ptr = await a.run<number>(`return dsm.transaction((tx) => { const p = tx.alloc(4096, { model: 'sequential' }); tx.setRoot('s', p); return p; });`);
  await settle([a, b, c]);
  const at = ptr / 4;
  expect(await b.run(WRITE, { at, v: 2 })).toEqual({});
  expect(await c.run(READ, { at })).toEqual({ v: 2 });
  return at;
}

describe('sequential pages on a node whose lease ran out', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('a stalled owner, removed meanwhile, reads what the cluster wrote after it resumes, never its old copy', async () => {
    const [a, b, c] = await h.cluster(3, { heartbeatMs: 100, deadAfterMs: 1000 });
    const at = await ownedByB(a, b, c);
    const oldId = b.nodeId;
    await b.stop();
    for (const n of [a, c]) await n.waitForLine((l) => l === `peer-leave ${oldId}`);
    // The others take the page over from c's copy and write it anew.
    expect(await a.run(WRITE, { at, v: 5 })).toEqual({});
    expect(await c.run(READ, { at })).toEqual({ v: 5 });
    b.kill('SIGCONT');
    // Once b's service has seen its lease run out (it runs before b can have heard of its
    // removal), b's touch waits, and b reads the cluster's page. Before, b read its own 2 and
    // wrote into a page nobody else would see, until it joined again.
    await until('b fences its pages', 30_000, async () => (b.stderr.includes(FENCED) ? true : undefined));
    expect(await b.run(READ, { at })).toEqual({ v: 5 });
    // It read that as a member again, and dsm.nodeId says so at once (it read the old id
    // until the app thread took in the service's message).
    expect(await b.run('return dsm.nodeId;')).not.toBe(oldId);
    expect(await b.run(WRITE, { at, v: 7 })).toEqual({});
    for (const n of [a, c]) expect(await n.run(READ, { at })).toEqual({ v: 7 });
  }, 60_000);

  it('an owner resumed from SIGSTOP reads nothing once its lease has run out: the app thread fences before it runs on', async () => {
    const [a, b, c] = await h.cluster(3, { heartbeatMs: 100, deadAfterMs: 1000 });
    const at = await ownedByB(a, b, c);
    // b's app thread reads the page back to back (its writes would take c's copy away, and
    // the page would be lost with b) until it reads what the others wrote while it was
    // stopped. A read of its own old value begun past the end of the lease as it stood once
    // the read was done (the app thread reads it from the service's shared gate) was made by
    // a node that may no longer be a member: a fenced read waits until the lease is back, or
    // the node has joined again and fetched the cluster's page. Before the alarm, the resumed
    // app thread ran on while its service thread woke, and read its old 2 until that had
    // fenced the page: which thread ran first after SIGCONT decided, and reads came late in
    // about half the rounds (hundreds to thousands of them), so three rounds are run.
    const LOOP = `const gate = dsm.service.gate;
       const now = () => performance.timeOrigin + performance.now();
       const alarms = dsm.stats().leaseAlarms;
       const end = now() + 40000;
       let late = 0, gap = 0, prev = now(), v = 0, n = 0;
       for (;;) {
         const t = now();
         gap = Math.max(gap, t - prev);
         prev = t;
         v = dsm.u32[args.at];
         // Compiled by now and the page mapped: the stop comes in the loop itself.
         if (++n === 100000) say(args.marker);
         // After the stop: before it, the lease may lapse on a loaded machine as on any other.
         if (gap > 900 && v !== 5 && t > gate.lease[0] + 50) late++;
         if (v === 5 || t > end) break;
       }
       gap = Math.max(gap, now() - prev); // a stop in the last read
       return { late, stopped: gap > 900, last: v, alarms: dsm.stats().leaseAlarms - alarms };`;
    for (let round = 0; round < 3; round++) {
      if (round > 0) {
        expect(await b.run(WRITE, { at, v: 2 })).toEqual({});
        expect(await c.run(READ, { at })).toEqual({ v: 2 });
      }
      const id = await b.run<number>('return dsm.nodeId;');
      const marker = `looping ${round}`;
      const looped = b.run<{ late: number; stopped: boolean; last: number; alarms: number }>(LOOP, { at, marker });
      await b.waitForLine((l) => l === marker);
      await b.stop();
      for (const n of [a, c]) await n.waitForLine((l) => l === `peer-leave ${id}`);
      expect(await a.run(WRITE, { at, v: 5 })).toEqual({});
      b.kill('SIGCONT');
      // Stopped past the failure detector, nothing read late, then the cluster's page once it
      // had joined again; and the app thread fenced, not the service.
      const r = await looped;
      expect({ ...r, alarms: r.alarms >= 1 }).toEqual({ late: 0, stopped: true, last: 5, alarms: true });
    }
  }, 90_000);
});

const unavailable = netnsUnavailable();
describe.skipIf(unavailable !== undefined)('sequential pages on a node cut off the network', () => {
  const h = new NetnsHarness(3);
  afterEach(() => h.close());

  it('the cut-off owner touches its page only once it is back, and then sees what the majority wrote', async () => {
    const [a, b, c] = await h.cluster(3, { heartbeatMs: 100, deadAfterMs: 1000 });
    const at = await ownedByB(a, b, c);
    const oldId = b.nodeId;
    h.cut(b);
    for (const n of [a, c]) await n.waitForLine((l) => l === `peer-leave ${oldId}`);
    expect(await a.run(WRITE, { at, v: 5 })).toEqual({});
    // b runs on, cut off: its read waits for the network (and its joining again) instead of
    // returning its own old 2. Before, it read 2 and wrote into a page nobody else would see.
    await until('b fences its pages', 30_000, async () => (b.stderr.includes(FENCED) ? true : undefined));
    const read = b.run(READ, { at });
    h.heal(b);
    expect(await read).toEqual({ v: 5 });
    await until('b has its new id', 30_000, async () => ((await b.run<number>('return dsm.nodeId;')) !== oldId ? true : undefined));
    expect(await b.run(WRITE, { at, v: 7 })).toEqual({});
    for (const n of [a, c]) expect(await n.run(READ, { at })).toEqual({ v: 7 });
  }, 90_000);
});
