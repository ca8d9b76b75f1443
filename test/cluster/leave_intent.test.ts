// Ownership of a sequential or migratory page that reaches a leaver late. A request the
// leaver made before it closed (a prefetch here; a re-sent request or a search elsewhere)
// waits at an owner that is stopped; the leaver closes, the owner resumes and grants the
// page to it. The page must reach a member that stays: before the leave-intent round, the
// leaver had listed its pages already, left with this one, and the others read zeros.
//
// The interleavings are held with signals and the traces (NODE_DEBUG=dsm, which also says
// when a frame was read), never with timing.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, settle, until } from './harness';

const SEQ_REQUEST = 45;
const SEQ_REPLY = 46;
const SEQ_INVALIDATE = 47;
const HANDOVER_DONE = 33;
const LEAVE_INTENT = 59;
const LEAVE_INTENT_ACK = 60;

const sent = (n: RemoteNode, to: RemoteNode, type: number) => n.stderr.split(`node ${n.nodeId} -> ${to.nodeId}: type ${type} `).length - 1;
const got = (n: RemoteNode, from: RemoteNode, type: number) => n.stderr.split(`node ${n.nodeId} <- ${from.nodeId}: type ${type} `).length - 1;

describe('a page granted to a leaver after it began to close', () => {
  const h = new Harness();
  afterEach(() => h.close());

  /**
   * Three traced nodes; c allocates a page of `model` (so it owns it and every hint names
   * it) and writes 7 there; the token ends at b, so b's leave needs nothing of c.
   */
  async function start(model: string): Promise<{ a: RemoteNode; b: RemoteNode; c: RemoteNode; at: number }> {
    const env = process.env.NODE_DEBUG;
    process.env.NODE_DEBUG = 'dsm';
    let nodes: RemoteNode[];
    try {
      nodes = await h.cluster(3, { durability: 'none' });
    } finally {
      if (env === undefined) delete process.env.NODE_DEBUG;
      else process.env.NODE_DEBUG = env;
    }
    const [a, b, c] = nodes;
    const at = await c.run<number>(`const p = await dsm.transaction((tx) => tx.alloc(4096, { model: args.model })); dsm.u32[p / 4] = 7; return p;`, { model });
    await b.run('await dsm.transaction(() => { dsm.u32[3000 * 1024] = 1; });');
    await settle([a, b, c]);
    return { a, b, c, at };
  }

  /** b's prefetch ended one way or the other; every node that stays reads 7; nobody speaks of a loss. */
  async function check(a: RemoteNode, b: RemoteNode, c: RemoteNode, at: number): Promise<void> {
    expect(['here', 'ERR_DSM_CLOSED']).toContain(await b.run('return globalThis.pf;'));
    for (const n of [a, c]) {
      // A lost page reads as zeros and fails the next call with ERR_DSM_PAGE_LOST.
      expect(await n.run('const v = dsm.u32[args.at / 4]; await dsm.transaction(() => undefined); return v;', { at })).toBe(7);
    }
    await settle([a, c]);
    for (const n of [a, b, c]) expect(n.stderr).not.toMatch(/lost|ERR_DSM_PAGE_LOST/);
  }

  it.each(['sequential', 'migratory'])('a %s page: the owner was stopped while the request reached it', async (model) => {
    // c, stopped, holds b's request; a (b's successor), stopped, holds b's close as far as
    // it gets without it; c resumes and answers before a does.
    const { a, b, c, at } = await start(model);
    await c.stop();
    await b.run("globalThis.pf = dsm.prefetch(args.at, 4, { write: true }).then(() => 'here', (e) => e.code);", { at });
    await until('b asked c for the page', 30_000, async () => (sent(b, c, SEQ_REQUEST) > 0 ? true : undefined));
    await a.stop();
    const closing = b.close();
    closing.catch(() => undefined); // awaited below
    // Without a round, b gets as far as its successor's acknowledgement of the pages; with
    // one, as far as waiting for c's answer to it.
    await until('b has listed its pages or told c it leaves', 30_000, async () => (sent(b, a, HANDOVER_DONE) > 0 || sent(b, c, LEAVE_INTENT) > 0 ? true : undefined));
    c.kill('SIGCONT');
    await until('c granted b the page and b read it', 30_000, async () => (sent(c, b, SEQ_REPLY) > 0 && got(b, c, SEQ_REPLY) > 0 ? true : undefined));
    a.kill('SIGCONT');
    await closing;
    await check(a, b, c, at);
  }, 120_000);

  it('a sequential page: the owner was still invalidating a copy for the grant when the leaver said it leaves', async () => {
    // The owner c acknowledges b's intent only once the grant it started for b has gone: a,
    // holding a read copy and stopped, keeps that grant waiting for its invalidation's
    // acknowledgement; c is stopped in turn once it has read the intent, and resumes (and
    // grants) only after b has a's acknowledgement, so an acknowledgement c sent at once
    // would let b list its pages and leave before the page came.
    const { a, b, c, at } = await start('sequential');
    expect(await a.run('return dsm.u32[args.at / 4];', { at })).toBe(7);
    await a.stop();
    await b.run("globalThis.pf = dsm.prefetch(args.at, 4, { write: true }).then(() => 'here', (e) => e.code);", { at });
    await until("c invalidates a's copy for b", 30_000, async () => (sent(c, a, SEQ_INVALIDATE) > 0 ? true : undefined));
    let closed = false;
    const closing = b.close().finally(() => (closed = true));
    closing.catch(() => undefined); // awaited below
    await until('c read that b leaves', 30_000, async () => (got(c, b, LEAVE_INTENT) > 0 ? true : undefined));
    await c.stop();
    a.kill('SIGCONT');
    await until('b closed, or has every acknowledgement but the one c holds back', 30_000, async () =>
      closed || (got(b, a, LEAVE_INTENT_ACK) > 0 && sent(c, b, LEAVE_INTENT_ACK) === 0) ? true : undefined);
    c.kill('SIGCONT');
    await closing;
    await check(a, b, c, at);
    // The page went through b (c granted it before acknowledging), not around it.
    expect(sent(c, b, SEQ_REPLY)).toBeGreaterThan(0);
  }, 120_000);
});
