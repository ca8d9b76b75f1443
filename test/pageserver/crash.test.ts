// A page store killed with SIGKILL at random moments while it applies and flushes: reopened,
// it holds every flushed commit, and exactly the image of the commit stream at its applied
// time (no commit half in), and goes on from there.
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PageStore } from '../../lib/pageserver/store';
import { CommitLog } from '../../lib/pageserver/wal';
import { commitStream, rng } from './fixtures/commit_stream.mjs';

const CHILD = path.join(__dirname, 'fixtures/crash_child.mjs');
const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** Runs the child until it has reported `flushes` new durable times (plus a pause), then kills it; the last durable time. */
function runAndKill(dir: string, seed: number, flushes: number, pauseMs: number, mode: 'store' | 'log'): Promise<{ opened: number; durable: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir, String(seed), mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    let err = '';
    let opened = -1;
    let durable = 0;
    let seen = 0;
    let killing = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the child reported ${seen} flushes in 60 s; stderr: ${err}`));
    }, 60_000);
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d) => {
      out += d;
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const line of lines) {
        const [what, t] = line.split(' ');
        if (what === 'open') opened = Number(t);
        if (what === 'durable') {
          durable = Math.max(durable, Number(t));
          // Flushes past the image it opened (replayed commits are ignored and flush nothing).
          if (Number(t) > opened && ++seen === flushes && !killing) {
            killing = true;
            setTimeout(() => child.kill('SIGKILL'), pauseMs);
          }
        }
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') reject(new Error(`the child exited by itself (${code}, ${signal}): ${err}`));
      else resolve({ opened, durable });
    });
  });
}

describe('page store under SIGKILL', () => {
  it.each(['store', 'log'] as const)('reopens at a consistent image no older than the last reported flush (%s)', async (mode) => {
    const seed = Number(process.env.DSM_CRASH_SEED ?? Date.now() % 1e9);
    console.log(`seed ${seed} (replay: DSM_CRASH_SEED=${seed})`);
    const rand = rng(seed);
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dsm-crash-'));
    dirs.push(base);
    const dir = path.join(base, 'store');
    let previous = 0;
    let writtenOver = 0;
    for (let round = 0; round < 6; round++) {
      // Retired log files the run will write over (every start and checkpoint retires one).
      if (fs.existsSync(dir) && fs.readdirSync(dir).some((f) => f.startsWith('spare-'))) writtenOver++;
      const { opened, durable } = await runAndKill(dir, seed, 1 + Math.floor(rand() * 40), Math.floor(rand() * 30), mode);
      // Each run starts where the last one's disk image was.
      expect(opened).toBe(previous);
      const store = await PageStore.open(dir, { pageSize: 4096, regionSize: 64 * 4096 });
      // The log's records go over the store's image, as a page server restarting replays them.
      const log = mode === 'log' ? CommitLog.open(store.dir, store).log : undefined;
      try {
        const applied = store.appliedTime;
        expect(applied).toBeGreaterThanOrEqual(durable);
        expect(applied).toBeGreaterThan(previous);
        if (!log) expect(store.durableTime).toBe(applied);
        // The stream's image at exactly that time: the time must be a commit's, and every page equal.
        let c;
        for (const next of commitStream(seed)) {
          c = next;
          if (next.time >= applied) break;
        }
        expect(c!.time).toBe(applied);
        for (let p = 0; p < 64; p++) {
          const want = c!.image.get(p);
          const got = store.readPage(p);
          expect(got?.version, `page ${p} at time ${applied}`).toBe(want?.version);
          if (want) expect(Buffer.from(got!.data!).equals(Buffer.from(want.data)), `page ${p} at time ${applied}`).toBe(true);
        }
        expect(store.missing()).toHaveLength(0);
        console.log(`round ${round}: killed after durable ${durable}, reopened at ${applied}`);
        previous = applied;
        if (mode === 'log' && round === 5) expect(writtenOver).toBeGreaterThan(0);
      } finally {
        log?.close();
        await store.close();
      }
    }
  });
});
