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
