// Which commits a regeneration of the token makes void (regenerations.ts madeVoid): those made
// with an older token after the time the newer one was regenerated at, never those before.
import { describe, expect, it } from 'vitest';
import { madeVoid } from '../../lib/service/regenerations';

describe('commits made with a replaced token', () => {
  const regenerations = [
    { generation: 65536, time: 100 },
    { generation: 131073, time: 250 },
  ];

  it('are void after the time the token was replaced at, and only then', () => {
    expect(madeVoid(regenerations, 0, 100)).toBe(false);
    expect(madeVoid(regenerations, 0, 101)).toBe(true);
    // Replaced at 100, so void past 100 even though a later regeneration is at 250.
    expect(madeVoid(regenerations, 0, 200)).toBe(true);
    expect(madeVoid(regenerations, 65536, 250)).toBe(false);
    expect(madeVoid(regenerations, 65536, 251)).toBe(true);
  });

  it('made with the newest token, or with none replaced, are never void', () => {
    expect(madeVoid(regenerations, 131073, 10_000)).toBe(false);
    expect(madeVoid([], 0, 10_000)).toBe(false);
  });
});

describe('a node admitted after a regeneration', () => {
  it("learns the token's generation and the latest regeneration from its JoinAccept", async () => {
    const { encode, decode } = await import('../../lib/service/protocol');
    const ja = {
      id: 4,
      admitter: 1,
      time: 612,
      epoch: 5,
      nextId: 5,
      members: [{ id: 1, address: '127.0.0.1:7001' }],
      pages: { pages: Uint32Array.of(3, 9), versions: Float64Array.of(600, 2 ** 40), owners: Uint16Array.of(1, 0xffff) },
      rn: new Map([[1, 7]]),
      models: [],
      generation: 131073,
      known: { generation: 131073, time: 412 },
      identity: { id: '0123456789abcdef', foundedAt: 97, from: 'fedcba9876543210' },
    };
    const back = decode.joinAccept(encode.joinAccept(ja));
    expect(back.identity).toEqual(ja.identity);
    expect(back.generation).toBe(131073);
    expect(back.known).toEqual({ generation: 131073, time: 412 });
    expect(back.pages).toEqual(ja.pages);
    // Truncated: the fields are required (protocol version 9), never read half.
    const full = encode.joinAccept(ja);
    expect(() => decode.joinAccept(full.subarray(0, full.length - 12))).toThrow();
    // A page count its message cannot hold is refused before anything is allocated for it.
    const none = encode.joinAccept({ ...ja, pages: { pages: new Uint32Array(0), versions: new Float64Array(0), owners: new Uint16Array(0) } });
    let at = 0;
    while (none[at] === full[at]) at++; // the first byte of the page count
    const lying = Buffer.from(full);
    lying.writeUInt32LE(1 << 25, at);
    expect(() => decode.joinAccept(lying)).toThrow(/page table longer than its message/);
  });
});
