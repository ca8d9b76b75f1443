// The links' share of backpressure: which members' connections are backlogged (with a real
// peer process that stops reading), and the bound on frames held for a member we have no
// connection to.
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SECRET } from './harness';

const load = createRequire(__filename);
const { Transport } = load(path.join(__dirname, '../../dist/service/transport.js'));
const { Links } = load(path.join(__dirname, '../../dist/service/links.js'));
const MiB = 1 << 20;
const MEMBER = 7;

/** What the cluster would do with the links' events, recorded. */
function events(members: number[] = [MEMBER]) {
  const lost: Array<[number, string]> = [];
  return {
    lost,
    ev: {
      message: () => undefined,
      lost: (id: number, reason: string) => lost.push([id, reason]),
      bound: () => undefined,
      isMember: (id: number) => members.includes(id),
      me: () => 0,
    },
  };
}

describe('links', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  it('frames held for an unconnected member are bounded: past the bound they are given back and the member is lost', async () => {
    const { ev, lost } = events();
    const links = new Links(ev, 4 * MiB);
    let givenBack = 0;
    const frame = Buffer.alloc(MiB);
    for (let i = 0; i < 4; i++) expect(links.send(MEMBER, 20, frame, () => givenBack++)).toBe(true);
    expect(links.queuedBytes()[MEMBER]).toBe(4 * MiB);
    expect(links.send(MEMBER, 20, frame, () => givenBack++)).toBe(false);
    // Every held payload is given back (pooled buffers are reused), nothing stays held.
    expect(givenBack).toBe(5);
    expect(links.queuedFor()).toEqual([]);
    // Reported on the next tick, as the transport's own overflow (a broadcast loop is not re-entered).
    expect(lost).toEqual([]);
    await new Promise((r) => process.nextTick(r));
    expect(lost).toHaveLength(1);
    expect(lost[0][0]).toBe(MEMBER);
    expect(lost[0][1]).toMatch(/backpressure/);
    // A non-member's frames are never held.
    expect(links.send(99, 20, frame)).toBe(false);
    expect(links.queuedFor()).toEqual([]);
  });

  it("a member whose peer stops reading is backlogged until it reads again; whenAllDrained() waits for it", async () => {
    const t = new Transport({ secret: SECRET, heartbeatMs: 200, deadAfterMs: 600_000, backlogBytes: MiB });
    cleanup.push(() => t.close());
    const address = await t.listen();
    const accepted = new Promise<any>((r) => t.once('connection', r));
    const peer: ChildProcess = spawn(process.execPath, [path.join(__dirname, 'fixtures/transport_peer.js'), address, 'session'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise((r) => peer.on('exit', r));
    cleanup.push(async () => {
      peer.kill('SIGCONT');
      peer.kill('SIGKILL');
      await exited;
    });
    const c = await accepted;
    const { ev, lost } = events();
    const links = new Links(ev);
    let allDrained = 0;
    links.onAllDrained(() => allDrained++);
    links.bind(MEMBER, c);
    // Frames wait for the peer's Resume (the session's first frame): one small frame is
    // kept until then.
    links.send(MEMBER, 20, Buffer.alloc(1));
    while (links.queuedFor().length > 0) await new Promise((r) => setTimeout(r, 5));
    expect(links.backlogged).toBe(false);
    peer.kill('SIGSTOP');
    const chunk = Buffer.alloc(MiB - 64, 3);
    // Far more than the kernel's socket buffers take (a few MiB here) while the peer reads nothing.
    for (let i = 0; i < 24; i++) links.send(MEMBER, 20, chunk);
    await new Promise((r) => setTimeout(r, 50));
    expect(links.backlogged).toBe(true);
    expect(links.isBacklogged(MEMBER)).toBe(true);
    let drained = false;
    const waiting = links.whenAllDrained().then(() => (drained = true));
    const one = links.whenDrained(MEMBER);
    await new Promise((r) => setTimeout(r, 50));
    expect(drained).toBe(false);
    peer.kill('SIGCONT');
    await waiting;
    expect(await one).toBe(true);
    expect(links.backlogged).toBe(false);
    expect(allDrained).toBe(1);
    expect(lost).toEqual([]);
    // A closed connection ends the wait too, and says so.
    peer.kill('SIGSTOP');
    for (let i = 0; i < 24; i++) links.send(MEMBER, 20, chunk);
    expect(links.backlogged).toBe(true);
    const closed = links.whenDrained(MEMBER);
    c.close('local');
    expect(await closed).toBe(false);
    expect(links.backlogged).toBe(false);
    expect(lost).toEqual([[MEMBER, 'local']]);
  });

  it('a session outlives its connections: frames cut off with one arrive on the next, each once and in order, both ways', async () => {
    const ta = new Transport({ secret: SECRET, heartbeatMs: 200, deadAfterMs: 600_000 });
    const tb = new Transport({ secret: SECRET, heartbeatMs: 200, deadAfterMs: 600_000 });
    cleanup.push(() => ta.close(), () => tb.close());
    const address = await ta.listen();
    const got: Record<number, number[]> = { 1: [], 2: [] };
    let wake: () => void = () => undefined;
    const node = (me: number, other: number) =>
      new Links({
        message: (_from: number, _type: number, p: Buffer) => {
          got[me].push(p.readUInt32LE(0));
          wake();
        },
        lost: () => undefined,
        bound: () => undefined,
        isMember: (id: number) => id === other,
        me: () => me,
      });
    const a = node(1, 2);
    const b = node(2, 1);
    /** A new connection between them, bound on both sides (b dials, as the higher id does). */
    const connect = async () => {
      const accepted = new Promise<any>((r) => ta.once('connection', r));
      const cb = await tb.connect(address);
      const ca = await accepted;
      a.bind(2, ca);
      b.bind(1, cb);
      return { ca, cb };
    };
    const frame = (i: number) => {
      const p = Buffer.alloc(4096);
      p.writeUInt32LE(i, 0);
      return p;
    };
    const N = 3000;
    let { ca } = await connect();
    for (let i = 0; i < N; i++) {
      a.send(2, 20, frame(i));
      b.send(1, 20, frame(i));
      if (i % 1000 === 500) {
        // Cut off in the middle of the traffic: what the sockets held, unread or unsent, is gone.
        ca.lost('cut');
        ({ ca } = await connect());
      }
    }
    while (got[1].length < N || got[2].length < N) await new Promise<void>((r) => (wake = r));
    const all = Array.from({ length: N }, (_, i) => i);
    expect(got[2]).toEqual(all);
    expect(got[1]).toEqual(all);
    // Acknowledged in the end: nothing is kept any more.
    while (a.queuedFor().length + b.queuedFor().length > 0) await new Promise((r) => setTimeout(r, 20));

    // Frames past the bound kept for a member without a connection are given up; when it
    // comes back it is told to skip them (Msg.Skip), and the session goes on after them.
    ca.lost('cut');
    const small = new Links(
      {
        message: () => undefined,
        lost: () => undefined,
        bound: () => undefined,
        isMember: (id: number) => id === 2,
        me: () => 1,
      },
      64 * 1024,
    );
    expect(small.send(2, 20, frame(0))).toBe(true);
    for (let i = 1; i < 64 && small.send(2, 20, frame(i)); i++);
    expect(small.queuedFor()).toEqual([]);
    expect(small.send(2, 20, frame(N + 1))).toBe(true);
    got[2].length = 0;
    // The member's side of the session: b, which has handled the N frames of a's session;
    // `small` has handled none of b's. A new session for this part: b forgets the old one.
    b.drop(1, 'test');
    const accepted = new Promise<any>((r) => ta.once('connection', r));
    const cb = await tb.connect(address);
    small.bind(2, await accepted);
    b.bind(1, cb);
    while (got[2].length < 1) await new Promise<void>((r) => (wake = r));
    expect(got[2]).toEqual([N + 1]);
  });

  it('a backlogged connection closed for backpressure ends a wait for all to drain and no longer counts for its member', async () => {
    const child = spawn(process.execPath, [path.join(__dirname, 'fixtures/links_overflow.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    // A wait that spins never returns: the child is killed after a generous time.
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await exited;
    clearTimeout(timer);
    const peer = Number(/^peer (\d+)$/m.exec(out)?.[1]);
    if (peer > 0) {
      try {
        process.kill(peer, 'SIGKILL');
      } catch {
        // Gone already: the child ended it.
      }
    }
    expect(out.trim().split('\n').at(-1)).toBe('drained');
    expect(code).toBe(0);
  }, 90_000);
});
