// Walks the whole heap and reports every inconsistency: blocks that overlap or leave pages
// unaccounted, free lists that disagree with the page kinds, chunks with bad tags, object
// free lists that disagree with the chunks' free bitmaps, free memory that is not zero.
// Tests run it after random work.
import type { Heap, HeapView } from './heap';
import { CHUNK_BITMAP, CLASSES, ENTRY_WORDS, KINDS, PageKind, SB, SLOTS, SPARE_KIND, tagParts, ZONE_AT, ZONE_MAX } from './layout';

export function checkHeap(heap: Heap, v: HeapView): string[] {
  const b = heap.manager;
  const g = heap.geometry!;
  const ps = v.pageSize;
  const pw = ps / 4;
  const errors: string[] = [];
  // The manager works from the geometry; the superblock must say the same.
  if (v.u32[SB.dataStart] !== b.dataStart || v.u32[SB.pages] !== b.pages || v.u32[SB.maxOrder] !== b.maxOrder) {
    errors.push(`the superblock's shape (first data page ${v.u32[SB.dataStart]}, ${v.u32[SB.pages]} pages, largest order ${v.u32[SB.maxOrder]}) is not the region's (${b.dataStart}, ${b.pages}, ${b.maxOrder})`);
  }
  const lists = b.freeLists();
  const inList = new Map<number, number>();
  lists.forEach((l, k) => l.forEach((p) => inList.set(p, k)));
  // Zero checks read every free page: only on small regions (the tests').
  const checkZero = v.regionSize <= 64 << 20;
  const zeroFrom = (from: number, to: number, what: string): void => {
    if (!checkZero) return;
    for (let i = from; i < to; i++) {
      if (v.u8[i] !== 0) {
        errors.push(`${what}: byte ${i} is ${v.u8[i]}, not zero`);
        return;
      }
    }
  };
  const freeSlots = new Map<number, number>(); // chunk -> free bits set
  const headers = new Set<number>();
  const spares: number[] = [];
  const owners = new Map<number, number>(); // node id + 1 -> its slot
  for (let n = 0; n < SLOTS; n++) {
    if (v.u32[SB.slotHeaders + n]) headers.add(v.u32[SB.slotHeaders + n]);
    const o = v.u32[SB.slotOwners + n];
    if (o === 0) {
      if (v.u32[SB.slotHeaders + n]) errors.push(`allocator slot ${n} has a header page and no owner`);
      continue;
    }
    if (owners.has(o)) errors.push(`node ${o - 1} owns allocator slots ${owners.get(o)} and ${n}`);
    owners.set(o, n);
  }
  for (let p = b.dataStart; p < b.pages; ) {
    const k = b.kind(p);
    let span = 1;
    if (k >= PageKind.freeBase && k < PageKind.allocated) {
      const order = k - PageKind.freeBase;
      span = 1 << order;
      if (inList.get(p) !== order) errors.push(`free block at page ${p} (order ${order}) is not in its free list`);
      inList.delete(p);
      zeroFrom(p * ps, (p + span) * ps, `free block at page ${p}`);
    } else if ((k & 0xc0) === PageKind.allocated) {
      span = 1 << (k & 0x3f);
    } else if (k === PageKind.chunk) {
      span = g.chunkPages;
      const t = tagParts(v.u32[p * pw]);
      if (!t.ok) errors.push(`chunk at page ${p} has a bad tag ${v.u32[p * pw].toString(16)}`);
      for (let i = 1; i < span; i++) if (b.kind(p + i) !== (PageKind.chunk | i)) errors.push(`page ${p + i} of the chunk at ${p} has kind ${b.kind(p + i)}`);
      let bits = 0;
      for (let w = CHUNK_BITMAP; w < pw; w++) for (let x = v.u32[p * pw + w]; x; x &= x - 1) bits++;
      freeSlots.set(p, bits);
      if (t.ok && t.kind === SPARE_KIND) {
        spares.push(p);
        for (let w = 1; w < pw; w++) if (v.u32[p * pw + w] !== 0) errors.push(`spare chunk at page ${p}: header word ${w} is not zero`);
        zeroFrom((p + 1) * ps, (p + span) * ps, `spare chunk at page ${p}`);
      }
      p += span;
      continue;
    } else if (k === PageKind.nodeHeader) {
      if (!headers.has(p)) errors.push(`page ${p} is marked as an allocator header but no node has it`);
    } else {
      errors.push(`page ${p} starts no block (kind ${k})`);
    }
    for (let i = 1; i < span; i++) if (b.kind(p + i) !== PageKind.none) errors.push(`page ${p + i} inside the block at ${p} has kind ${b.kind(p + i)}`);
    if (p + span > b.pages) errors.push(`block at ${p} runs past the region`);
    p += span;
  }
  for (const [p] of inList) errors.push(`free list holds page ${p}, which is not a free block head`);
  for (let n = 0; n < SLOTS; n++) {
    const h = v.u32[SB.slotHeaders + n];
    if (!h) continue;
    if (b.kind(h) !== PageKind.nodeHeader) errors.push(`slot ${n}'s allocator header page ${h} has kind ${b.kind(h)}`);
    for (let kind = 0; kind < Object.keys(KINDS).length; kind++) {
      for (let cls = 0; cls < CLASSES.length; cls++) {
        const e = h * pw + (kind * CLASSES.length + cls) * ENTRY_WORDS;
        for (let obj = v.u32[e], guard = 0; obj; obj = v.u32[obj >>> 2], guard++) {
          if (guard > v.regionSize / 16) {
            errors.push(`free list of slot ${n} class ${cls} loops`);
            break;
          }
          const page = Math.floor(obj / ps);
          const ik = b.kind(page);
          const chunk = page - (ik & 0x3f);
          const t = tagParts(v.u32[chunk * pw]);
          if ((ik & 0xc0) !== PageKind.chunk || (ik & 0x3f) === 0 || !t.ok || t.slot !== n || t.cls !== cls || t.kind !== kind) {
            errors.push(`object ${obj} is in the wrong free list (slot ${n}, kind ${kind}, class ${cls})`);
            break;
          }
          const bytes = CLASSES[cls];
          const slot = ((ik & 0x3f) - 1) * Math.floor(ps / bytes) + (obj - page * ps) / bytes;
          if (!((v.u32[chunk * pw + CHUNK_BITMAP + (slot >>> 5)] >>> (slot & 31)) & 1)) errors.push(`object ${obj} is in a free list but its slot is not marked free`);
          freeSlots.set(chunk, (freeSlots.get(chunk) ?? 0) - 1);
          zeroFrom(obj + 4, obj + bytes, `free object ${obj}`);
        }
      }
    }
  }
  for (const [chunk, left] of freeSlots) if (left !== 0) errors.push(`chunk at page ${chunk}: ${left} slots marked free that no free list holds`);
  // Zones: every listed spare is a spare chunk of that slot, listed once; every spare chunk is listed.
  const listed = new Set<number>();
  for (let n = 0; n < SLOTS; n++) {
    const h = v.u32[SB.slotHeaders + n];
    if (!h) continue;
    if (v.u32[h * pw + ZONE_AT] > ZONE_MAX) errors.push(`slot ${n}'s zone lists ${v.u32[h * pw + ZONE_AT]} spare chunks, more than ${ZONE_MAX}`);
    for (const c of heap.zoneSpares(h)) {
      const t = tagParts(v.u32[c * pw]);
      if (listed.has(c)) errors.push(`spare chunk at page ${c} is listed twice`);
      listed.add(c);
      if (b.kind(c) !== PageKind.chunk || !t.ok || t.kind !== SPARE_KIND || t.slot !== n) errors.push(`slot ${n}'s zone lists page ${c}, which is not a spare chunk of slot ${n}`);
    }
  }
  for (const c of spares) if (!listed.has(c)) errors.push(`spare chunk at page ${c} is in no zone`);
  return errors;
}
