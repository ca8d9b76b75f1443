// Ownership of a sequential or migratory page that reaches a leaver late. A request the
// leaver made before it closed (a prefetch here; a re-sent request or a search elsewhere)
// waits at an owner that is stopped; the leaver closes, the owner resumes and grants the
// page to it. The page must reach a member that stays: before the leave-intent round, the
// leaver had listed its pages already, left with this one, and the others read zeros.
//
// The interleaving is held with signals and the traces (NODE_DEBUG=dsm): the owner c is
// stopped while the leaver's request reaches it, the successor a while the leaver's close
// gets as far as it can without it, and c resumes (and answers the request) before a does.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, settle, until } from './harness';

const SEQ_REQUEST = 45;
const SEQ_REPLY = 46;
const HANDOVER_DONE = 33;
const LEAVE_INTENT = 59;

describe.each(['sequential', 'migratory'])('a %s page granted to a leaver after it began to close', (model) => {
  const h = new Harness();
  afterEach(() => h.close());

  it('reaches a member that stays: every remaining node reads the last write', async () => {
    const env = process.env.NODE_DEBUG;
    process.env.NODE_DEBUG = 'dsm';
    let a: RemoteNode, b: RemoteNode, c: RemoteNode;
    try {
      [a, b, c] = await h.cluster(3, { durability: 'none' });
    } finally {
      if (env === undefined) delete process.env.NODE_DEBUG;
      else process.env.NODE_DEBUG = env;
    }
    // c allocates the page, so it owns it and every hint names it, and writes it last.
    const at = await c.run<number>(`const p = await dsm.transaction((tx) => { const p = tx.alloc(4096, { model: args.model }); tx.setRoot('s', p); return p; }); dsm.u32[p / 4] = 7; return p;`, { model });
    // The token at b: its leave needs nothing of c.
    await b.run('await dsm.transaction(() => { dsm.u32[3000 * 1024] = 1; });');
    await settle([a, b, c]);
    const sent = (n: RemoteNode, to: RemoteNode, type: number) => n.stderr.split(`node ${n.nodeId} -> ${to.nodeId}: type ${type} `).length - 1;
    const got = (n: RemoteNode, from: RemoteNode, type: number) => n.stderr.split(`node ${n.nodeId} <- ${from.nodeId}: type ${type} `).length - 1;

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
    // b's prefetch ended, one way or the other, rather than hanging.
    expect(['here', 'ERR_DSM_CLOSED']).toContain(await b.run('return globalThis.pf;'));

    for (const n of [a, c]) {
      // A lost page reads as zeros and fails the next call with ERR_DSM_PAGE_LOST.
      expect(await n.run('const v = dsm.u32[args.at / 4]; await dsm.transaction(() => undefined); return v;', { at })).toBe(7);
    }
    await settle([a, c]);
    for (const n of [a, b, c]) expect(n.stderr).not.toMatch(/lost|ERR_DSM_PAGE_LOST/);
  }, 120_000);
});
