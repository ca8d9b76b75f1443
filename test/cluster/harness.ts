// Starts DSM nodes as real child processes on loopback and drives them over IPC.
// Every node started through a Harness is killed by close(), also when a test fails.
import { type ChildProcess, fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** The compiled stats client, for node processes to load (diagnose). */
const STATS_CLIENT = path.join(__dirname, '../../dist/service/stats_client.js');

export interface RemoteError extends Error {
  code?: string;
}

export class RemoteNode {
  nodeId = -1;
  address = '';
  readonly lines: string[] = [];
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private lineWaiters: Array<{ test: (l: string) => boolean; resolve: (l: string) => void }> = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr = '';

  constructor(readonly proc: ChildProcess) {
    let buf = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.lines.push(line);
        this.lineWaiters = this.lineWaiters.filter((w) => {
          if (!w.test(line)) return true;
          w.resolve(line);
          return false;
        });
      }
    });
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    proc.on('message', (m: { id: number; ok: boolean; value?: unknown; error?: RemoteError }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(Object.assign(new Error(m.error!.message), m.error));
    });
    this.exited = new Promise((resolve) =>
      proc.on('exit', (code, signal) => {
        for (const p of this.pending.values()) p.reject(new Error(`node process exited (${code ?? signal}); stderr:\n${this.stderr}`));
        this.pending.clear();
        resolve({ code, signal });
      }),
    );
  }

  private send(msg: Record<string, unknown>): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.proc.send({ ...msg, id });
    });
  }

  async startPageServer(options: Record<string, unknown>): Promise<this> {
    const r = (await this.send({ cmd: 'pageserver', options })) as { nodeId: number; address: string };
    this.nodeId = r.nodeId;
    this.address = r.address;
    return this;
  }

  async create(options: Record<string, unknown>): Promise<this> {
    const r = (await this.send({ cmd: 'create', options })) as { nodeId: number; address: string };
    this.nodeId = r.nodeId;
    this.address = r.address;
    return this;
  }

  /** Runs `code` (the body of an async function of dsm, args, say, pkg) in the node. */
  run<T = unknown>(code: string, args: unknown = null): Promise<T> {
    return this.send({ cmd: 'run', code, args }) as Promise<T>;
  }

  /** Resolves with the first stdout line (past or future) that passes `test`; rejects if the node exits first. */
  waitForLine(test: (line: string) => boolean): Promise<string> {
    const seen = this.lines.find(test);
    if (seen) return Promise.resolve(seen);
    return Promise.race([
      new Promise<string>((resolve) => this.lineWaiters.push({ test, resolve })),
      this.exited.then(({ code, signal }) => {
        throw new Error(`node exited (${code ?? signal}) before printing the awaited line; stderr:\n${this.stderr}`);
      }),
    ]);
  }

  close(): Promise<unknown> {
    return this.send({ cmd: 'close' });
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
  }

  /**
   * SIGSTOP, resolved once every thread of the process has stopped. kill() returns before
   * they have: the kernel stops the other threads only when the one it woke for the signal
   * runs, and on a loaded machine a service thread already on a CPU read and answered a
   * frame 1.4 ms after the signal was sent. A test that orders frames by stopping processes
   * needs the stop to have happened.
   */
  async stop(): Promise<void> {
    this.kill('SIGSTOP');
    const tasks = `/proc/${this.proc.pid}/task`;
    const state = (tid: string) => {
      try {
        const stat = fs.readFileSync(`${tasks}/${tid}/stat`, 'utf8');
        return stat[stat.lastIndexOf(')') + 2];
      } catch {
        return 'T'; // the thread has ended
      }
    };
    for (let polls = 0; ; polls++) {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) throw new Error(`node process exited while being stopped; stderr:\n${this.stderr}`);
      if (fs.readdirSync(tasks).every((tid) => state(tid) === 'T' || state(tid) === 't')) return;
      if (polls > 30_000) throw new Error('node process not stopped 30 s after SIGSTOP');
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}

export const SECRET = 'test-cluster-secret';

export class Harness {
  readonly nodes: RemoteNode[] = [];
  /** Directories made for this harness's processes, removed by close() once they have exited. */
  private readonly dirs: string[] = [];
  /** Distinct bases let several test files run side by side without sharing anything. */
  constructor(private readonly defaults: Record<string, unknown> = {}) {}

