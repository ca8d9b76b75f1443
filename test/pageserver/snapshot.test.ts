// Snapshots: a store's image at one time written to one file while the store goes on, restored
// into a new directory equal to it; damaged, truncated and other-version files, and non-empty
// directories, refused with nothing made. Also through `dsm restore` in a real process.
import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PageStore } from '../../lib/pageserver/store';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { checkSnapshot, restoreSnapshot, saveSnapshot, snapshotChunks, writeSnapshot, type SnapshotProgress } from '../../lib/pageserver/snapshot';
import { commitStream } from './fixtures/commit_stream.mjs';

const GEO = { pageSize: 4096, regionSize: 64 * 4096 };
const CLI = path.join(__dirname, '../../dist/cli.js');
let base = '';
const stores: PageStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close().catch(() => undefined);
  if (base) fs.rmSync(base, { recursive: true, force: true });
});
function fresh(): string {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'dsm-snap-'));
  return base;
}
async function openStore(dir: string, geo = GEO): Promise<PageStore> {
  const s = await PageStore.open(dir, geo);
  stores.push(s);
  return s;
}
/** A store with the stream's first `n` commits flushed, and its last page missing. */
async function filledStore(dir: string, n: number, geo = GEO): Promise<PageStore> {
  const s = await openStore(dir, geo);
  const numPages = geo.regionSize / geo.pageSize;
  const stream = commitStream(5, { numPages, maxPages: 16 });
  for (let i = 0; i < n; i++) {
    const c = stream.next().value!;
    s.apply(c.time, c.pages, c.changes);
  }
  s.apply(s.appliedTime + 1, Uint32Array.of(numPages - 1), new Uint8Array(0));
  await s.flush();
  return s;
}
async function sameImage(a: PageStore, b: PageStore): Promise<void> {
  expect(b.appliedTime).toBe(a.appliedTime);
  for (let p = 0; p < a.geometry.regionSize / a.geometry.pageSize; p++) {
    const x = a.readPage(p);
    const y = b.readPage(p);
    expect(y?.version, `page ${p}`).toBe(x?.version);
    expect(y?.data ? Buffer.from(y.data).equals(Buffer.from(x!.data!)) : y?.data === x?.data, `page ${p}`).toBe(true);
  }
  expect([...b.missing()]).toEqual([...a.missing()]);
}
const listing = (dir: string) => fs.readdirSync(dir).sort();
/** Runs the dsm command to its end. */
const dsm = (...args: string[]) =>
  new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('exit', (code) => resolve({ code, out, err }));
  });

