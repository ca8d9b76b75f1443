// A commit log deleted or emptied by hand after every process died: the store must refuse to
// start (ERR_DSM_STORE, restore from a snapshot) rather than start at its last checkpoint
// without the acknowledged 'disk' commits only the log held.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../cluster/harness';

const FIRST = 3000; // a data page, clear of the heap's own

const COMMIT_FOREVER = `
  const a = args.first * 1024;
  for (let i = 1; ; i++) {
    await dsm.transaction(() => { dsm.u32[a] = i; });
    say('ACK ' + i);
  }
`;

describe('page server commit log removed by hand', () => {
  const h = new Harness();
  const dirs: string[] = [];
  afterEach(async () => {
    await h.close();
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it.each(['deleted', 'emptied'] as const)('a log %s after SIGKILL of every process is refused, not started at the last checkpoint', async (how) => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsm-logloss-'));
    dirs.push(root);
    const dir = path.join(root, 'store');
    const ps = await h.pageServer({ dir });
    const a = await h.start({ peers: [ps.address], durability: 'disk' });
    a.run(COMMIT_FOREVER, { first: FIRST }).catch(() => undefined);
    await a.waitForLine((l) => l === 'ACK 200');
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
    const started = h.pageServer({ dir }).then(async (ps2) => {
      const c = await h.start({ peers: [ps2.address], durability: 'disk' });
      return c.run<number>('return dsm.transaction(() => dsm.u32[args.w]);', { w: FIRST * 1024 });
    });
    const got = await started.then(
      (read) => ({ read }),
      (e: Error & { code?: string }) => ({ code: e.code, error: e.message }),
    );
    console.log(`acknowledged ${acked}, restart: ${JSON.stringify(got).slice(0, 400)}`);
    // It used to start at the last checkpoint and read 0 where 200 commits were acknowledged.
    expect(got).toMatchObject({ code: 'ERR_DSM_STORE', error: expect.stringMatching(how === 'deleted' ? /is missing/ : /is empty or damaged at its start/) });
    expect((got as { error: string }).error).toMatch(/dsm restore --from FILE --dir DIR/);
  });
});
