// The heap guards its metadata: a transaction that writes the superblock, the root table,
// the page-kind or link tables, or an allocator or chunk header other than through
// tx.alloc / tx.free / tx.setRoot is rolled back with ERR_DSM_HEAP_CORRUPTION, not retried,
// and the heap stays consistent. The heap's own calls, with data writes beside them, commit.
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
const load = createRequire(__filename);
const { createNode, HeapCorruptionError } = load('../..');
const { checkHeap } = load('../../dist/alloc/check.js');
const { geometry, PageKind, ZONE_AT, ZONE_FIRST, ZONE_MOST_PAGES, ZONE_REFILLS_AT } = load('../../dist/alloc/layout.js');

const PAGE = 4096;
const REGION = 32 << 20;
const g = geometry(REGION, PAGE);
let dsm: any;
beforeAll(async () => {
  dsm = await createNode({ regionSize: REGION });
});
afterAll(() => dsm.close());

const check = () => expect(checkHeap(dsm.heap, dsm)).toEqual([]);
/** The heap's tables and every header page, to compare before and after. */
const metadata = () => {
  const parts = [Buffer.from(dsm.u8.subarray(0, g.dataStart * PAGE))];
  for (let p = g.dataStart; p < g.pages; p++) {
    const k = dsm.u8[g.kindsAt + p];
    if (k === PageKind.chunk || k === PageKind.nodeHeader) parts.push(Buffer.from(dsm.u8.subarray(p * PAGE, (p + 1) * PAGE)));
  }
  return Buffer.concat(parts);
};

/** The first byte at which two u32 values differ, as an address of word `w`. */
const firstDiff = (w: number, a: number, b: number) => {
  let i = 0;
  while (((a >>> (8 * i)) & 255) === ((b >>> (8 * i)) & 255)) i++;
  return w * 4 + i;
};

/** Runs `write` in a transaction beside an ordinary data write; expects it refused at `address` (or what `address()` says after the run). */
async function refused(write: (tx: any) => void, at: number | (() => number), what: RegExp) {
  const data = await dsm.transaction((tx: any) => tx.alloc(8));
  const before = metadata();
  let runs = 0;
  const err = await dsm
    .transaction((tx: any) => {
      runs++;
      dsm.view(Uint32Array, data)[0] = 77;
      write(tx);
    })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  const address = typeof at === 'number' ? at : at();
  expect(err).toBeInstanceOf(HeapCorruptionError);
  expect(err).toMatchObject({ code: 'ERR_DSM_HEAP_CORRUPTION', address });
  expect(err.message).toMatch(what);
  expect(err.message).toContain(`address ${address} `);
  expect(runs).toBe(1); // not retried
  expect(dsm.view(Uint32Array, data)[0]).toBe(0); // the data write went with it
  expect(metadata().equals(before)).toBe(true);
  check();
}

/** A small object and the header page of its chunk. */
async function smallObject() {
  const p = await dsm.transaction((tx: any) => tx.alloc(40));
  const page = Math.floor(p / PAGE);
  return { p, header: page - (dsm.u8[g.kindsAt + page] & 0x3f) };
}

