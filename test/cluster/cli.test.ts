// The `dsm` command as a user runs it: two `dsm node` processes form a cluster (one runs a
// script that allocates and names an object), `dsm stats` reads a node's figures, a node
// with the wrong secret is refused and exits non-zero, and SIGINT stops a node cleanly.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freeAddress } from './harness';

const CLI = path.resolve(__dirname, '../../dist/cli.js');

class CliNode {
  readonly proc: ChildProcess;
  private out = '';
  private waiters: Array<() => void> = [];
  constructor(args: string[], command = 'node') {
    this.proc = spawn(process.execPath, [CLI, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const take = (d: Buffer) => {
      this.out += d.toString();
      for (const w of this.waiters.splice(0)) w();
    };
    this.proc.stdout!.on('data', take);
    this.proc.stderr!.on('data', take);
  }
  get output(): string {
    return this.out;
  }
  /** Resolves with the first match of `re` in the node's output, waiting for it. */
  async match(re: RegExp): Promise<RegExpMatchArray> {
    for (;;) {
      const m = this.out.match(re);
      if (m) return m;
      if (this.proc.exitCode !== null) throw new Error(`the node exited (${this.proc.exitCode}) without printing ${re}:\n${this.out}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        this.proc.once('exit', () => r());
      });
    }
  }
  /** The exit code (null: ended by a signal). */
  exited(): Promise<number | null> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return Promise.resolve(this.proc.exitCode);
    return new Promise((r) => this.proc.once('exit', (code) => r(code)));
  }
}

function run(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

describe('the dsm command', () => {
  const nodes: CliNode[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    for (const n of nodes.splice(0)) {
      if (n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill('SIGKILL');
      await n.exited();
    }
  });

  it('runs nodes that form a cluster, reports figures, refuses a wrong secret and stops on SIGINT', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dsm-cli-'));
    dirs.push(dir);
    const script = path.join(dir, 'work.js');
    writeFileSync(
      script,
      `module.exports = async (dsm) => {
        const p = await dsm.transaction((tx) => { const p = tx.alloc(64); dsm.u32[p >> 2] = 4242; tx.setRoot('answer', p); return p; });
        console.log('script: allocated at ' + p);
      };`,
    );
    const a = new CliNode(['--listen', '127.0.0.1:0', '--secret', 'cli-secret', '--region-size', '64M', '--script', script]);
    nodes.push(a);
    const [, addr] = await a.match(/listening on (\S+)/);
    await a.match(/script: allocated at \d+/);

    const b = new CliNode(['--listen', '127.0.0.1:0', '--peers', addr, '--secret', 'cli-secret', '--region-size', '64M']);
    nodes.push(b);
    const [, bAddr] = await b.match(/node 1 listening on (\S+)/);
    await a.match(/node 1 joined/);

    const stats = await run(['stats', '--connect', bAddr, '--secret', 'cli-secret', '--json']);
    expect(stats.code).toBe(0);
    const s = JSON.parse(stats.out);
    expect(s.nodeId).toBe(1);
    expect(s.members).toEqual([0, 1]);
    expect(s.counters).toHaveProperty('commits');

    const text = await run(['stats', '--connect', addr, '--secret', 'cli-secret']);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/^nodeId\s+0$/m);
    expect(text.out).toMatch(/^counters\.commits\s+\d+$/m);

    const wrong = await run(['stats', '--connect', addr, '--secret', 'not-it']);
    expect(wrong.code).toBe(1);
    expect(wrong.out).toContain('ERR_DSM_AUTH_FAILED');
    const intruder = await run(['node', '--listen', '127.0.0.1:0', '--peers', addr, '--secret', 'not-it', '--region-size', '64M']);
    expect(intruder.code).toBe(1);
    expect(intruder.out).toContain('ERR_DSM_AUTH_FAILED');
    expect(intruder.out).not.toContain('Warning');

    b.proc.kill('SIGINT');
    expect(await b.exited()).toBe(0);
    await a.match(/node 1 left/);
    a.proc.kill('SIGINT');
    expect(await a.exited()).toBe(0);
  });

  it('runs a page server and a node with durability disk, both serving Prometheus metrics', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dsm-cli-'));
    dirs.push(dir);
    const ps = new CliNode(['--dir', path.join(dir, 'store'), '--listen', '127.0.0.1:0', '--secret', 'cli-secret', '--region-size', '16M', '--metrics', '127.0.0.1:0'], 'pageserver');
    nodes.push(ps);
    const [, psAddr] = await ps.match(/page server \(node 0\) listening on (\S+)/);
    const [, psMetrics] = await ps.match(/metrics on (http:\S+)/);
    const script = path.join(dir, 'work.js');
    writeFileSync(script, `module.exports = async (dsm) => { for (let i = 0; i < 10; i++) await dsm.transaction(() => { dsm.u32[3000 * 1024] += 1; }); console.log('script: committed'); };`);
    const n = new CliNode(['--listen', '127.0.0.1:0', '--peers', psAddr, '--secret', 'cli-secret', '--region-size', '16M', '--durability', 'disk', '--metrics', '127.0.0.1:0', '--script', script]);
    nodes.push(n);
    const [, nMetrics] = await n.match(/metrics on (http:\S+)/);
    await n.match(/script: committed/);
    const scrape = async (url: string) => (await fetch(url)).text();
    const pm = await scrape(psMetrics);
    expect(pm).toMatch(/^dsm_page_store_fsyncs\{node="0"\} [1-9]\d*$/m);
    expect(pm).toMatch(/^dsm_page_store_durable_time\{node="0"\} [1-9]\d*$/m);
    const nm = await scrape(nMetrics);
    expect(nm).toMatch(/^dsm_counters_commits\{node="1"\} (\d+)$/m);
    expect(Number(nm.match(/^dsm_protocol_durable_time\{node="1"\} (\d+)$/m)?.[1])).toBeGreaterThan(0);
    n.proc.kill('SIGINT');
    expect(await n.exited()).toBe(0);
    ps.proc.kill('SIGINT');
    expect(await ps.exited()).toBe(0);
  });

  it('a page server stopped and started again with the same command joins the cluster its node still runs; --found founds beside it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dsm-cli-'));
    dirs.push(dir);
    const psArgs = ['--dir', path.join(dir, 'store'), '--listen', await freeAddress(), '--secret', 'cli-secret', '--region-size', '16M'];
    const ps = new CliNode(psArgs, 'pageserver');
    nodes.push(ps);
    const [, psAddr] = await ps.match(/page server \(node 0\) listening on (\S+)/);
    const n = new CliNode(['--listen', '127.0.0.1:0', '--peers', psAddr, '--secret', 'cli-secret', '--region-size', '16M', '--durability', 'disk']);
    nodes.push(n);
    await n.match(/listening on/);
    ps.proc.kill('SIGINT');
    expect(await ps.exited()).toBe(0);
    const again = new CliNode(psArgs, 'pageserver');
    nodes.push(again);
    const [, id] = await again.match(/page server \(node (\d+)\) listening on \S+, joined the cluster at time \d+/);
    expect(Number(id)).toBeGreaterThan(0);
    again.proc.kill('SIGINT');
    expect(await again.exited()).toBe(0);
    const beside = new CliNode([...psArgs, '--found'], 'pageserver');
    nodes.push(beside);
    await beside.match(/page server \(node 0\) listening on \S+, store at time \d+/);
    beside.proc.kill('SIGINT');
    expect(await beside.exited()).toBe(0);
  });

  it('refuses a missing script before joining, and leaves the cluster properly when a script throws', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dsm-cli-'));
    dirs.push(dir);
    const a = new CliNode(['--listen', '127.0.0.1:0', '--secret', 'cli-secret', '--region-size', '16M']);
    nodes.push(a);
    const [, addr] = await a.match(/listening on (\S+)/);
    const missing = await run(['node', '--peers', addr, '--secret', 'cli-secret', '--region-size', '16M', '--script', path.join(dir, 'nope.js')]);
    expect(missing.code).toBe(1);
    expect(missing.out).toContain('nope.js does not exist');
    expect(missing.out).not.toContain('listening on'); // it never joined
    const bad = path.join(dir, 'bad.js');
    writeFileSync(bad, `module.exports = async (dsm) => { await dsm.transaction((tx) => { dsm.u32[tx.alloc(4) >> 2] = 5; }); throw new Error('boom in the script'); };`);
    const thrown = await run(['node', '--peers', addr, '--secret', 'cli-secret', '--region-size', '16M', '--script', bad]);
    expect(thrown.code).toBe(1);
    // Named as the script's failure, with where it was thrown (its author's file and line).
    expect(thrown.out).toContain(`dsm: the script ${bad} failed: Error: boom in the script`);
    expect(thrown.out.split('\n').some((l) => l.trimStart().startsWith('at ') && l.includes(`${bad}:1:`))).toBe(true);
    // A graceful leave, not a member that vanished: the founder says it left.
    const [, id] = thrown.out.match(/node (\d+) listening/)!;
    await a.match(new RegExp(`node ${id} left`));
    expect(a.output).not.toContain('lost node');
  });

  it('says what to do when nothing listens at an address or a snapshot file cannot be written', async () => {
    const addr = await freeAddress();
    for (const args of [
      ['stats', '--connect', addr, '--secret', 's'],
      ['node', '--peers', addr, '--secret', 's', '--region-size', '16M', '--join-timeout', '2000'],
    ]) {
      const r = await run(args);
      expect(r.code).toBe(1);
      expect(r.out).toContain(`cannot reach ${addr} (connection refused: nothing listens there)`);
      expect(r.out).not.toMatch(/^\s+at /m); // a message, not a stack trace
    }
    expect((await run(['stats', '--connect', addr, '--secret', 's'])).out).toContain('ERR_DSM_UNREACHABLE');
    // An address without a port is refused as such (it was Node's "Port should be >= 0 and < 65536 ... NaN").
    for (const cmd of [['stats'], ['snapshot', '--out', path.join(os.tmpdir(), 'never.snap')]]) {
      const bad = await run([...cmd, '--connect', '127.0.0.1', '--secret', 's']);
      expect(bad.code).toBe(1);
      expect(bad.out).toContain('--connect must be "host:port"');
    }
    // The node's service says at once that it keeps trying, as a plain line of the command.
    const joining = await run(['node', '--peers', addr, '--secret', 's', '--region-size', '16M', '--join-timeout', '1000']);
    expect(joining.out).toMatch(new RegExp(`^dsm: warning: cannot reach ${addr.replace(/\./g, '\\.')} .*trying again for up to 1 s`, 'm'));
    expect(joining.out).not.toContain('--trace-warnings');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dsm-cli-'));
    dirs.push(dir);
    const out = path.join(dir, 'no-such-dir', 'heap.snapshot');
    const snap = await run(['snapshot', '--connect', addr, '--secret', 's', '--out', out]);
    expect(snap.code).toBe(1);
    expect(snap.out).toContain(`ERR_DSM_SNAPSHOT: cannot write the snapshot to ${out}: its directory ${path.dirname(out)} does not exist`);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a listen or metrics address it cannot have before joining, so no member joins and vanishes', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const busy = `127.0.0.1:${(taken.address() as net.AddressInfo).port}`;
    try {
      const a = new CliNode(['--listen', '127.0.0.1:0', '--secret', 'cli-secret', '--region-size', '16M']);
      nodes.push(a);
      const [, addr] = await a.match(/listening on (\S+)/);
      const inUse = `ERR_DSM_LISTEN: cannot listen on ${busy}: the address is in use`;
      const listen = await run(['node', '--listen', busy, '--secret', 'cli-secret', '--region-size', '16M']);
      expect(listen.code).toBe(1);
      expect(listen.out).toContain(inUse);
      const metrics = await run(['node', '--peers', addr, '--secret', 'cli-secret', '--region-size', '16M', '--metrics', busy]);
      expect(metrics.code).toBe(1);
      expect(metrics.out).toContain(inUse);
      expect(metrics.out).not.toContain('listening on'); // refused before the node started
      const bad = await run(['node', '--secret', 'cli-secret', '--region-size', '16M', '--metrics', 'nonsense']);
      expect(bad.out).toContain('ERR_DSM_INVALID_OPTION: the metrics address must be "host:port"');
      // The founder saw nobody join (or vanish).
      expect(await run(['stats', '--connect', addr, '--secret', 'cli-secret', '--json']).then((r) => JSON.parse(r.out).members)).toEqual([0]);
      expect(a.output).not.toMatch(/joined|lost node/);
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });

  it('prints its version, the one every node of a cluster must share', async () => {
    const r = await run(['--version']);
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe(JSON.parse(readFileSync(path.join(__dirname, '../../package.json'), 'utf8')).version);
  });

  it('refuses a benchmark suite that does not exist, or a bad run count, without touching the results', async () => {
    const results = path.resolve(__dirname, '../../benchmarks/results');
    const before = readdirSync(results).map((f) => [f, statSync(path.join(results, f)).mtimeMs]);
    for (const [args, says] of [
      [['bench', 'no-such-suite'], 'no benchmark suite matches "no-such-suite"'],
      [['bench', 'core', '--runs', '0'], '--runs must be a whole number of runs, 1 or more, got 0'],
    ] as const) {
      const r = await run([...args]);
      expect(r.code).toBe(2);
      expect(r.out).toContain(says);
      expect(r.out).toMatch(/suites: .*core.*peers/);
    }
    // --help prints the same usage and runs nothing.
    const help = await run(['bench', '--help']);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^usage: dsm bench \[suite\] \[--runs N\]; suites: .*core/);
    expect(readdirSync(results).map((f) => [f, statSync(path.join(results, f)).mtimeMs])).toEqual(before);
  });
});
