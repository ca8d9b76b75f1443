// Strangers are bounded before they prove the secret: a frame announced larger than a
// handshake needs closes the connection at its header (nothing of it is buffered), only a
// few connections may be in their handshake at once (more are closed unread, and the log
// says so once per few seconds, not once per connection), and a handshake that does not
// finish in time is closed, after which legitimate peers get in again.
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, SECRET, settle } from './harness';

const load = createRequire(__filename);
const dist = path.join(__dirname, '../../dist');
const { Transport } = load(path.join(dist, 'service/transport.js'));
const { FrameDecoder, encodeHeader, PRE_AUTH_MAX_FRAME, FrameType } = load(path.join(dist, 'service/frame.js'));
const CLUSTER_ID = 0x44534d01; // the default cluster id (lib/service/handshake.ts)
const AT = 3000 * 1024;

/** A raw socket that records what the node sends it and when the node closes it. */
class RawPeer {
  readonly socket: net.Socket;
  received = 0;
  closed = false;
  readonly connected: Promise<void>;
  readonly gone: Promise<void>;
  constructor(address: string) {
    const i = address.lastIndexOf(':');
    this.socket = net.connect(Number(address.slice(i + 1)), address.slice(0, i));
    this.socket.on('error', () => undefined);
    this.socket.on('data', (d: Buffer) => (this.received += d.length));
    this.connected = new Promise((r) => this.socket.once('connect', () => r()));
    this.gone = new Promise((r) =>
      this.socket.once('close', () => {
        this.closed = true;
        r();
      }),
    );
  }
}

async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function header(payloadLength: number, type = FrameType.nonce): Buffer {
  return encodeHeader(CLUSTER_ID, type, payloadLength);
}

