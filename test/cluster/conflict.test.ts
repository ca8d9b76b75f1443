// First committer wins: a transaction that read a page another node then committed is
// doomed, aborted and run again on the new data, even if it never returns by itself.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, settle } from './harness';

const AT = 3000 * 1024;
const OTHER = 3100 * 1024;

describe('conflicts', () => {
  const h = new Harness();
  let dir: string | undefined;
  afterEach(async () => {
    await h.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('a transaction whose read page is committed elsewhere aborts, retries and sees the new value', async () => {
    const [a, b] = await h.cluster(2);
    dir = mkdtempSync(path.join(tmpdir(), 'dsm-conflict-'));
    const fifo = path.join(dir, 'gate');
    execFileSync('mkfifo', [fifo]);
    // A reads the counter, then blocks (in its first run only) until the test opens the gate.
    const txA = a.run(
      `const fs = require('node:fs');
       const r = await dsm.transaction((tx) => {
         const v = dsm.u32[args.at];
         if (tx.attempt === 0) { say('read ' + v); const fd = fs.openSync(args.fifo, 'r'); fs.readSync(fd, Buffer.alloc(1)); fs.closeSync(fd); }
         dsm.u32[args.other] = v + 1;
         return { v, attempt: tx.attempt };
       });
       return { ...r, stats: dsm.stats() };`,
      { at: AT, other: OTHER, fifo },
    );
    await a.waitForLine((l) => l === 'read 0');
    await b.run('await dsm.transaction(() => { dsm.u32[args.at] = 41; });', { at: AT });
    writeFileSync(fifo, 'x');
    const r = await txA;
    expect(r).toMatchObject({ v: 41, attempt: 1 });
    expect((r as { stats: { transactions: { aborted: number; retried: number } } }).stats.transactions.aborted).toBeGreaterThanOrEqual(1);
    expect((r as { stats: { transactions: { retried: number } } }).stats.transactions.retried).toBeGreaterThanOrEqual(1);
    // The doomed run's write never became visible: only the retry's.
    await settle([a, b]);
    expect(await b.run('return dsm.transaction(() => dsm.u32[args.other]);', { other: OTHER })).toBe(42);
  });

  it('a doomed transaction looping forever is interrupted and retried', async () => {
    const [a, b] = await h.cluster(2);
    const txA = a.run(
      `return dsm.transaction((tx) => {
         const v = dsm.u32[args.at];
         if (v === 0) { say('looping'); for (;;) {} }
         return { v, attempt: tx.attempt };
       });`,
      { at: AT },
    );
    await a.waitForLine((l) => l === 'looping');
    await b.run('await dsm.transaction(() => { dsm.u32[args.at] = 7; });', { at: AT });
    const r = await txA;
    expect(r).toEqual({ v: 7, attempt: 1 });
    // The node is healthy afterwards: it commits and reads again.
    await a.run('await dsm.transaction(() => { dsm.u32[args.at] += 1; });', { at: AT });
    await settle([a, b]);
    expect(await b.run('return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })).toBe(8);
  });

  it.each([2, 4])('bank transfers between %i nodes keep the total', async (n) => {
    const nodes = await h.cluster(n);
    const ACCOUNTS = 3200 * 512; // f64 index of 200 accounts spread over several pages
    const count = 200;
    await nodes[0].run(
      'await dsm.transaction(() => { for (let i = 0; i < args.count; i++) dsm.f64[args.base + i * 64] = 1000; });',
      { base: ACCOUNTS, count },
    );
    const transfers = `
      let seed = args.seed;
      const rnd = (m) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % m; };
      for (let k = 0; k < args.k; k++) {
        const from = rnd(args.count), to = rnd(args.count), amt = 1 + rnd(20);
        await dsm.transaction(() => {
          const f = args.base + from * 64, t = args.base + to * 64;
          if (from === to || dsm.f64[f] < amt) return;
          dsm.f64[f] -= amt; dsm.f64[t] += amt;
        });
      }`;
    await Promise.all(nodes.map((node, i) => node.run(transfers, { base: ACCOUNTS, count, k: 150, seed: 17 + i })));
    await settle(nodes);
    const totals = await Promise.all(
      nodes.map((node) =>
        node.run<number>(
          'return dsm.transaction(() => { let s = 0; for (let i = 0; i < args.count; i++) s += dsm.f64[args.base + i * 64]; return s; });',
          { base: ACCOUNTS, count },
        ),
      ),
    );
    expect(totals).toEqual(Array(n).fill(count * 1000));
  });
});
