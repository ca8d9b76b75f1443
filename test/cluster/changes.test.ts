// What a commit's changes look like for its backups and for every other member
// (lib/service/changes.ts): whole pages only to the backups, diffs to all, and a page the
// native commit made both ways split between them.
import { describe, expect, it } from 'vitest';
import { carried, NOT_CARRIED, WHOLE_AND_DIFF } from '../../lib/service/changes';

const PS = 64;

/** One change: u64 prev | u32 len | body (len is given apart, for the special lengths). */
function entry(prev: number, len: number, body: number[]): number[] {
  const h = new Uint8Array(12);
  const dv = new DataView(h.buffer);
  dv.setBigUint64(0, BigInt(prev), true);
  dv.setUint32(8, len, true);
  return [...h, ...body];
}
const u32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
const whole = (fill: number) => new Array(PS).fill(fill);
const diff = [0, 0, 1, 0, 9, 9, 9, 9]; // word 0, one word: 9999

/** (prev, len, body length) of each change. */
function list(c: Uint8Array): Array<[number, number, number]> {
  const dv = new DataView(c.buffer, c.byteOffset, c.byteLength);
  const out: Array<[number, number, number]> = [];
  for (let at = 0; at < c.length; ) {
    const len = dv.getUint32(at + 8, true);
    const body = len === NOT_CARRIED ? 0 : len;
    out.push([Number(dv.getBigUint64(at, true)), len, body]);
    at += 12 + body;
  }
  return out;
}

describe('changes carried by a commit', () => {
  const native = Uint8Array.from([
    ...entry(3, WHOLE_AND_DIFF, [...whole(1), ...u32(diff.length), ...diff]),
    ...entry(5, diff.length, diff),
    ...entry(7, NOT_CARRIED, []),
    ...entry(9, PS, whole(2)),
  ]);

  it('gives the backups the whole page and the others its diff', () => {
    const c = carried(native, PS, 1 << 20);
    expect(list(c.backups)).toEqual([
      [3, PS, PS],
      [5, diff.length, diff.length],
      [7, NOT_CARRIED, 0],
      [9, PS, PS],
    ]);
    expect([...c.backups.subarray(12, 12 + PS)]).toEqual(whole(1));
    expect(list(c.others)).toEqual([
      [3, diff.length, diff.length],
      [5, diff.length, diff.length],
      [7, NOT_CARRIED, 0],
      [9, NOT_CARRIED, 0],
    ]);
    expect([...c.others.subarray(12, 12 + diff.length)]).toEqual(diff);
  });

  it('leaves every change out past the limit, and passes plain changes through untouched', () => {
    const c = carried(native, PS, 100);
    expect(list(c.backups).map((e) => e[1])).toEqual([NOT_CARRIED, NOT_CARRIED, NOT_CARRIED, NOT_CARRIED]);
    expect(list(c.others).map((e) => e[1])).toEqual([diff.length, diff.length, NOT_CARRIED, NOT_CARRIED]);
    const plain = Uint8Array.from(entry(5, diff.length, diff));
    const p = carried(plain, PS, 1 << 20);
    expect(p.backups).toBe(plain);
    expect(p.others).toBe(plain);
  });
});