describe('frame size before authentication', () => {
  it('the decoder applies a lowered or raised limit from the very next frame', () => {
    const small = Buffer.concat([header(32), Buffer.alloc(32)]);
    const big = Buffer.concat([header(100_000, 20), Buffer.alloc(100_000)]);
    const d = new FrameDecoder(CLUSTER_ID, PRE_AUTH_MAX_FRAME);
    d.feed(Buffer.concat([small, big]));
    expect(d.next().payload.length).toBe(32);
    // What a handshake's end does: the frame behind it in the same chunk may be large.
    d.maxFrame = 1 << 20;
    expect(d.next().payload.length).toBe(100_000);
    const strict = new FrameDecoder(CLUSTER_ID, PRE_AUTH_MAX_FRAME);
    strict.feed(Buffer.concat([small, big]));
    strict.next();
    expect(() => strict.next()).toThrow(/exceeds the limit of 4096/);
  });

  it('a transport closes a stranger at the header of a frame larger than a handshake needs', async () => {
    // No handshake time-out in reach: only the size check can close the connection.
    const t = new Transport({ secret: SECRET, handshakeTimeoutMs: 600_000 });
    const address = await t.listen();
    const rejected: string[] = [];
    t.on('rejected', (r: { reason: string }) => rejected.push(r.reason));
    try {
      const p = new RawPeer(address);
      await p.connected;
      // 1 MiB announced: well under the 64 MiB an authenticated peer may send.
      p.socket.write(header(1 << 20));
      await p.gone;
      expect(rejected).toEqual([expect.stringMatching(/exceeds the limit of 4096 bytes/)]);
      // A handshake-sized frame is still fine: a well-behaved peer gets in.
      const peer = new Transport({ secret: SECRET });
      const accepted = new Promise((r) => t.once('connection', r));
      const c = await peer.connect(address);
      await accepted;
      c.close();
      await peer.close();
    } finally {
      await t.close();
    }
  });

  it('a node closes a stranger announcing a 64 MiB frame right after its header, and goes on serving', async () => {
    const h = new Harness();
    try {
      const a = await h.start();
      const p = new RawPeer(a.address);
      await p.connected;
      p.socket.write(header((64 << 20) - 16));
      await p.gone;
      // Closed for the size (not for silence: the handshake time-out is 10 s away).
      await until(() => /exceeds the limit of 4096 bytes/.test(a.stderr), 'the refusal in the log');
      expect(a.stderr).not.toMatch(/no handshake/);
      const b = await h.start({ peers: [a.address] });
      await b.run('await dsm.transaction(() => { dsm.u32[args.at] = 7; });', { at: AT });
      await settle([a, b]);
      expect(await a.run('return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })).toBe(7);
    } finally {
      await h.close();
    }
  });
});

describe('connections in their handshake', () => {
  it('a connection closed before its handshake ends (a port check, a peer closing as it connects) is no warning; bad bytes still are', async () => {
    const warnings: string[] = [];
    const rejected: string[] = [];
    const t = new Transport({ secret: SECRET, logger: { warn: (m: string) => warnings.push(m), error: () => undefined } });
    t.on('rejected', (r: { reason: string }) => rejected.push(r.reason));
    const address = await t.listen();
    try {
      const check = new RawPeer(address);
      await check.connected;
      check.socket.end();
      await until(() => rejected.length === 1, 'the port check counted as refused');
      const stranger = new RawPeer(address);
      await stranger.connected;
      stranger.socket.write(Buffer.alloc(64, 0xee));
      await stranger.gone;
      await until(() => rejected.length === 2, 'the stranger refused');
      expect(warnings.filter((w) => w.includes('closed the connection during the handshake'))).toEqual([]);
      expect(warnings.filter((w) => w.startsWith('refused a connection from'))).toHaveLength(1);
    } finally {
      await t.close();
    }
  });

  it('only maxHandshakes strangers are kept; the rest are closed unread, and one log line says so', async () => {
    const warnings: string[] = [];
    const t = new Transport({ secret: SECRET, handshakeTimeoutMs: 600_000, maxHandshakes: 4, logger: { warn: (m: string) => warnings.push(m), error: () => undefined } });
    const address = await t.listen();
    const peers: RawPeer[] = [];
    try {
      for (let i = 0; i < 20; i++) peers.push(new RawPeer(address));
      await Promise.all(peers.map((p) => p.connected));
      await until(() => peers.filter((p) => p.closed).length === 16, '16 refusals');
      const kept = peers.filter((p) => !p.closed);
      expect(kept).toHaveLength(4);
      // The kept ones got the node's nonce; the refused ones not a byte.
      await until(() => kept.every((p) => p.received >= 42), 'the nonces');
      expect(peers.filter((p) => p.closed).every((p) => p.received === 0)).toBe(true);
      // One line at once, the rest summed up in the next few seconds' line.
      const lines = warnings.filter((w) => /refused \d+ connection/.test(w));
      expect(lines.length).toBeGreaterThanOrEqual(1);
      expect(lines.length).toBeLessThanOrEqual(2);
      // A slot freed (a stranger leaves) admits the next peer.
      kept[0].socket.destroy();
      await kept[0].gone;
      const peer = new Transport({ secret: SECRET });
      const c = await peer.connect(address);
      c.close();
      await peer.close();
    } finally {
      for (const p of peers) p.socket.destroy();
      await t.close();
    }
  });

  it('a node stays healthy under 100 idle strangers, times them out, and then admits a legitimate peer', async () => {
    const h = new Harness();
    const peers: RawPeer[] = [];
    try {
      const a = await h.start();
      for (let i = 0; i < 100; i++) peers.push(new RawPeer(a.address));
      await Promise.all(peers.map((p) => p.connected));
      // 32 are in their handshake (the node's default), 68 closed at once and unread.
      await until(() => peers.filter((p) => p.closed).length >= 68, 'the refusals');
      expect(peers.filter((p) => p.closed && p.received === 0)).toHaveLength(68);
      // The node itself is unharmed meanwhile.
      await a.run('await dsm.transaction(() => { dsm.u32[args.at] = 3; });', { at: AT });
      // A peer dialling now is refused while the slots are taken, retries, and gets in
      // once the idle strangers' handshakes time out.
      const joining = h.start({ peers: [a.address] });
      await Promise.all(peers.map((p) => p.gone));
      expect(peers.filter((p) => p.received >= 42)).toHaveLength(32);
      const b = await joining;
      await b.run('await dsm.transaction(() => { dsm.u32[args.at] += 1; });', { at: AT });
      await settle([a, b]);
      expect(await a.run('return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })).toBe(4);
      // Rate-limited: a couple of lines for the 68 refusals, not one each.
      const lines = a.stderr.split('\n').filter((l) => /refused \d+ connection/.test(l));
      expect(lines.length).toBeGreaterThanOrEqual(1);
      expect(lines.length).toBeLessThanOrEqual(3);
    } finally {
      for (const p of peers) p.socket.destroy();
      await h.close();
    }
  });
});
