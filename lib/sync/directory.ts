// The directory of lock state objects: one named root ("\0sync") for all of them, so they
// take none of the 64 root names programs use. A chain of 4 KiB heap objects:
//   word 0: the next directory object (0: none)  word 1: entries used
//   from byte 64, ENTRIES_PER_PAGE entries of 64 bytes: u32 key length, the key's UTF-8
//   bytes ("l:" + the name, at most KEY_MAX), u32 pointer at byte 60.
// Each state object is a 4 KiB heap object of its own (so no other data shares its page),
// made by the first caller; it never moves, so pointers are kept once their transaction
// committed. Barriers kept their state here too before they became one message round
// (lib/service/barriers.ts): heaps from then still hold "b:" entries, named as such.
import { InvalidOptionError } from '../errors';
import type { SyncNode } from './sync_host';

export const DIRECTORY_ROOT = '\0sync';
/** Bytes of a directory object and of a lock's state object. */
export const SYNC_OBJECT_BYTES = 4096;
const ENTRIES_AT = 64;
const ENTRY_BYTES = 64;
const KEY_MAX = 56;
/** The longest barrier or lock name: the key less its prefix (barriers send theirs as barrier_wire.ts BARRIER_NAME_MAX). */
export const NAME_MAX = KEY_MAX - 2;
const ENTRIES_PER_PAGE = (SYNC_OBJECT_BYTES - ENTRIES_AT) / ENTRY_BYTES;
const PREFIX = { lock: 'l:' } as const;
const NAMES: Record<string, string> = { 'b:': 'barrier ', 'l:': 'lock ' };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class SyncDirectory {
  private readonly known = new Map<string, number>();

  constructor(private readonly node: SyncNode) {}

  /** The state object of lock `name`, made zeroed by the first caller in the cluster. */
  async object(what: keyof typeof PREFIX, name: string): Promise<number> {
    checkSyncName(what, name);
    const key = PREFIX[what] + name;
    const bytes = encoder.encode(key);
    const known = this.known.get(key);
    if (known !== undefined) return known;
    const node = this.node;
    const u32 = node.u32;
    const u8 = new Uint8Array(u32.buffer, u32.byteOffset, u32.byteLength);
    // One transaction reads the whole chain: two nodes making the same name at once
    // conflict, and the second finds the first's object when it runs again.
    const ptr = await node.run((tx) => {
      let dir = node.root(DIRECTORY_ROOT);
      if (!dir) {
        dir = tx.alloc(SYNC_OBJECT_BYTES);
        tx.setRoot(DIRECTORY_ROOT, dir);
      }
      let last = dir;
      for (let d = dir; d !== 0; d = u32[d >>> 2]) {
        last = d;
        const found = find(u8, u32, d, bytes);
        if (found !== 0) return found;
      }
      if (u32[(last >>> 2) + 1] === ENTRIES_PER_PAGE) {
        const next = tx.alloc(SYNC_OBJECT_BYTES);
        u32[last >>> 2] = next;
        last = next;
      }
      const obj = tx.alloc(SYNC_OBJECT_BYTES);
      const n = u32[(last >>> 2) + 1];
      const e = last + ENTRIES_AT + n * ENTRY_BYTES;
      u32[e >>> 2] = bytes.length;
      u8.set(bytes, e + 4);
      u32[(e + 60) >>> 2] = obj;
      u32[(last >>> 2) + 1] = n + 1;
      return obj;
    });
    this.known.set(key, ptr);
    return ptr;
  }
}

/** Refuses what cannot name a barrier or a lock: not a string, empty, or over NAME_MAX UTF-8 bytes. */
export function checkSyncName(what: 'barrier' | 'lock', name: string): void {
  if (typeof name !== 'string' || name.length === 0) throw new InvalidOptionError(`dsm.${what}: the name must be a non-empty string, got ${typeof name === 'string' ? 'an empty string' : `${typeof name} ${String(name)}`}`);
  if (encoder.encode(name).length > NAME_MAX) throw new InvalidOptionError(`dsm.${what}: the name "${name}" is too long: at most ${NAME_MAX} UTF-8 bytes`);
}

function find(u8: Uint8Array, u32: Uint32Array, dir: number, key: Uint8Array): number {
  const n = Math.min(u32[(dir >>> 2) + 1], ENTRIES_PER_PAGE);
  for (let i = 0; i < n; i++) {
    const e = dir + ENTRIES_AT + i * ENTRY_BYTES;
    if (u32[e >>> 2] !== key.length) continue;
    let same = true;
    for (let j = 0; j < key.length && same; j++) same = u8[e + 4 + j] === key[j];
    if (same) return u32[(e + 60) >>> 2];
  }
  return 0;
}

/**
 * Locks (and barriers of older heaps) whose state object is in [from, to), as "lock NAME" or "barrier NAME"
 * (for the false-sharing monitor; read outside any transaction). `dir`: the directory root.
 */
export function syncNamesIn(u8: Uint8Array, u32: Uint32Array, dir: number | undefined, from: number, to: number): string[] {
  const out: string[] = [];
  for (let d = dir ?? 0, hops = 0; d !== 0 && hops < 1 << 16; d = u32[d >>> 2], hops++) {
    const n = Math.min(u32[(d >>> 2) + 1], ENTRIES_PER_PAGE);
    for (let i = 0; i < n; i++) {
      const e = d + ENTRIES_AT + i * ENTRY_BYTES;
      const ptr = u32[(e + 60) >>> 2];
      const len = Math.min(u32[e >>> 2], KEY_MAX);
      if (ptr < from || ptr >= to || len < 2) continue;
      const key = decoder.decode(u8.subarray(e + 4, e + 4 + len));
      out.push((NAMES[key.slice(0, 2)] ?? '') + key.slice(2));
    }
  }
  return out;
}
