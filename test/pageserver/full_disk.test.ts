// A page server whose disk fills up: it says so once, acknowledges nothing as durable while
// it cannot write, tries again, and goes on by itself once there is room; every commit it
// acknowledged is in the store afterwards. The disk is a small tmpfs in a mount namespace
// of its own (root only), so the host's disks are never filled.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, RemoteNode, SECRET, until } from '../cluster/harness';

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'a tmpfs of its own needs root';
  for (const tool of ['unshare', 'nsenter']) if (spawnSync(tool, ['--version']).status !== 0) return `${tool} (util-linux) is not available`;
  return undefined;
}
const why = unavailable();
if (why) console.log(`full disk: tests skipped: ${why}`);

/** A harness whose processes can also start in the mount namespace of a holder process. */
class DiskHarness extends Harness {
  holder?: ChildProcess;
  async inHolder(): Promise<RemoteNode> {
    const proc = spawn('nsenter', ['-t', String(this.holder!.pid), '-m', process.execPath, path.join(__dirname, '../cluster/fixtures/remote_node.js')], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    const n = new RemoteNode(proc);
    this.nodes.push(n);
    await n.waitForLine((l) => l === 'ready');
    return n;
  }
  /** Runs a shell command in the holder's mount namespace. */
  sh(cmd: string): void {
    const r = spawnSync('nsenter', ['-t', String(this.holder!.pid), '-m', 'sh', '-c', cmd], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  }
}

describe.skipIf(why !== undefined)('a page server on a full disk', () => {
  const h = new DiskHarness();
  let root: string | undefined;
  afterEach(async () => {
    await h.close();
    h.holder?.kill('SIGKILL');
    h.holder = undefined;
    if (root) fs.rmSync(root, { recursive: true, force: true });
    root = undefined;
  });

  it('stops acknowledging, tries again, and goes on once there is room; nothing it acknowledged is lost', async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsm-full-disk-'));
    const mnt = path.join(root, 'disk');
    fs.mkdirSync(mnt);
    // 6 MiB, 4 MiB of them taken by a file the test removes later. Removing it must leave room
    // for a checkpoint of everything logged until the disk was full (about 2 MiB of pages)
    // and more: with a 2 MiB file on 4 MiB, the first checkpoint after it went filled the
    // disk again on a loaded machine, before the node had made five more commits, and the
    // test waited out its 120 s (the page server rightly found no room again).
    h.holder = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=6m tmpfs ${mnt} && dd if=/dev/zero of=${mnt}/filler bs=1k count=4096 2>/dev/null && echo ready && exec sleep 100000`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((r) => h.holder!.stdout!.once('data', r));
    const ps = await (await h.inHolder()).startPageServer({ dir: path.join(mnt, 'store'), regionSize: 16 << 20, secret: SECRET, listen: '127.0.0.1:0' });
    const a = await h.start({ peers: [ps.address], durability: 'disk' });
    // One whole page per transaction, each awaited and said once acknowledged.
    void a.run(`for (let i = 0; i < 3000 && !globalThis.stop; i++) {
        await dsm.transaction(() => { dsm.u32.fill(i + 1, (1000 + i) * 1024, (1001 + i) * 1024); });
        say('acked ' + (i + 1));
      }
      say('done');`).catch(() => undefined);
    const acked = () => Math.max(0, ...a.lines.filter((l) => l.startsWith('acked ')).map((l) => Number(l.slice(6))));
    await until('the page server says its disk is full', 120_000, async () => /could not be written \(ENOSPC/.test(ps.stderr) || undefined);
    const before = acked();
    h.sh(`rm ${mnt}/filler`);
    await until('the page server writes again', 120_000, async () => /page store is written again/.test(ps.stderr) || undefined);
    await until('the node is acknowledged again', 120_000, async () => (acked() > before + 5 ? true : undefined));
    await a.run('globalThis.stop = true;');
    await a.waitForLine((l) => l === 'done');
    const last = acked();
    // A failed write was an unhandled rejection in the service thread.
    expect(ps.stderr).not.toContain('unhandled rejection');
    // Everything acknowledged is on that disk: SIGKILL all, then a page server on a copy of it.
    ps.kill('SIGKILL');
    a.kill('SIGKILL');
    const copy = path.join(root, 'copy');
    h.sh(`cp -r ${mnt}/store ${copy} && rm -f ${copy}/owner.pid`);
    const again = await h.pageServer({ dir: copy });
    const b = await h.start({ peers: [again.address] });
    const bad = await b.run<number[]>(
      `const bad = [];
       await dsm.transaction(() => { for (let i = 0; i < args.last; i++) { const p = (1000 + i) * 1024; if (dsm.u32[p] !== i + 1 || dsm.u32[p + 1023] !== i + 1) bad.push(i + 1); } });
       return bad;`,
      { last },
    );
    expect(bad).toEqual([]);
  });
});
