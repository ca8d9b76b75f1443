// What must be observed from outside a process: crashes stay crashes, WebAssembly keeps
// trapping, the service thread cannot deadlock, options are checked, processes exit.
import { describe, expect, it } from 'vitest';
import { runScript } from './fixtures/run_script';

const open = `const { createNode } = require('.');`;

describe('process lifecycle', () => {
  it('WebAssembly out-of-bounds traps still throw while the DSM is mapped', async () => {
    const r = await runScript(`${open}
      (async () => {
        const dsm = await createNode({ regionSize: 16 << 20 });
        // (module (memory 1) (func (export "f") (result i32) (i32.load (i32.const 0x7ffffff0))))
        const bytes = new Uint8Array([0,97,115,109,1,0,0,0,1,5,1,96,0,1,127,3,2,1,0,5,3,1,0,1,7,5,1,1,102,0,0,10,13,1,11,0,65,240,255,255,255,7,40,2,0,11]);
        const { instance } = await WebAssembly.instantiate(bytes);
        try { instance.exports.f(); console.log('no trap'); } catch (e) { console.log(e.constructor.name, e.message); }
        await dsm.transaction(() => { dsm.u32[1 << 20] = 1; });
        await dsm.close();
      })();`);
    expect(r.stdout).toMatch(/RuntimeError .*out of bounds/);
    expect(r.code).toBe(0);
  });

  it('a real segfault outside the region still kills the process', async () => {
    const r = await runScript(`${open}
      const hooks = require('./dist/native.js').loadNativeHooks();
      createNode({ regionSize: 16 << 20 }).then(() => { hooks.readByte(16); console.log('survived'); });`);
    expect(r.signal).toBe('SIGSEGV');
    expect(r.stdout).not.toContain('survived');
  });

  it('a fault on the app view raised by the service thread aborts with a message instead of hanging', async () => {
    const r = await runScript(`${open}
      createNode({ regionSize: 16 << 20 }).then((dsm) => dsm._testServiceTouchAppView(3000)); // a page nobody touched`);
    expect(r.signal).toBe('SIGABRT');
    expect(r.stderr).toContain('the service thread touched the app view');
  });

  it('a taken base address gives ERR_DSM_BASE_IN_USE; a second node gives ERR_DSM_ALREADY_OPEN', async () => {
    const r = await runScript(`${open}
      (async () => {
        // The first mapping of this very process: certainly taken.
        const first = require('fs').readFileSync('/proc/self/maps', 'utf8').split('\\n')[0];
        const base = parseInt(first.split('-')[0], 16);
        try { await createNode({ base, regionSize: 1 << 20 }); console.log('mapped?!'); } catch (e) { console.log(e.code, e.message); }
        const dsm = await createNode({ regionSize: 1 << 20 });
        try { await createNode({ regionSize: 1 << 20, base: 0x500000000000 }); } catch (e) { console.log(e.code); }
        await dsm.close();
      })();`);
    expect(r.stdout).toMatch(/ERR_DSM_BASE_IN_USE .*already in use/);
    expect(r.stdout).toContain('ERR_DSM_ALREADY_OPEN');
    expect(r.code).toBe(0);
  });

  it('the default base stays free in a process whose JS heap has grown, where V8 has mapped pages at random', async () => {
    // V8 puts each heap page at a random address; a base among them is taken now and then
    // (a test node once failed so), and more often the longer a process has run.
    const r = await runScript(`${open}
      const { DEFAULT_BASE, MAX_REGION_SIZE } = require('./dist/options.js');
      const keep = [];
      for (let i = 0; i < 13000; i++) keep.push(new Array(10000).fill(i + 0.5)); // ~1 GiB of 80 KB arrays
      const maps = require('fs').readFileSync('/proc/self/maps', 'utf8').trim().split('\\n').map((l) => {
        const [range, , , , , name] = l.split(/\\s+/);
        const [a, b] = range.split('-').map((x) => parseInt(x, 16));
        return { a, b, name: name ?? '' };
      });
      const KERNEL_AREA = 0x7000 * 2 ** 32; // the kernel's own mmaps grow down from 0x7f...
      const random = maps.filter((m) => !m.name && m.a >= 2 ** 32 && m.a < KERNEL_AREA);
      const end = DEFAULT_BASE + MAX_REGION_SIZE;
      console.log(JSON.stringify({
        random: random.length,
        upperHalf: random.filter((m) => m.a >= 2 ** 45).length,
        inRange: maps.filter((m) => m.a < end && m.b > DEFAULT_BASE).length,
        randomAbove: random.filter((m) => m.b > DEFAULT_BASE).length,
        kernelBelow: maps.filter((m) => m.a >= KERNEL_AREA && m.a < end).length,
      }));
      createNode({ regionSize: MAX_REGION_SIZE }).then(async (dsm) => {
        await dsm.transaction(() => { dsm.u32[dsm.u32.length - 1] = 7; });
        console.log('mapped', dsm.u32[dsm.u32.length - 1]);
        await dsm.close();
      }, (e) => console.log(e.code, e.message));`, 120_000);
    const seen = JSON.parse(r.stdout.split('\n')[0]);
    // The hazard is real: thousands of V8 mappings, half of them where the old base was.
    expect(seen.random).toBeGreaterThan(1000);
    expect(seen.upperHalf).toBeGreaterThan(100);
    expect(seen).toMatchObject({ inRange: 0, randomAbove: 0, kernelBelow: 0 });
    expect(r.stdout).toContain('mapped 7');
    expect(r.code).toBe(0);
  });

  it('invalid options give ERR_DSM_INVALID_OPTION naming the option', async () => {
    const r = await runScript(`${open}
      (async () => {
        const cases = [{ regionSize: 0 }, { regionSize: 5000 }, { regionSize: 8 * 1024 ** 3 }, { base: 12345 },
          { regionSize: 1 << 20, colour: 'red' }, { pageSize: 6000 }, { maxRetries: -1 }, { listen: 'nope' },
          { listen: '127.0.0.1:0' }, { durability: 'tape' }, { replicas: 0 }, { replicas: 17 }];
        for (const c of cases) {
          try { const d = await createNode(c); console.log('accepted', JSON.stringify(c)); await d.close(); }
          catch (e) { console.log(e.code, '|', e.message); }
        }
      })();`);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(12);
    for (const l of lines) expect(l.startsWith('ERR_DSM_INVALID_OPTION |')).toBe(true);
    for (const word of ['regionSize', 'regionSize', '4 GiB', 'base', 'colour', 'pageSize', 'maxRetries', 'listen', 'secret', 'durability', 'replicas']) {
      expect(r.stdout).toContain(word);
    }
  });

  it('exits cleanly after close(); views empty; calls after close throw ERR_DSM_CLOSED; a new node can follow', async () => {
    const r = await runScript(`${open}
      (async () => {
        let dsm = await createNode({ regionSize: 16 << 20 });
        const view = dsm.u32;
        await dsm.transaction(() => { view[1 << 20] = 1; });
        await dsm.close();
        await dsm.close();
        console.log('length', view.length, dsm.u8.length);
        // A second close() while the first runs resolves only once the first has finished.
        const other = await createNode({ regionSize: 16 << 20 });
        let first = false;
        other.close().then(() => (first = true));
        await other.close();
        console.log('second close after the first', first);
        try { dsm.stats(); } catch (e) { console.log(e.code); }
        await dsm.transaction(() => 1).catch((e) => console.log(e.code));
        dsm = await createNode({ regionSize: 16 << 20 });
        await dsm.transaction(() => { dsm.u32[1 << 20] = 2; });
        console.log('again', dsm.u32[1 << 20]);
        await dsm.close();
      })();`);
    expect(r.stdout).toContain('length 0 0');
    expect(r.stdout).toContain('second close after the first true');
    expect(r.stdout.match(/ERR_DSM_CLOSED/g)).toHaveLength(2);
    expect(r.stdout).toContain('again 2');
    expect(r.code).toBe(0);
    expect(r.signal).toBeNull();
  });

  it('exits cleanly when the program just ends without close()', async () => {
    const r = await runScript(`${open}
      createNode({ regionSize: 16 << 20 }).then(async (dsm) => {
        await dsm.transaction(() => { dsm.u32[1 << 20] = 7; });
        console.log('done', dsm.u32[1 << 20]);
      });`);
    expect(r.stdout).toContain('done 7');
    expect(r.code).toBe(0);
    expect(r.signal).toBeNull();
  });

  it('both require() and import work', async () => {
    const cjs = await runScript(`const m = require('.'); console.log(typeof m.createNode, typeof m.DsmError);`);
    expect(cjs.stdout.trim()).toBe('function function');
    const esm = await runScript(`import('node-dsm').catch(() => import(require('path').resolve('dist/index.mjs'))).then((m) => console.log(typeof m.createNode, typeof m.DsmError, typeof m.default));`);
    expect(esm.stdout.trim()).toBe('function function object');
  });
});
