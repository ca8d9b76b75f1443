// What the commit-log tests share: stores in temporary directories (closed and removed after
// each test), images of a directory as a crash leaves it, and commits of whole pages into a
// store and its log as the page server makes them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterEach } from 'vitest';
import { PageStore } from '../../lib/pageserver/store';
import type { CommitLog } from '../../lib/pageserver/wal';
import { geometry, wholePage } from './whole_page';

const ZEROS = Buffer.alloc(1 << 16);

/** Call inside a describe: its stores and directories go after each test. */
export function logFixture(prefix: string) {
  const dirs: string[] = [];
  const stores: PageStore[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close().catch(() => undefined);
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
  return {
    newRoot(): string {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
      dirs.push(root);
      return root;
    },
    async openStore(dir: string): Promise<PageStore> {
      const s = await PageStore.open(dir, geometry);
      stores.push(s);
      return s;
    },
    /**
     * A copy of the directory as its files are now: what a crash leaves if everything written
     * so far reached the disk. Trailing zeros stay holes (a log file is a 64 MiB step, mostly
     * holes; copied whole, the crash tests wrote gigabytes).
     */
    image(from: string, to: string): string {
      fs.mkdirSync(to);
      for (const f of fs.readdirSync(from)) {
        if (f === 'owner.pid') continue;
        const b = fs.readFileSync(path.join(from, f));
        let end = b.length;
        while (end > 0 && b.subarray(Math.max(0, end - ZEROS.length), end).equals(ZEROS.subarray(0, end - Math.max(0, end - ZEROS.length)))) end = Math.max(0, end - ZEROS.length);
        fs.writeFileSync(path.join(to, f), b.subarray(0, end));
        fs.truncateSync(path.join(to, f), b.length);
      }
      return to;
    },
    /** Commits t = from..to, each the whole of page 5 filled with t. */
    commit(store: PageStore, log: CommitLog, from: number, to: number): void {
      for (let t = from; t <= to; t++) {
        const changes = wholePage(t === 1 ? 0 : t - 1, t);
        store.apply(t, Uint32Array.of(5), changes);
        log.appendCommit(t, Uint32Array.of(5), changes);
      }
    },
  };
}

/** Where each synced write (its group record) starts in a log file: its records walked and their CRCs checked, so a spare's stale records after them end the walk. */
export function groupStarts(file: string): number[] {
  const seq = Buffer.alloc(8);
  seq.writeUInt32LE(Number(/log-(\d+)\.wal$/.exec(file)![1]), 0);
  const seed = zlib.crc32(seq);
  const b = fs.readFileSync(file);
  const starts: number[] = [];
  for (let at = 0; at + 8 <= b.length; ) {
    const len = b.readUInt32LE(at);
    if (len === 0 || at + 8 + len > b.length || zlib.crc32(b.subarray(at + 8, at + 8 + len), seed) !== b.readUInt32LE(at + 4)) break;
    if (b[at + 8] === 5) starts.push(at);
    at += 8 + len;
  }
  return starts;
}
