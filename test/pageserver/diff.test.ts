// The page server's diff decoder against the native core's encoder: commits made by a real
// region (begin, writes, end, commit with changes) applied in TypeScript give the committed pages.
import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { applyDiff, encodeDiff, validDiff } from '../../lib/pageserver/diff';
import { parseChanges } from '../../lib/pageserver/commit_changes';
import { NOT_CARRIED } from '../../lib/service/changes';
import { rng } from './fixtures/commit_stream.mjs';
const load = createRequire(__filename);
const native = load('../../dist/native.js');
const { DEFAULT_BASE } = load('../../dist/options.js');

describe('page diffs', () => {
  it('applying the native encoder’s diffs gives the committed pages, and the TypeScript encoder makes the same bytes', () => {
    const seed = Date.now() % 1e9;
    console.log(`seed ${seed}`);
    const rand = rng(seed);
    const ps = 4096;
    const numPages = 32;
    const addon = native.loadNative();
    const region = addon.open({ base: DEFAULT_BASE, size: numPages * ps, pageShift: 12, startInvalid: false });
    try {
      const app = new Uint8Array(region.buffer);
      const model = Array.from({ length: numPages }, () => new Uint8Array(ps));
      const versions = new Array(numPages).fill(0);
      let diffs = 0;
      let whole = 0;
      for (let t = 1; t <= 300; t++) {
        addon.begin();
        const touched = 1 + Math.floor(rand() * 4);
        for (let k = 0; k < touched; k++) {
          const page = Math.floor(rand() * numPages);
          if (rand() < 0.05) {
            for (let i = 0; i < ps; i++) app[page * ps + i] = Math.floor(rand() * 256);
          } else {
            for (let e = 1 + Math.floor(rand() * 5); e > 0; e--) {
              const at = Math.floor(rand() * ps);
              for (let i = at; i < Math.min(ps, at + 1 + Math.floor(rand() * 30)); i++) app[page * ps + i] = Math.floor(rand() * 256);
            }
          }
        }
        expect(addon.end()).toBeGreaterThanOrEqual(0);
        const [pages, changes] = addon.commit(t, 1, true) as [Uint32Array, Buffer];
        const parsed = parseChanges(t, pages, changes, ps, numPages);
        for (let i = 0; i < parsed.count; i++) {
          const page = pages[i];
          expect(parsed.replaces[i]).toBe(versions[page]);
          expect(parsed.len[i]).toBeGreaterThanOrEqual(0);
          const diff = changes.subarray(parsed.at[i], parsed.at[i] + parsed.len[i]);
          const committed = new Uint8Array(addon.copyCommitted(page));
          expect(Buffer.from(encodeDiff(model[page], committed)).equals(Buffer.from(diff))).toBe(true);
          // Applied from its place in the commit's changes, as the store does.
          applyDiff(model[page], changes, parsed.at[i], parsed.len[i]);
          expect(Buffer.from(model[page]).equals(Buffer.from(committed))).toBe(true);
          versions[page] = t;
          if (diff.length === ps) whole++;
          else diffs++;
        }
      }
      // Both forms were exercised.
      expect(diffs).toBeGreaterThan(100);
      expect(whole).toBeGreaterThan(0);
    } finally {
      addon.close();
    }
  });

  it('refuses malformed diffs as the native validator does', () => {
    const ps = 4096;
    const b = (...x: number[]) => Uint8Array.from(x);
    expect(validDiff(b(), ps)).toBe(true);
    expect(validDiff(b(1, 0, 1, 0, 9, 9, 9, 9), ps)).toBe(true);
    expect(validDiff(b(1, 0, 2, 0, 9, 9, 9, 9), ps)).toBe(false); // two words promised, one sent
    expect(validDiff(b(1, 0, 0, 0), ps)).toBe(false); // an empty run
    expect(validDiff(b(0xff, 0x03, 2, 0, 1, 1, 1, 1, 1, 1, 1, 1), ps)).toBe(false); // past the end
    expect(validDiff(b(4, 0, 1, 0, 1, 1, 1, 1, 4, 0, 1, 0, 2, 2, 2, 2), ps)).toBe(false); // overlapping
    expect(validDiff(b(4, 0, 1), ps)).toBe(false); // a cut header
    expect(validDiff(new Uint8Array(ps + 1), ps)).toBe(false);
    expect(validDiff(new Uint8Array(ps), ps)).toBe(true); // a whole page
  });

  it('refuses malformed commit records whole', () => {
    const head = (version: number, len: number) => {
      const h = new Uint8Array(12);
      new DataView(h.buffer).setUint32(0, version, true);
      new DataView(h.buffer).setUint32(8, len, true);
      return h;
    };
    const cat = (...p: Uint8Array[]) => Uint8Array.from(p.flatMap((x) => [...x]));
    const one = Uint32Array.of(3);
    const ok = cat(head(0, 8), Uint8Array.of(1, 0, 1, 0, 5, 5, 5, 5));
    const parsed = parseChanges(5, one, ok, 4096, 8);
    expect([parsed.count, parsed.at[0], parsed.len[0]]).toEqual([1, 12, 8]);
    expect(parseChanges(5, one, head(0, NOT_CARRIED), 4096, 8).len[0]).toBe(-1); // left out
    const none = parseChanges(5, Uint32Array.of(1, 2), new Uint8Array(0), 4096, 8);
    expect([none.count, ...none.len.subarray(0, 2)]).toEqual([2, -1, -1]);
    const bad: Array<[Uint32Array, Uint8Array]> = [
      [Uint32Array.of(8), ok], // outside the region
      [Uint32Array.of(3, 3), cat(ok, ok)], // a page twice
      [one, ok.subarray(0, 15)], // a diff cut short
      [one, ok.subarray(0, 10)], // a header cut short
      [one, cat(ok, Uint8Array.of(0))], // bytes after the last change
      [Uint32Array.of(3, 4), ok], // a change missing
      [one, cat(head(0, 4), Uint8Array.of(1, 0, 0, 0))], // an invalid diff
    ];
    for (const [pages, changes] of bad) {
      expect(() => parseChanges(5, pages, changes, 4096, 8)).toThrow(expect.objectContaining({ code: 'ERR_DSM_STORE' }));
    }
  });
});