describe('the heap guards its metadata', () => {
  it("the README's old first example (dsm.u32[0] += 1) hits the superblock's magic number and is refused", async () => {
    await refused(() => (dsm.u32[0] += 1), 0, /superblock's magic number/);
  });

  it('writes over the root table are refused', async () => {
    const p = await dsm.transaction((tx: any) => {
      const p = tx.alloc(16);
      tx.setRoot('table', p);
      return p;
    });
    const slot = PAGE; // the first root slot: u32 name length, name, pointer at byte 60
    await refused(() => (dsm.u32[(slot + 60) / 4] = 1234), slot + 60, /named root slot 0/);
    await refused(() => (dsm.u8[slot + 4] = 'T'.charCodeAt(0)), slot + 4, /named root slot 0/);
    await refused(() => (dsm.u8[PAGE + 10 * 64] = 5), PAGE + 10 * 64, /named root slot 10/);
    expect(dsm.root('table')).toBe(p);
  });

  it('writes over the page-kind and link tables are refused', async () => {
    const at = g.kindsAt + g.dataStart + 3;
    await refused(() => (dsm.u8[at] = PageKind.allocated), at, new RegExp(`page-kind entry of page ${g.dataStart + 3}`));
    const link = g.linksAt + 8 * (g.dataStart + 1);
    await refused(() => (dsm.u32[link / 4] = 9), link, new RegExp(`link entry of page ${g.dataStart + 1}`));
  });

  it('writes over a chunk header and a node allocator header are refused', async () => {
    const { header } = await smallObject();
    await refused(() => (dsm.u32[(header * PAGE) / 4] ^= 1), header * PAGE, new RegExp(`chunk at page ${header}`));
    await refused(() => (dsm.u8[header * PAGE + 100] = 0xff), header * PAGE + 100, new RegExp(`chunk at page ${header}`));
    const node = dsm.u32[64]; // node 0's allocator header page
    expect(dsm.u8[g.kindsAt + node]).toBe(PageKind.nodeHeader);
    await refused(() => (dsm.u32[(node * PAGE) / 4 + 1] += 1), node * PAGE + 4, /allocator header/);
  });

  it("a write the heap's own call later overwrites is caught too", async () => {
    // Node 0's entry for 16-byte ordinary objects: free-list head, bump page, bump offset, chunk.
    const e = (dsm.u32[64] * PAGE) / 4;
    expect(dsm.u32[e]).toBe(0); // no free objects: tx.alloc bumps the offset
    let off = 0;
    await refused(
      (tx) => {
        off = dsm.u32[e + 2];
        dsm.u32[e + 2] += 32; // skip two slots; tx.alloc then writes the word itself
        tx.alloc(16);
      },
      () => firstDiff(e + 2, off, off + 32),
      /allocator header/,
    );
  });

  it("a write between two of the heap's own writes of the same word is caught", async () => {
    const e = (dsm.u32[64] * PAGE) / 4;
    let off = 0;
    await refused(
      (tx) => {
        tx.alloc(16);
        off = dsm.u32[e + 2]; // as the heap left it
        dsm.u32[e + 2] += 32;
        tx.alloc(16);
      },
      () => firstDiff(e + 2, off, off + 32),
      /allocator header/,
    );
  });

  it('a stray write into free memory does not end up in a new chunk header (or refuse the allocation)', async () => {
    // Empty this node's zone of spare chunks (zones.ts): a chunk of 4 KiB objects holds chunkPages - 1.
    const zone = () => dsm.u32[dsm.u32[64 + dsm.heap.slotOf(dsm.nodeId)] * 1024 + ZONE_AT];
    while (zone() > 0) await dsm.transaction((tx: any) => tx.alloc(4096, { kind: 'readMostly' }));
    // The refill takes its chunks (ZONE_FIRST, doubling per refill) as one block from the head
    // of the smallest non-empty free list of that order or more: scribble over every chunk
    // header it makes.
    const refills = dsm.u32[dsm.u32[64 + dsm.heap.slotOf(dsm.nodeId)] * 1024 + ZONE_REFILLS_AT];
    const span = Math.min(ZONE_FIRST * g.chunkPages * 2 ** refills, ZONE_MOST_PAGES);
    let k = Math.log2(span);
    while (dsm.u32[16 + k] === 0) k++;
    const block = dsm.u32[16 + k];
    await dsm.transaction(() => {
      for (let c = block; c < block + span; c += g.chunkPages) dsm.view(Uint32Array, c * PAGE, 1024).fill(0xdeadbeef); // free memory: not the guard's
    });
    const p = await dsm.transaction((tx: any) => tx.alloc(1500, { kind: 'private' })); // a class with no chunk yet
    const chunk = Math.floor(p / PAGE) - 1;
    expect(chunk >= block && chunk < block + span && (chunk - block) % g.chunkPages === 0).toBe(true);
    expect(dsm.u8[g.kindsAt + chunk]).toBe(PageKind.chunk);
    expect(dsm.u32[(chunk * PAGE) / 4 + 100]).toBe(0);
    // The spare chunks carved with it are clean too (the checker reads their headers).
    check();
  });

  it('a write that puts back the same value is no change', async () => {
    const data = await dsm.transaction((tx: any) => tx.alloc(8));
    await dsm.transaction(() => {
      dsm.u32[0] = dsm.u32[0];
      dsm.view(Uint32Array, data)[0] = 5;
    });
    expect(dsm.view(Uint32Array, data)[0]).toBe(5);
  });

  it('alloc, free and setRoot beside ordinary data writes commit, over many chunks and blocks', async () => {
    const made = await dsm.transaction((tx: any) => {
      const out: number[] = [];
      for (let i = 0; i < 400; i++) {
        const size = [8, 40, 300, 2000, 5000, 70_000][i % 6];
        const p = tx.alloc(size, i % 4 === 0 ? { kind: 'readMostly' } : undefined);
        dsm.view(Uint8Array, p, size).fill(i & 255 || 1);
        out.push(p);
      }
      tx.setRoot('many', out[0]);
      return out;
    });
    await dsm.transaction((tx: any) => {
      for (let i = 0; i < made.length; i += 2) tx.free(made[i]);
      // Freed memory goes back to the heap within this run: new chunks and blocks may reuse it.
      for (let i = 0; i < 100; i++) dsm.view(Uint8Array, tx.alloc(64 + i * 40), 4)[3] = 9;
      tx.setRoot('many', made[1]);
      tx.setRoot('gone', made[3]);
      tx.setRoot('gone', 0);
    });
    expect(dsm.root('many')).toBe(made[1]);
    expect(dsm.root('gone')).toBeUndefined();
    expect(dsm.u8[made[5]]).toBe(5);
    check();
  });

  it('a refused transaction in a run of good ones changes nothing else', async () => {
    const c = await dsm.transaction((tx: any) => {
      const p = tx.alloc(4);
      tx.setRoot('counter', p);
      return p;
    });
    for (let i = 0; i < 20; i++) {
      const bad = dsm.transaction((tx: any) => {
        dsm.view(Uint32Array, c)[0] += 100;
        tx.alloc(24);
        dsm.u32[g.linksAt / 4 + i] += 1;
      });
      await expect(bad).rejects.toMatchObject({ code: 'ERR_DSM_HEAP_CORRUPTION' });
      await dsm.transaction(() => {
        dsm.view(Uint32Array, c)[0] += 1;
      });
    }
    expect(dsm.view(Uint32Array, c)[0]).toBe(20);
    check();
  });
});
