// A commit log deleted, emptied or cut short by hand after every process died: the store must
// refuse to start (ERR_DSM_STORE, restore from a snapshot) rather than start at its last
// checkpoint, or part way through its log, without the acknowledged 'disk' commits only the
// log held.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { open } from 'lmdb';
import { decodeMark } from '../../lib/pageserver/log_mark';
import { Harness, type RemoteNode } from '../cluster/harness';
import { groupStarts } from './log_fixture';

const FIRST = 3000; // a data page, clear of the heap's own

const COMMIT_FOREVER = `
  const a = args.first * 1024;
  for (let i = 1; ; i++) {
    await dsm.transaction(() => { dsm.u32[a] = i; });
    say('ACK ' + i);
  }
`;

/** The last ACK a committer printed. */
const lastAck = (n: RemoteNode) => Math.max(0, ...n.lines.filter((l) => l.startsWith('ACK ')).map((l) => Number(l.slice(4))));

describe('page server commit log removed by hand', () => {
  const h = new Harness();
  const dirs: string[] = [];
  afterEach(async () => {
    await h.close();
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  /** Restarts a page server on `dir` and reads the first counter through a node: what it read, or the start's error. */
  async function restart(dir: string): Promise<{ read: number } | { code?: string; error: string }> {
    const started = h.pageServer({ dir }).then(async (ps2) => {
      const c = await h.start({ peers: [ps2.address], durability: 'disk' });
      return c.run<number>('return dsm.transaction(() => dsm.u32[args.w]);', { w: FIRST * 1024 });
    });
    return started.then(
      (read) => ({ read }),
      (e: Error & { code?: string }) => ({ code: e.code, error: e.message }),
    );
  }

  /** A page server in a new directory and a node committing to it with durability 'disk', once 200 commits are acknowledged. */
  async function committing(): Promise<{ dir: string; ps: RemoteNode; a: RemoteNode }> {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsm-logloss-'));
    dirs.push(root);
    const dir = path.join(root, 'store');
    const ps = await h.pageServer({ dir });
    const a = await h.start({ peers: [ps.address], durability: 'disk' });
    a.run(COMMIT_FOREVER, { first: FIRST }).catch(() => undefined);
    await a.waitForLine((l) => l === 'ACK 200');
    return { dir, ps, a };
  }

  it.each(['deleted', 'emptied'] as const)('a log %s after SIGKILL of every process is refused, not started at the last checkpoint', async (how) => {
    const { dir, ps, a } = await committing();
    for (const n of [ps, a]) n.kill('SIGKILL');
    await Promise.all([ps, a].map((n) => n.exited));
    let acked = 0;
    for (const l of a.lines) if (l.startsWith('ACK ')) acked = Number(l.slice(4));
    const logs = fs.readdirSync(dir).filter((f) => /^log-\d+\.wal$/.test(f));
    expect(logs.length).toBeGreaterThan(0);
    for (const f of logs) {
      if (how === 'deleted') fs.rmSync(path.join(dir, f));
      else fs.truncateSync(path.join(dir, f), 0);
    }
    const got = await restart(dir);
    console.log(`acknowledged ${acked}, restart: ${JSON.stringify(got).slice(0, 400)}`);
    // It used to start at the last checkpoint and read 0 where 200 commits were acknowledged.
    expect(got).toMatchObject({ code: 'ERR_DSM_STORE', error: expect.stringMatching(how === 'deleted' ? /is missing/ : /is empty or damaged at its start/) });
    expect((got as { error: string }).error).toMatch(/dsm restore --from FILE --dir DIR/);
  });

  it('the last log file cut at a record boundary past the checkpoint after SIGKILL is refused, not started without the commits after the cut', async () => {
    const { dir, ps, a } = await committing();
    // Stopped where its newest log file holds three synced writes: the third was written after
    // the second's commit was acknowledged (one committer, each commit awaited), and the
    // checkpoint's mark is at most at the first (a flush starts right after the file does).
    const logs = () => fs.readdirSync(dir).filter((f) => /^log-\d+\.wal$/.test(f)).sort((x, y) => parseInt(x.slice(4)) - parseInt(y.slice(4)));
    let file: string;
    let groups: number[];
    for (;;) {
      await ps.stop();
      file = path.join(dir, logs().at(-1)!);
      groups = groupStarts(file);
      if (groups.length >= 3) break;
      const more = lastAck(a) + 3;
      ps.kill('SIGCONT');
      await a.waitForLine((l) => l === `ACK ${more}`);
    }
    for (const n of [ps, a]) n.kill('SIGKILL');
    await Promise.all([ps, a].map((n) => n.exited));
    const acked = lastAck(a);
    // Past the store's mark: the cut is not below what its last checkpoint recorded as synced.
    const env = open({ path: dir, compression: false, maxDbs: 8, readOnly: true });
    const mark = decodeMark(dir, env.openDB({ name: 'meta', encoding: 'binary', compression: false }).getBinary('log'))!;
    await env.close();
    const cutSeq = parseInt(path.basename(file).slice(4));
    expect(mark.seq < cutSeq || mark.at <= groups[1]).toBe(true);
    // At the start of the second write: the records before it whole, as a crash after its sync leaves them.
    fs.truncateSync(file, groups[1]);
    const got = await restart(dir);
    console.log(`acknowledged ${acked}, cut at byte ${groups[1]} of ${path.basename(file)} (mark: file ${mark.seq}, byte ${mark.at}), restart: ${JSON.stringify(got).slice(0, 400)}`);
    // It used to start part way through the log and read less than was acknowledged.
    expect(got).toMatchObject({ code: 'ERR_DSM_STORE', error: expect.stringMatching(/is cut short/) });
    expect((got as { error: string }).error).toMatch(/dsm restore --from FILE --dir DIR/);
  });
});
