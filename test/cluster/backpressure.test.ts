// A peer that stops reading (a stopped process) slows its senders instead of growing their
// memory: the connection reports itself backlogged, whenDrained() waits until the peer
// reads again, and a sender that ignores all that has the connection closed with reason
// 'backpressure' before more than maxQueuedBytes pile up.
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SECRET } from './harness';

const load = createRequire(__filename);
const { Transport } = load(path.join(__dirname, '../../dist/service/transport.js'));
const MiB = 1 << 20;

/** The fixture peer process, with its stdout lines. */
class PeerProcess {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  readonly exited: Promise<void>;
  constructor(address: string) {
    this.proc = spawn(process.execPath, [path.join(__dirname, 'fixtures/transport_peer.js'), address], { stdio: ['pipe', 'pipe', 'inherit'] });
    let buf = '';
    this.proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        this.lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    this.exited = new Promise((r) => this.proc.on('exit', () => r()));
  }
  async line(test: (l: string) => boolean): Promise<string> {
    const end = Date.now() + 60_000;
    for (;;) {
      const l = this.lines.find(test);
      if (l) return l;
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) throw new Error('the peer process exited');
      if (Date.now() > end) throw new Error('timed out waiting for the peer');
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }
}

describe('backpressure', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  /** A transport in this process and a peer process connected to it; resolves with our side of the connection. */
  async function connectedPeer(opts: Record<string, unknown>) {
    const warnings: string[] = [];
    // Silence is not death here: the stopped peer must be kept until the bytes decide.
    const t = new Transport({ secret: SECRET, heartbeatMs: 200, deadAfterMs: 600_000, logger: { warn: (m: string) => warnings.push(m), error: () => undefined }, ...opts });
    cleanup.push(() => t.close());
    const address = await t.listen();
    const accepted = new Promise<any>((r) => t.once('connection', r));
    const peer = new PeerProcess(address);
    cleanup.push(async () => {
      peer.proc.kill('SIGCONT');
      peer.kill();
      await peer.exited;
    });
    await peer.line((l) => l === 'connected');
    return { c: await accepted, peer, warnings };
  }

  it('a stopped peer makes its connection backlogged; whenDrained() resolves once it reads again, with every byte delivered', async () => {
    const { c, peer } = await connectedPeer({ backlogBytes: 4 * MiB });
    peer.proc.kill('SIGSTOP');
    const chunk = Buffer.alloc(MiB, 1);
    let backloggedEvents = 0;
    let firstRefusal: number | undefined;
    c.on('backlogged', () => backloggedEvents++);
    // More than the kernel's socket buffers can take (32 MiB at most here), so most of it
    // stays queued in this process while the peer is stopped.
    const total = 128;
    for (let i = 0; i < total; i++) if (!c.send(20, chunk) && firstRefusal === undefined) firstRefusal = i;
    const sent = total * chunk.length;
    expect(firstRefusal).toBeLessThanOrEqual(5);
    expect(backloggedEvents).toBe(1);
    let drained = false;
    const whenDrained = c.whenDrained().then(() => (drained = true));
    const drainEvent = new Promise((r) => c.once('drain', r));
    // The peer is stopped: the kernel takes what fits, then nothing moves.
    await new Promise((r) => setTimeout(r, 300));
    expect(c.backlogged).toBe(true);
    expect(c.queuedBytes).toBeGreaterThan(64 * MiB);
    expect(drained).toBe(false);
    peer.proc.kill('SIGCONT');
    await whenDrained;
    await drainEvent;
    expect(c.backlogged).toBe(false);
    expect(c.isClosed).toBe(false);
    // Delivered, not dropped: the peer counts every payload byte.
    for (;;) {
      peer.proc.stdin!.write('count\n');
      const want = `got ${sent}`;
      const l = await peer.line((x) => x.startsWith('got '));
      if (l === want) break;
      peer.lines.splice(peer.lines.indexOf(l), 1);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it('a sender that ignores the backlog has the connection closed for backpressure before maxQueuedBytes pile up', async () => {
    const limit = 24 * MiB;
    const { c, peer, warnings } = await connectedPeer({ backlogBytes: 2 * MiB, maxQueuedBytes: limit, maxFrame: MiB });
    peer.proc.kill('SIGSTOP');
    const reason = new Promise((r) => c.once('close', r));
    const chunk = Buffer.alloc(MiB - 64, 2);
    let most = 0;
    let refusedWritten = 0;
    // At most 1 GiB: a connection without a bound would take it all.
    for (let i = 0; i < 1024 && !c.isClosed; i++) {
      c.send(20, chunk, () => refusedWritten++);
      most = Math.max(most, c.queuedBytes);
    }
    expect(c.isClosed).toBe(true);
    expect(most).toBeLessThanOrEqual(limit);
    expect(await reason).toBe('backpressure');
    expect(warnings.some((w) => /exceed the limit of 25165824/.test(w))).toBe(true);
    // The frames still queued are given back (so pooled buffers are not lost).
    await new Promise((r) => setImmediate(r));
    expect(refusedWritten).toBeGreaterThan(0);
    // The peer sees the connection go once it runs again.
    peer.proc.kill('SIGCONT');
    await peer.line((l) => l.startsWith('closed'));
  });
});
