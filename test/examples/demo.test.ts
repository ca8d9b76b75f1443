// `npm run demo` as a user runs it: the two-machine bank (both machines on loopback here)
// ends with the money conserved and the counter exact, and bad options are refused before
// anything starts, with the usage line.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const LAUNCH = path.resolve(__dirname, '../../examples/two-machine/launch.mjs');
const BANK = path.resolve(__dirname, '../../examples/two-machine/bank.js');
const HOLD_MASTER_START = path.resolve(__dirname, 'fixtures/hold_master_start.cjs');

function demo(args: string[], script = LAUNCH, nodeArgs: string[] = [], timeoutMs = 120_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...nodeArgs, script, ...args], { timeout: timeoutMs, env: { ...process.env, DSM_SECRET: '' } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, out: stdout + stderr });
    });
  });
}

describe('the two-machine demo', () => {
  it('runs both machines and checks the bank', async () => {
    const { code, out } = await demo(['--no-netns', '--duration', '1', '--durability', 'none']);
    expect(out).toContain('demo OK');
    expect(out).toMatch(/\[master\] total 1000000 \(expected 1000000\).*OK/);
    expect(out).toMatch(/\[slave\] total 1000000 \(expected 1000000\).*OK/);
    // The slave starts once the master listens, on the port the master says it got.
    expect(out).not.toContain('cannot reach');
    expect(code).toBe(0);
  });

  it('stopped from outside, stops both machines and leaves nothing behind', async () => {
    const launcher = spawn(process.execPath, [LAUNCH, '--no-netns', '--duration', '60'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let machines: string[] = [];
    const exited = new Promise((r) => launcher.once('exit', r));
    try {
      // A demo that never gets to its transfers says where it stopped (what both machines printed).
      await new Promise<void>((resolve, reject) => {
        const take = (d: Buffer) => {
          out += d.toString();
          if (out.includes('transfers')) resolve();
        };
        launcher.stdout!.on('data', take);
        launcher.stderr!.on('data', take);
        // A machine that gives up (bank.js --wait) ends the demo: that fails at once, not after 90 s.
        launcher.once('close', (code) => reject(new Error(`the demo ended (${code}) before any transfers; it printed:\n${out}`)));
        setTimeout(() => reject(new Error(`no transfers after 90 s; the demo printed:\n${out}`)), 90_000).unref();
      });
    } finally {
      // This demo's machines, by pid: a pgrep for bank.js also found other demos running on
      // the host (another checkout's tests) and failed this one.
      try {
        machines = execFileSync('pgrep', ['-P', String(launcher.pid)], { encoding: 'utf8' }).trim().split('\n');
      } catch {
        // pgrep exits 1 when nothing matches
      }
      launcher.kill('SIGTERM'); // this process alone: the machines are its children
      await exited;
    }
    expect(machines).toHaveLength(2);
    // Both machines go at once; before, they ran on for the rest of their 60 s.
    const running = () =>
      machines.filter((pid) => {
        try {
          return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); // a zombie has gone, its parent not yet told
        } catch {
          return false;
        }
      });
    const end = Date.now() + 20_000;
    while (running().length > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    expect(running()).toEqual([]);
  });

  it('ends when the slave joined while the master was still starting', async () => {
    // The master waited for a 'peer-join' it listened for only once createNode() returned:
    // a slave that joined earlier left it waiting for ever (and the slave for it, at the end),
    // so a hang is the failure here: both are stopped after 60 s, with what they printed.
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const { port: p } = s.address() as net.AddressInfo;
        s.close(() => resolve(p));
      });
    });
    const both = ['--secret', 'held', '--duration', '1', '--durability', 'none'];
    const [master, slave] = await Promise.all([
      demo(['--role', 'master', '--listen', `127.0.0.1:${port}`, ...both], BANK, ['-r', HOLD_MASTER_START], 60_000),
      demo(['--role', 'slave', '--connect', `127.0.0.1:${port}`, ...both], BANK, [], 60_000),
    ]);
    expect(master.out).toMatch(/\[master\] total 1000000 \(expected 1000000\).*OK/);
    expect(slave.out).toMatch(/\[slave\] total 1000000 \(expected 1000000\).*OK/);
    expect([master.code, slave.code]).toEqual([0, 0]);
  });

  it('a machine whose partner never comes says what it waited for and exits', async () => {
    const { code, out } = await demo(['--role', 'master', '--secret', 's', '--wait', '1', '--duration', '1'], BANK);
    expect(out).toContain('waiting for the slave');
    expect(out).toContain('[master] gave up after 1 s (--wait): no slave joined');
    expect(code).toBe(1);
  });

  it.each([
    [['--bogus'], "Unknown option '--bogus'"],
    [['--durability', 'sometimes'], '--durability must be replicated or none'],
    [['--durability', 'disk'], 'needs a page server'],
    [['--duration', 'abc'], '--duration must be a positive number'],
    [['--accounts', '1'], '--accounts must be a whole number of at least 2'],
  ])('refuses %j with the usage line', async (args, why) => {
    const { code, out } = await demo(args);
    expect(code).toBe(2);
    expect(out).toContain(why);
    expect(out).toContain('usage: npm run demo --');
    expect(out).not.toContain('    at '); // no stack trace
  });

  it.each([
    [['--role', 'boss', '--secret', 's'], '--role must be master or slave'],
    [['--role', 'slave', '--secret', 's'], 'the slave needs --connect'],
    [['--role', 'master'], 'pass --secret S'],
    [['--role', 'master', '--secret', 's', '--wait', 'soon'], '--wait must be a positive number'],
  ])('one machine of it refuses %j with its usage line', async (args, why) => {
    const { code, out } = await demo(args, BANK);
    expect(code).toBe(2);
    expect(out).toContain(why);
    expect(out).toContain('usage: node bank.js');
    expect(out).not.toContain('    at ');
  });

  it('prints its usage for --help and -h, and starts nothing', async () => {
    for (const [args, script, usage] of [
      [['--help'], undefined, 'usage: npm run demo --'],
      [['-h'], BANK, 'usage: node bank.js'],
    ] as const) {
      const { code, out } = await demo([...args], script);
      expect(code).toBe(0);
      expect(out.trim().startsWith(usage)).toBe(true);
      expect(out).not.toContain('up at');
    }
  });
});
