// The addon's JavaScript surface: test hooks live in their own addon, and the constants
// C++ and TypeScript share are checked when the addon loads.
import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import path from 'node:path';
import { runScript, PKG } from './fixtures/run_script';
const load = createRequire(__filename);
const native = load('../../dist/native.js');

describe('native surface', () => {
  it('the production addon exports no test or benchmark hooks; the hooks addon does', () => {
    const addon = load(path.join(PKG, 'build/Release/node_dsm.node'));
    for (const hook of ['faultOutsideRegion', 'touchAppView', 'measureFaultFloor', 'measureMprotect', 'measureMalloc', 'readByte', 'putCommitRecord']) {
      expect(addon[hook], hook).toBeUndefined();
    }
    const hooks = native.loadNativeHooks();
    expect(Object.keys(hooks).sort()).toEqual(['measureFaultFloor', 'measureMalloc', 'measureMprotect', 'putCommitRecord', 'readByte']);
    expect(hooks.measureMalloc(16, 1000, 1)).toBeGreaterThan(0);
  });

  it('measuring the fault floor leaves the signal handlers as they were', async () => {
    const r = await runScript(`
      const { createNode } = require('.');
      const hooks = require('./dist/native.js').loadNativeHooks();
      createNode({ regionSize: 1 << 20 }).then(async (dsm) => {
        console.log('floor', hooks.measureFaultFloor(200, 2) > 0);
        await dsm.transaction(() => { dsm.u32[200 * 1024] = 5; }); // a data page (page 0 is the heap's)
        console.log('dsm', dsm.u32[200 * 1024]);
        hooks.readByte(16);
        console.log('survived');
      });`);
    expect(r.stdout).toContain('floor true');
    expect(r.stdout).toContain('dsm 5');
    expect(r.signal).toBe('SIGSEGV');
    expect(r.stdout).not.toContain('survived');
  });

  it('bulk page calls refuse arrays of different lengths, pages outside the region and versions that are no whole number, changing nothing', async () => {
    const r = await runScript(`
      const { createNode } = require('.');
      const addon = require('./dist/native.js').loadNative();
      createNode({ regionSize: 1 << 20 }).then(async (dsm) => {
        const page = 200; // a data page (page 0 is the heap's)
        await dsm.transaction(() => { dsm.u32[page * 1024] = 5; });
        const tries = [
          [Uint32Array.of(page), new Float64Array(2), new Uint16Array(1)],
          [Uint32Array.of(page, 1 << 20), new Float64Array(2), new Uint16Array(2)],
          [Uint32Array.of(page, page + 1), Float64Array.of(1, NaN), new Uint16Array(2)],
          [Uint32Array.of(page, page + 1), Float64Array.of(1, -1), new Uint16Array(2)],
          [[page], [1], [0]],
          [Float64Array.of(page), Float64Array.of(1), new Uint16Array(1)], // pages of another element type
        ];
        for (const [p, v, o] of tries) {
          for (const fn of ['invalidatePages', 'installPages']) {
            try { addon[fn](p, v, o, null); console.log(fn, 'accepted'); } catch (e) { console.log(fn, e.name, e.message); }
          }
        }
        console.log('still', dsm.u32[page * 1024], addon.pageState(page) !== 0);
        await dsm.close();
      });`);
    const lines = r.stdout.trim().split('\n');
    expect(lines.filter((l) => l.endsWith('accepted'))).toEqual([]);
    expect(lines.filter((l) => /^(invalidatePages|installPages) (RangeError|TypeError) /.test(l))).toHaveLength(12);
    expect(r.stdout).toContain('differ in length');
    expect(r.stdout).toContain('page number outside the region');
    expect(r.stdout).toContain('not a whole number');
    expect(r.stdout).toContain('must be typed arrays');
    expect(r.stdout).toContain('still 5 true');
  });

  it('copyCurrentPages reads what a run wrote without a fault, and refuses arrays of another type or size', async () => {
    const r = await runScript(`
      const { createNode } = require('.');
      const addon = require('./dist/native.js').loadNative();
      createNode({ regionSize: 1 << 20 }).then(async (dsm) => {
        const page = 200; // a data page (page 0 is the heap's)
        const faults = () => { const f = dsm.stats().faults; return f.read + f.write; };
        const now = new Uint8Array(4096), then = new Uint8Array(4096);
        await dsm.transaction(() => { dsm.u32[page * 1024 + 3] = 7; });
        // The run's written page has lost the app view's access: a read there faults.
        faults(); // (stats() reads the heap's tables once after a run)
        const before = faults();
        addon.copyCurrentPages(Uint32Array.of(page), now);
        const copied = faults();
        const read = dsm.u32[page * 1024 + 3];
        console.log('outside', new Uint32Array(now.buffer)[3], read, 'faults', copied - before, faults() - copied);
        await dsm.transaction(() => {
          dsm.u32[page * 1024 + 3] = 9; // written in this run: the shadow keeps 7
          addon.copyCurrentPages(Uint32Array.of(page), now);
          addon.copyCommittedPages(Uint32Array.of(page), then);
          console.log('inside', new Uint32Array(now.buffer)[3], new Uint32Array(then.buffer)[3]);
          for (const [p, o] of [[Float64Array.of(page), now], [Uint32Array.of(page), new Uint16Array(2048)], [Uint32Array.of(page), new Uint8Array(100)], [Uint32Array.of(1 << 20), now]]) {
            try { addon.copyCurrentPages(p, o); console.log('accepted'); } catch (e) { console.log(e.name, e.message); }
          }
        });
        await dsm.close();
      });`);
    expect(r.stdout).toContain('outside 7 7 faults 0 1');
    expect(r.stdout).toContain('inside 9 7');
    expect(r.stdout).not.toContain('accepted');
    expect(r.stdout.match(/TypeError copyCurrentPages: pages must be a Uint32Array and out a Uint8Array/g)).toHaveLength(2);
    expect(r.stdout).toContain('RangeError copyCurrentPages: out must hold exactly one page per page number');
    expect(r.stdout).toContain('RangeError copyCurrentPages: page number outside the region');
  });

  it("the addon's constants are TypeScript's, including the commit kinds hold and release", () => {
    const addon = native.loadNative();
    expect(native.constantsMismatch(addon.constants)).toEqual([]);
    expect(addon.constants.commitKinds).toEqual({ commit: 1, sync: 2, hold: 3, release: 4 });
    expect(Object.keys(addon.constants.counters)).toEqual(Object.keys(native.Counter));
  });

  it('a constant changed on one side only fails the load with NativeLoadError naming it', async () => {
    const r = await runScript(`
      const n = require('./dist/native.js');
      n.CommitKind.hold = 9;
      delete n.Counter.invalidations;
      try { n.loadNative(); console.log('loaded'); } catch (e) { console.log(e.name, e.code); console.log(e.message); }`);
    expect(r.stdout).toContain('NativeLoadError ERR_DSM_NATIVE_LOAD');
    expect(r.stdout).toContain('commitKinds.hold: 9 in TypeScript, 3 in the addon');
    expect(r.stdout).toContain('counters.invalidations: missing in TypeScript, 10 in the addon');
    expect(r.stdout).toContain('npm run build');
    expect(r.stdout).not.toContain('loaded');
  });

  it('postCommit refuses a kind the commit channel does not know', async () => {
    const r = await runScript(`
      const { createNode } = require('.');
      const n = require('./dist/native.js').loadNative();
      createNode({ regionSize: 1 << 20 }).then(async (dsm) => {
        try { n.postCommit(7); console.log('posted'); } catch (e) { console.log(e.name, e.message); }
        await dsm.close();
      });`);
    expect(r.stdout).toContain('RangeError postCommit: unknown request kind 7');
    expect(r.code).toBe(0);
  });
});
