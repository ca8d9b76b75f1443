// Walks the whole heap and reports every inconsistency: blocks that overlap or leave pages
// unaccounted, free lists that disagree with the page kinds, small objects with bad headers,
// object free lists that disagree with the objects' states. Tests run it after random work.
import type { Heap, HeapView } from './heap';
import { CLASSES, ENTRY_WORDS, HEADER, KINDS, MAX_NODES, PageKind, SB, tagParts } from './layout';

export function checkHeap(heap: Heap, v: HeapView): string[] {
  const b = heap.manager;
  const errors: string[] = [];
  const lists = b.freeLists();
  const inList = new Map<number, number>();
  lists.forEach((l, k) => l.forEach((p) => inList.set(p, k)));
  let freeObjectsInPages = 0;
  for (let p = b.dataStart; p < b.pages; ) {
    const k = b.kind(p);
    let span = 1;
    if (k >= PageKind.freeBase && k < PageKind.allocated) {
      const order = k - PageKind.freeBase;
      span = 1 << order;
      if (inList.get(p) !== order) errors.push(`free block at page ${p} (order ${order}) is not in its free list`);
      inList.delete(p);
    } else if ((k & 0xc0) === PageKind.allocated) {
      span = 1 << (k & 0x3f);
    } else if (k === PageKind.small) {
      for (let off = 0; off < v.pageSize; ) {
        const w = (p * v.pageSize + off) / 4;
        if (v.u32[w] === 0) break; // the unused tail of the page being filled
        const t = tagParts(v.u32[w]);
        if (!t.ok || t.cls >= CLASSES.length) {
          errors.push(`bad object header at ${p * v.pageSize + off}`);
          break;
        }
        const st = v.u32[w + 1];
        if (st !== 1 && st !== 2) errors.push(`bad object state ${st} at ${p * v.pageSize + off}`);
        if (st === 2) freeObjectsInPages++;
        off += CLASSES[t.cls];
      }
    } else {
      errors.push(`page ${p} starts no block (kind ${k})`);
    }
    for (let i = 1; i < span; i++) if (b.kind(p + i) !== PageKind.none) errors.push(`page ${p + i} inside the block at ${p} has kind ${b.kind(p + i)}`);
    if (p + span > b.pages) errors.push(`block at ${p} runs past the region`);
    p += span;
  }
  for (const [p] of inList) errors.push(`free list holds page ${p}, which is not a free block head`);
  let freeObjectsInLists = 0;
  for (let n = 0; n < MAX_NODES; n++) {
    const h = v.u32[SB.nodeHeaders + n];
    if (!h) continue;
    for (let kind = 0; kind < Object.keys(KINDS).length; kind++) {
      for (let cls = 0; cls < CLASSES.length; cls++) {
        const e = (h * v.pageSize) / 4 + (kind * CLASSES.length + cls) * ENTRY_WORDS;
        for (let obj = v.u32[e], guard = 0; obj; obj = v.u32[(obj + HEADER) / 4], guard++) {
          const t = tagParts(v.u32[obj / 4]);
          if (guard > v.regionSize / 16) {
            errors.push(`free list of node ${n} class ${cls} loops`);
            break;
          }
          if (!t.ok || t.node !== n || t.cls !== cls || t.kind !== kind) errors.push(`object ${obj} in the wrong free list`);
          if (v.u32[obj / 4 + 1] !== 2) errors.push(`object ${obj} is in a free list but not free`);
          freeObjectsInLists++;
        }
      }
    }
  }
  if (freeObjectsInLists !== freeObjectsInPages) errors.push(`${freeObjectsInPages} free objects in pages, ${freeObjectsInLists} in free lists`);
  return errors;
}
