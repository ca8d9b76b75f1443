// The commit token's bookkeeping of transfers (lib/service/token.ts), with the links as
// plain callbacks: a token lost with a connection is sent again only when the member it went
// to says it never arrived, and a copy that crosses the original is never taken twice.
import { describe, expect, it } from 'vitest';
import type { TokenSent, TokenState } from '../../lib/service/protocol';
import { CommitToken } from '../../lib/service/token';

function node(id: number, members: number[]) {
  const sent: Array<{ to: number; t: TokenState }> = [];
  const checks: Array<{ to: number; t: TokenSent }> = [];
  const token = new CommitToken({
    me: () => id,
    sendToken: (to, t) => sent.push({ to, t }),
    broadcastRequest: () => undefined,
    reclaim: () => undefined,
    idle: () => undefined,
    reachable: (m) => members.includes(m),
    requested: (pass) => pass(),
    checkArrival: (to, t) => checks.push({ to, t }),
  });
  return { token, sent, checks };
}

const ms = [1, 2].map((id) => ({ id, address: `127.0.0.1:${id}` }));

describe('the commit token across a connection that ends', () => {
  it('asks, on a new connection, about the token it sent last; sends it again only if it never arrived; never takes a copy twice', () => {
    const a = node(1, [1, 2]);
    const b = node(2, [1, 2]);
    a.token.found(ms);
    a.token.onRequest(2, 1);
    expect(a.sent).toHaveLength(1);
    const t = a.sent[0].t;
    expect(a.sent[0].to).toBe(2);

    // The connection to node 2 is bound again: node 1 asks about the token it sent.
    a.token.linkBound(2);
    expect(a.checks).toEqual([{ to: 2, t: { generation: t.generation, hops: t.hops } }]);
    a.token.linkBound(1);
    expect(a.checks).toHaveLength(1);

    // Node 2 never got it: it says so, and node 1 hands it over again.
    expect(b.token.missing(a.checks[0].t)).toBe(true);
    const again = a.token.lost(2, a.checks[0].t);
    expect(again).toBe(t);
    // A TokenMissing naming another transfer, or from another member, is not acted on.
    expect(a.token.lost(2, { generation: t.generation, hops: t.hops - 1 })).toBeUndefined();
    expect(a.token.lost(3, a.checks[0].t)).toBeUndefined();

    // Node 2 takes it once; a second copy (the original after all, crossing the one sent
    // again) is dropped, and node 2 no longer says it is missing.
    expect(b.token.onToken(again!)).toBe('taken');
    expect(b.token.held).toBe(true);
    expect(b.token.onToken({ ...t })).toBe('again');
    expect(b.token.missing(a.checks[0].t)).toBe(false);
  });

  it('does not ask about a token that came back, nor stand behind one a regeneration replaced', async () => {
    const a = node(1, [1, 2]);
    const b = node(2, [1, 2]);
    a.token.found(ms);
    // Node 2 wants the token (its request, seq 1, reaches node 1), gets it, commits, releases.
    const wanted = b.token.acquire();
    a.token.onRequest(2, 1);
    const t = a.sent[0].t;
    expect(b.token.onToken(t)).toBe('taken');
    b.token.release(await wanted);
    // Node 2 passes it back: node 1 holds it, and asks node 2 nothing on a new connection.
    b.token.onRequest(1, 1);
    expect(b.sent).toHaveLength(1);
    expect(a.token.onToken(b.sent[0].t)).toBe('taken');
    a.token.linkBound(2);
    expect(a.checks).toHaveLength(0);
    // A token void by a regeneration is never said missing, nor sent again.
    a.token.onRequest(2, 2);
    const later = a.sent[1].t;
    const named = { generation: later.generation, hops: later.hops };
    expect(b.token.missing(named)).toBe(true);
    for (const x of [a, b]) {
      // A recovery's outcome: the token was regenerated under a higher ballot.
      x.token.holdArrivals();
      x.token.endHold(later.generation + 65536);
    }
    expect(b.token.missing(named)).toBe(false);
    expect(a.token.lost(2, named)).toBeUndefined();
    a.token.linkBound(2);
    expect(a.checks).toHaveLength(0);
  });
});
