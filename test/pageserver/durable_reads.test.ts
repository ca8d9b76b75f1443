// Durability 'disk' and read-only transactions: a commit reaches the other nodes before a page
// server has it on disk, so a read-only transaction that read it must not resolve until the
// disk has it too. Before, it resolved at once, and after SIGKILL of every process the
// cluster started again from the store lacked what the program had been told it read.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../cluster/harness';

const WORD = 3000 * 1024; // a data page, clear of the heap's own

describe("read-only transactions with durability 'disk'", () => {
  const h = new Harness();
  const dirs: string[] = [];
  afterEach(async () => {
    await h.close();
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it("wait until what they read is on a page server's disk; a crash of everything before then leaves no value the program was told it read", async () => {
    await h.within(120_000, async (step) => {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsm-durable-reads-'));
      dirs.push(root);
      const dir = path.join(root, 'store');
      const ps = await h.pageServer({ dir });
      const a = await h.start({ peers: [ps.address], durability: 'disk' });
      const b = await h.start({ peers: [ps.address], durability: 'disk' });
      // Both nodes hold the page, so A's commit reaches B as an update.
      for (const n of [a, b]) await n.run('return dsm.transaction(() => dsm.u32[args.w]);', { w: WORD });

      step('the page server stopped; A commits 7 (its promise waits for the disk), B sees it');
      ps.kill('SIGSTOP');
      const t = await a.run<number>(
        `const committed = new Promise((r) => dsm.once('commit', (e) => r(e.time)));
         dsm.transaction(() => { dsm.u32[args.w] = 7; }).then(() => say('A durable'), (e) => say('A failed ' + e.code));
         return committed;`,
        { w: WORD },
      );
      const seen = await b.run<{ plain: number; read: string }>(
        `await dsm.waitForGlobalTime(args.t);
         const plain = dsm.u32[args.w];
         const reading = dsm.transaction(() => dsm.u32[args.w]).then((v) => { say('B read ' + v); return 'read ' + v; }, (e) => 'failed ' + e.code);
         const read = await Promise.race([reading, new Promise((r) => setTimeout(() => r('waiting'), 500))]);
         return { plain, read };`,
        { w: WORD, t },
      );
      // The value is here, outside any transaction; the transaction that read it waits for the disk.
      expect(seen.plain).toBe(7);
      expect(seen.read).toBe('waiting');

      step('the page server runs again: both resolve');
      ps.kill('SIGCONT');
      await a.waitForLine((l) => l === 'A durable');
      await b.waitForLine((l) => l === 'B read 7');

      step('again, and every process dies before the disk has it');
      ps.kill('SIGSTOP');
      const t2 = await a.run<number>(
        `const committed = new Promise((r) => dsm.once('commit', (e) => r(e.time)));
         dsm.transaction(() => { dsm.u32[args.w] = 8; }).then(() => say('A durable 8'), () => undefined);
         return committed;`,
        { w: WORD },
      );
      const again = await b.run<string>(
        `await dsm.waitForGlobalTime(args.t);
         dsm.transaction(() => dsm.u32[args.w]).then((v) => say('B read ' + v), () => undefined);
         await new Promise((r) => setTimeout(r, 500));
         return 'asked';`,
        { w: WORD, t: t2 },
      );
      expect(again).toBe('asked');
      for (const n of [a, b, ps]) n.kill('SIGKILL');
      await Promise.all([a, b, ps].map((n) => n.exited));
      expect(a.lines).not.toContain('A durable 8');
      expect(b.lines).not.toContain('B read 8');

      step('the cluster started again from the store has 7, never 8');
      const ps2 = await h.pageServer({ dir });
      const c = await h.start({ peers: [ps2.address], durability: 'disk' });
      expect(await c.run('return dsm.transaction(() => dsm.u32[args.w]);', { w: WORD })).toBe(7);
    });
  });
});