  /** A fresh node process, ready for its first command. */
  protected async spawn(): Promise<RemoteNode> {
    const proc = fork(path.join(__dirname, 'fixtures/remote_node.js'), [], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    const n = new RemoteNode(proc);
    this.nodes.push(n);
    await n.waitForLine((l) => l === 'ready');
    return n;
  }

  async start(options: Record<string, unknown> = {}): Promise<RemoteNode> {
    return (await this.spawn()).create({ regionSize: 16 << 20, secret: SECRET, listen: '127.0.0.1:0', ...this.defaults, ...options });
  }

  /** A page server in its own process (store in `dir`). */
  async pageServer(options: Record<string, unknown> & { dir: string }): Promise<RemoteNode> {
    return (await this.spawn()).startPageServer({ regionSize: 16 << 20, secret: SECRET, listen: '127.0.0.1:0', ...options });
  }

  /** A founder plus `count - 1` members joined through it. */
  async cluster(count: number, options: Record<string, unknown> = {}): Promise<RemoteNode[]> {
    const first = await this.start(options);
    const rest = [];
    for (let i = 1; i < count; i++) rest.push(await this.start({ ...options, peers: [first.address] }));
    return [first, ...rest];
  }

  /**
   * What each node process is doing, for a test that is stuck: its last stdout line, its
   * service warnings and (if it still answers) its protocol state (token, recovery, suspects).
   */
  async diagnose(): Promise<string> {
    const nodes = await Promise.all(
      this.nodes.map(async (n, i) => {
        const warnings = n.stderr.split('\n').filter((l) => l.includes('DSM_')).slice(-6);
        const exit = n.proc.exitCode ?? n.proc.signalCode;
        // Asked from inside the node's process: a node in a network namespace of its own
        // (netns.ts) is not reachable from this one.
        const ask = () => protocolState(n);
        const late = () => new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the process did not answer within 4 s')), 4000).unref());
        const state = exit === null && n.address ? await Promise.race([ask(), late()]).then((p) => JSON.stringify(p), (e: Error) => `(no state: ${e.message})`) : '';
        return (
          `  process ${i} (node ${n.nodeId}): ${n.lines.filter((l) => l.startsWith('H C ')).length} completed, last line "${n.lines[n.lines.length - 1] ?? ''}", ` +
          `exit ${exit ?? 'none'}${warnings.map((w) => `\n    ${w}`).join('')}${state ? `\n    state ${state}` : ''}`
        );
      }),
    );
    return nodes.join('\n');
  }

  /**
   * Runs `body`, failing it after `ms` (generous: a bound, not a timing assumption) with
   * the step it was at and what every node was doing. `step(text)` names the next step.
   */
  async within<T>(ms: number, body: (step: (what: string) => void) => Promise<T>): Promise<T> {
    let at = 'starting';
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(async () => reject(new Error(`stuck for ${ms} ms while ${at}:\n${await this.diagnose()}`)), ms);
    });
    try {
      return await Promise.race([body((what) => (at = what)), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A fresh directory (a page server's store), removed by close() after the processes. */
  tempDir(prefix: string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    this.dirs.push(dir);
    return dir;
  }

  async close(): Promise<void> {
    for (const n of this.nodes) n.kill('SIGKILL');
    await Promise.all(this.nodes.map((n) => n.exited));
    this.nodes.length = 0;
    for (const d of this.dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  }
}

/**
 * Waits until every node has applied every commit any of them made so far. A node sees
 * another's commit only once it arrives (read-only transactions ask nobody), so tests that
 * read on one node what another wrote settle first.
 */
/**
 * A node's protocol state (token, epoch, suspects, connections: lib/service/cluster.ts
 * debugState), asked from inside its process over the stats connection.
 */
export function protocolState<T = Record<string, unknown>>(n: RemoteNode): Promise<T> {
  return n.run<T>('return (await require(args.client).fetchStats((dsm ?? ps).address, args.secret, 3000)).protocol;', { client: STATS_CLIENT, secret: SECRET });
}

export async function settle(nodes: RemoteNode[]): Promise<void> {
  const times = await Promise.all(nodes.map((n) => n.run<number>('return dsm.globalTime;')));
  const t = Math.max(...times);
  await Promise.all(nodes.map((n) => n.run('await dsm.waitForGlobalTime(args.t);', { t })));
}

/** Commits on `n` (an increment of the word at byte `word`) until it holds the commit token. */
export async function takeToken(n: RemoteNode, word: number): Promise<void> {
  await until(`node ${n.nodeId} holding the token`, 20_000, async () => {
    await n.run('await dsm.transaction(() => { dsm.u32[args.word / 4] += 1; });', { word });
    return (await n.run<{ tokenHeld: boolean }>('return dsm.clusterStats();')).tokenHeld ? true : undefined;
  });
}

/** Runs `start` (a node process started by it inherits the environment) with `env` set, then unsets it: test hooks read at start-up. */
export async function withEnv<T>(env: Record<string, string>, start: () => Promise<T>): Promise<T> {
  for (const [k, v] of Object.entries(env)) process.env[k] = v;
  try {
    return await start();
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
  }
}

/** Asks `probe` every 100 ms until it answers something; fails with `what` after `ms` (a generous bound, not a timing assumption). */
export async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A loopback address nothing listens on (its port was free a moment ago): to refuse, or to listen on later. */
export async function freeAddress(): Promise<string> {
  // Below the kernel's ephemeral range: a port the system hands out for port 0 (every other
  // test's listeners and outgoing connections) would be taken, now and then, by a process of
  // a test running beside this one while this one's process restarts on it ("address in use").
  let low = 32768;
  try {
    low = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    // not Linux: the default range's start
  }
  for (;;) {
    const port = 10000 + Math.floor(Math.random() * Math.max(1, low - 10000));
    const srv = net.createServer();
    const ok = await new Promise<boolean>((r) => {
      srv.once('error', () => r(false));
      srv.listen(port, '127.0.0.1', () => r(true));
    });
    if (!ok) continue;
    await new Promise((r) => srv.close(r));
    return `127.0.0.1:${port}`;
  }
}