describe('snapshots', () => {
  it('round trip: the restored store equals the store, taken while it goes on committing', async () => {
    const dir = fresh();
    // About 4 MiB of pages: the snapshot is written in several chunks, commits in between.
    const geo = { pageSize: 4096, regionSize: 1024 * 4096 };
    const s = await filledStore(path.join(dir, 'a'), 600, geo);
    const at = s.appliedTime;
    // The image at `at`, to compare with after the store has moved on.
    const frozen = await openStore(path.join(dir, 'frozen'), geo);
    const src = s.openView();
    await frozen.load([...src.pages()], src.time);
    src.close();
    expect(frozen.stats().pages).toBeGreaterThan(900);
    const progress: SnapshotProgress[] = [];
    const writing = writeSnapshot(s, path.join(dir, 'snap'), (p) => progress.push(p));
    // Commits go on while the snapshot is written (commits that carry nothing: their pages go missing).
    let t = at;
    let done = false;
    void writing.finally(() => (done = true));
    while (!done) {
      s.apply(++t, Uint32Array.of(t % 1000, (t % 1000) + 1), new Uint8Array(0));
      void s.flush();
      await new Promise((r) => setImmediate(r));
    }
    const info = await writing;
    expect(t).toBeGreaterThan(at + 1);
    await s.flush();
    expect(info.time).toBe(at);
    expect(info.pages).toBe(frozen.stats().pages + frozen.stats().missing);
    expect(progress.length).toBeGreaterThan(1);
    expect(progress.at(-1)).toMatchObject({ phase: 'writing', done: info.pages, total: info.pages });
    expect(await checkSnapshot(path.join(dir, 'snap'))).toMatchObject({ time: at, pages: info.pages, geometry: geo });
    const restoring: SnapshotProgress[] = [];
    const restored = await restoreSnapshot(path.join(dir, 'snap'), path.join(dir, 'b'), (p) => restoring.push(p));
    expect(restored.time).toBe(at);
    expect(restoring.at(-1)).toMatchObject({ phase: 'restoring', done: info.pages, total: info.pages });
    const b = await openStore(path.join(dir, 'b'), geo);
    expect(b.durableTime).toBe(at);
    await sameImage(frozen, b);
    expect([...b.missing()]).toEqual([1023]);
    // Only the snapshot and the stores: no temporary file or directory left.
    expect(listing(dir)).toEqual(['a', 'b', 'frozen', 'snap']);
  });

  it('streams over a socket into a file checked before it appears; a stream cut short leaves nothing', async () => {
    const dir = fresh();
    const geo = { pageSize: 4096, regionSize: 1024 * 4096 };
    const s = await filledStore(path.join(dir, 'a'), 400, geo);
    // A page server's side: the snapshot's bytes to whoever connects, all of them or only the first `cut`.
    const serve = (cut: number) =>
      new Promise<net.Server>((resolve) => {
        const server = net.createServer(async (sock) => {
          let sent = 0;
          for await (const chunk of snapshotChunks(s)) {
            const part = cut > 0 ? chunk.subarray(0, Math.max(0, cut - sent)) : chunk;
            sent += part.length;
            if (!sock.write(part)) await new Promise((r) => sock.once('drain', r));
            if (cut > 0 && sent >= cut) break;
          }
          sock.end();
        });
        server.listen(0, '127.0.0.1', () => resolve(server));
      });
    const fetch = async (server: net.Server, file: string) => {
      const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
      try {
        return await saveSnapshot(sock, file);
      } finally {
        sock.destroy();
        server.close();
      }
    };
    const info = await fetch(await serve(0), path.join(dir, 'snap'));
    expect(info).toMatchObject({ time: s.appliedTime, geometry: geo });
    const b = path.join(dir, 'b');
    await restoreSnapshot(path.join(dir, 'snap'), b);
    await sameImage(s, await openStore(b, geo));
    await expect(fetch(await serve(3 << 20), path.join(dir, 'cut'))).rejects.toMatchObject({ code: 'ERR_DSM_SNAPSHOT', message: expect.stringContaining(path.join(dir, 'cut')) });
    expect(listing(dir)).toEqual(['a', 'b', 'snap']);
  });

  it('refuses corrupt, truncated and other-version files, making nothing', async () => {
    const dir = fresh();
    const s = await filledStore(path.join(dir, 'a'), 50);
    const file = path.join(dir, 'snap');
    await writeSnapshot(s, file);
    const good = fs.readFileSync(file);
    const target = path.join(dir, 'out');
    const refused = async (bytes: Buffer, why: RegExp) => {
      fs.writeFileSync(path.join(dir, 'bad'), bytes);
      await expect(restoreSnapshot(path.join(dir, 'bad'), target)).rejects.toMatchObject({ code: 'ERR_DSM_SNAPSHOT', name: 'SnapshotError', message: expect.stringMatching(why) });
      expect(fs.existsSync(target)).toBe(false);
      expect(listing(dir)).toEqual(['a', 'bad', 'snap']);
    };
    // One flipped byte in a page's data, far from any structure.
    const flipped = Buffer.from(good);
    flipped[40 + 16 + 1000] ^= 0x20;
    await refused(flipped, /checksum/);
    // One flipped byte in the trailer's checksum.
    const flippedSum = Buffer.from(good);
    flippedSum[good.length - 5] ^= 1;
    await refused(flippedSum, /checksum/);
    await refused(good.subarray(0, good.length - 100), /truncated|trailer/);
    await refused(good.subarray(0, 30), /truncated/);
    await refused(good.subarray(0, good.length - 48), /truncated|trailer/);
    await refused(Buffer.concat([good, Buffer.from([0])]), /follow/);
    const version = Buffer.from(good);
    version.writeUInt32LE(3, 8);
    await refused(version, /format version 3/);
    // A cluster section longer than any identity, as a damaged length reads.
    const cluster = Buffer.from(good);
    cluster.writeUInt32LE(1 << 20, 40);
    await refused(cluster, /cluster section/);
    const notOurs = Buffer.from(good);
    notOurs.write('PKZIP', 0);
    await refused(notOurs, /not a node-dsm snapshot/);
    await expect(restoreSnapshot(path.join(dir, 'nothing'), target)).rejects.toMatchObject({ code: 'ERR_DSM_SNAPSHOT' });
  });

  it("names the cluster whose heap it is, and the restored store records it (so it joins only that cluster); a file of format 1 restores with no record", async () => {
    const dir = fresh();
    const s = await filledStore(path.join(dir, 'a'), 20);
    const cluster = { id: '0123456789abcdef', foundedAt: 7, from: 'fedcba9876543210' };
    const info = await writeSnapshot(s, path.join(dir, 'snap'), undefined, cluster);
    expect(info.cluster).toEqual(cluster);
    expect((await checkSnapshot(path.join(dir, 'snap'))).cluster).toEqual(cluster);
    await restoreSnapshot(path.join(dir, 'snap'), path.join(dir, 'b'));
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'b', 'cluster.json'), 'utf8'))).toEqual({ identity: cluster, members: [], former: [] });
    await sameImage(s, await openStore(path.join(dir, 'b')));
    // Format 1: the same header without the cluster section, and its checksum.
    const v2 = fs.readFileSync(path.join(dir, 'snap'));
    const n = v2.readUInt32LE(40);
    const body = Buffer.concat([v2.subarray(0, 40), v2.subarray(44 + n, v2.length - 48)]);
    body.writeUInt32LE(1, 8);
    const trailer = Buffer.from(v2.subarray(v2.length - 48));
    createHash('sha256').update(body).digest().copy(trailer, 16);
    fs.writeFileSync(path.join(dir, 'v1'), Buffer.concat([body, trailer]));
    expect((await checkSnapshot(path.join(dir, 'v1'))).cluster).toBeUndefined();
    await restoreSnapshot(path.join(dir, 'v1'), path.join(dir, 'c'));
    expect(fs.existsSync(path.join(dir, 'c', 'cluster.json'))).toBe(false);
    await sameImage(s, await openStore(path.join(dir, 'c')));
  });

  it('refuses to restore into a directory that is not empty; an empty one is fine', async () => {
    const dir = fresh();
    const s = await filledStore(path.join(dir, 'a'), 20);
    await writeSnapshot(s, path.join(dir, 'snap'));
    fs.mkdirSync(path.join(dir, 'full'));
    fs.writeFileSync(path.join(dir, 'full', 'keep.txt'), 'mine');
    await expect(restoreSnapshot(path.join(dir, 'snap'), path.join(dir, 'full'))).rejects.toMatchObject({ code: 'ERR_DSM_SNAPSHOT', message: expect.stringContaining('not empty') });
    expect(listing(path.join(dir, 'full'))).toEqual(['keep.txt']);
    fs.mkdirSync(path.join(dir, 'empty'));
    await restoreSnapshot(path.join(dir, 'snap'), path.join(dir, 'empty'));
    await sameImage(s, await openStore(path.join(dir, 'empty')));
  });

  it('dsm restore makes a store from a file, and refuses a damaged one with ERR_DSM_SNAPSHOT', async () => {
    const dir = fresh();
    const s = await filledStore(path.join(dir, 'a'), 80);
    await writeSnapshot(s, path.join(dir, 'snap'));
    const ok = await dsm('restore', '--from', path.join(dir, 'snap'), '--dir', path.join(dir, 'b'));
    expect(ok.code).toBe(0);
    expect(ok.out).toContain(`at time ${s.appliedTime}`);
    await sameImage(s, await openStore(path.join(dir, 'b')));
    const bytes = fs.readFileSync(path.join(dir, 'snap'));
    bytes[bytes.length >> 1] ^= 1;
    fs.writeFileSync(path.join(dir, 'bad'), bytes);
    const bad = await dsm('restore', '--from', path.join(dir, 'bad'), '--dir', path.join(dir, 'c'));
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('ERR_DSM_SNAPSHOT');
    expect(fs.existsSync(path.join(dir, 'c'))).toBe(false);
  });

  it('a --from that is a directory or missing is refused with ERR_DSM_SNAPSHOT saying so, making nothing', async () => {
    const dir = fresh();
    const s = await filledStore(path.join(dir, 'a'), 10);
    fs.mkdirSync(path.join(dir, 'snaps'));
    await writeSnapshot(s, path.join(dir, 'snaps', 'snap'));
    const target = path.join(dir, 'out');
    // The directory the snapshot is in, given instead of the file (it used to fail with a bare EISDIR).
    await expect(restoreSnapshot(path.join(dir, 'snaps'), target)).rejects.toMatchObject({
      code: 'ERR_DSM_SNAPSHOT',
      name: 'SnapshotError',
      message: expect.stringMatching(/snaps is a directory, not a snapshot file; give the path of the file/),
    });
    await expect(checkSnapshot(path.join(dir, 'snaps'))).rejects.toMatchObject({ code: 'ERR_DSM_SNAPSHOT', message: expect.stringContaining('is a directory') });
    await expect(restoreSnapshot(path.join(dir, 'nothing'), target)).rejects.toMatchObject({ code: 'ERR_DSM_SNAPSHOT', message: expect.stringContaining('does not exist') });
    await expect(restoreSnapshot(path.join(dir, 'snaps', 'snap', 'x'), target)).rejects.toMatchObject({ code: 'ERR_DSM_SNAPSHOT', message: expect.stringContaining('does not exist') });
    const cli = await dsm('restore', '--from', path.join(dir, 'snaps'), '--dir', target);
    expect(cli.code).toBe(1);
    expect(cli.err).toMatch(/^dsm: ERR_DSM_SNAPSHOT: \S+snaps is a directory, not a snapshot file/);
    expect(cli.err).not.toContain('EISDIR');
    expect(listing(dir)).toEqual(['a', 'snaps']);
  });
});
