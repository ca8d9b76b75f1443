// Which allocator slot a node claims (heap.ts claimSlot), on a heap in plain memory: a slot
// never used first; once none is left, a departed node's whose header page is not lost;
// with none of those either, a clear error.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
const load = createRequire(__filename);
const { Heap } = load('../../dist/alloc/heap.js');
const { SB, SLOTS } = load('../../dist/alloc/layout.js');
const { PageState } = load('../../dist/native.js');

const PAGE = 4096;
const REGION = 16 << 20;

function plainHeap(takeable: (owner: number, header: number) => boolean) {
  const buf = new ArrayBuffer(REGION);
  const view = { u8: new Uint8Array(buf), u32: new Uint32Array(buf), nodeId: 0, pageSize: PAGE, regionSize: REGION };
  // Every page readable: the journal reads what it overwrites.
  const heap = new Heap(view, new Uint8Array(REGION / PAGE).fill(PageState.read), undefined, undefined, takeable);
  /** One allocation as node `id`, committed; returns the slot it went through. */
  const allocAs = (id: number): number => {
    view.nodeId = id;
    heap.beginRun();
    heap.alloc(16);
    heap.afterCommit();
    return heap.slotOf(id);
  };
  return { heap, view, allocAs };
}

describe('allocator slot claims', () => {
  it('take a never-used slot while one is left, then a departed node\'s whose header page is not lost, else fail clearly', async () => {
    const departed = new Set<number>();
    const lost = new Set<number>();
    const { heap, view, allocAs } = plainHeap((owner, header) => departed.has(owner) && !lost.has(header));
    await heap.open(async (fn: () => unknown) => fn());
    expect(allocAs(0)).toBe(0);
    expect(allocAs(5)).toBe(1);
    expect(allocAs(7)).toBe(2);
    departed.add(5).add(7);
    // Departed nodes' slots are not taken while never-used ones are left.
    expect(allocAs(8)).toBe(3);
    // Every other slot owned by ids still members.
    heap.beginRun();
    for (let s = 4; s < SLOTS; s++) heap._testWriteSuperblock(SB.slotOwners + s, 1000 + s + 1);
    heap.afterCommit();
    // Node 5's header page is lost: its slot is skipped, node 7's taken over.
    lost.add(view.u32[SB.slotHeaders + 1]);
    const before = view.u32[SB.slotHeaders + 2];
    expect(allocAs(300)).toBe(2);
    expect(view.u32[SB.slotHeaders + 2]).toBe(before); // its header page, with node 7's chunks and free objects
    expect(view.u32[SB.slotOwners + 2]).toBe(301);
    // No slot left to take.
    expect(() => allocAs(301)).toThrow(/all 256 allocator slots of the heap belong to live nodes/);
  });
});
