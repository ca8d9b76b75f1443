// The sequential pages' messages (lib/service/sequential_wire.ts): every well-formed message
// decodes to what was encoded, and what a peer could send malformed is refused with a
// WireError (its connection is then dropped), never half trusted.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkModelChanges,
  decodeInvalidate,
  decodeInvalidateAck,
  decodeLost,
  decodePush,
  decodeReply,
  decodeRequest,
  decodeAdopt,
  decodeTakeOver,
  encodeAdopt,
  encodeInvalidate,
  encodeLost,
  encodePush,
  encodeReply,
  encodeRequest,
  encodeTakeOver,
  READ_AHEAD,
} from '../../lib/service/sequential_wire';
import { WireError } from '../../lib/service/wire';

const PAGES = 4096;

describe('sequential page messages', () => {
  it('round-trip', () => {
    fc.assert(
      fc.property(
        fc.record({ page: fc.nat(PAGES - 1), requester: fc.nat(0xffff), write: fc.boolean(), hops: fc.nat(64), count: fc.integer({ min: 1, max: READ_AHEAD }) }),
        (r) => {
          const req = { ...r, count: r.write ? 1 : r.count, search: false };
          // A first hop comes from its requester.
          expect(decodeRequest(req.hops === 0 ? req.requester : 7, encodeRequest(req), PAGES)).toEqual(req);
        },
      ),
    );
    fc.assert(
      fc.property(fc.nat(PAGES - 1), fc.nat(4), fc.maxSafeNat(), fc.uint8Array({ maxLength: 64 }), (page, status, generation, data) => {
        const d = decodeReply(encodeReply(page, status, generation, data), PAGES);
        expect([d.page, d.status, d.generation, [...d.data]]).toEqual([page, status, generation, [...data]]);
      }),
    );
    fc.assert(
      fc.property(fc.nat(PAGES - 1), fc.nat(0xffff), fc.nat(0xffffffff), fc.maxSafeNat(), (page, owner, token, generation) => {
        const count = 1 + ((owner + page) % (PAGES - page));
        const d = decodeInvalidate(encodeInvalidate(page, count, owner, token, generation), PAGES);
        expect([d.page, d.count, d.owner, d.generation, decodeInvalidateAck(d.ack)]).toEqual([page, count, owner, generation, token]);
      }),
    );
    // Pushed copies: a barrier name up to its limit, whole pages (16-byte pages here).
    fc.assert(
      fc.property(fc.nat(PAGES - 8), fc.string({ minLength: 1, maxLength: 54 }).filter((s) => Buffer.byteLength(s) <= 54), fc.nat(0xffffffff), fc.maxSafeNat(), fc.integer({ min: 1, max: 8 }), (page, name, gen, generation, k) => {
        const data = Buffer.alloc(16 * k, k);
        const d = decodePush(encodePush(page, name, gen, generation, data), PAGES, 16, 8);
        expect([d.page, d.name, d.gen, d.generation, [...d.data]]).toEqual([page, name, gen, generation, [...data]]);
      }),
    );
  });

  it('refuse what a peer could send malformed', () => {
    const req = (page: number, requester: number, flags: number, hops: number, count: number) => {
      const b = Buffer.alloc(11);
      b.writeUInt32LE(page, 0);
      b.writeUInt16LE(requester, 4);
      b[6] = flags;
      b.writeUInt16LE(hops, 7);
      b.writeUInt16LE(count, 9);
      return b;
    };
    const bad: Array<() => unknown> = [
      () => decodeRequest(1, Buffer.alloc(10), PAGES), // short
      () => decodeRequest(1, req(0, 1, 4, 0, 1), PAGES), // unknown flag
      () => decodeRequest(1, req(PAGES, 1, 0, 0, 1), PAGES), // outside the region
      () => decodeRequest(1, req(0, 1, 0, 0, 0), PAGES), // no pages
      () => decodeRequest(1, req(0, 1, 0, 0, READ_AHEAD + 1), PAGES), // too many
      () => decodeRequest(1, req(0, 1, 1, 0, 2), PAGES), // a write for two pages
      () => decodeRequest(1, req(0, 1, 2, 1, 1), PAGES), // a forwarded search
      () => decodeRequest(1, req(0, 2, 0, 0, 1), PAGES), // a first hop naming another requester
      () => decodeReply(Buffer.alloc(4), PAGES),
      () => decodeReply(Buffer.alloc(12), PAGES), // no room for the generation
      () => decodeReply(encodeReply(PAGES, 0, 0, undefined), PAGES),
      () => decodeReply(Buffer.alloc(13, 0xff).fill(0, 0, 5), PAGES), // a generation past 2^53
      () => decodeInvalidate(Buffer.alloc(12), PAGES), // no generation
      () => decodeInvalidate(encodeInvalidate(0, 0, 1, 1, 0), PAGES),
      () => decodeInvalidate(encodeInvalidate(PAGES - 1, 2, 1, 1, 0), PAGES),
      () => decodeInvalidate(Buffer.alloc(20, 0xff).fill(0, 0, 12).fill(1, 10, 11), PAGES), // a generation past 2^53
      () => decodeInvalidateAck(Buffer.alloc(5)),
      () => decodePush(Buffer.alloc(16), PAGES, 16, 8), // short
      () => decodePush(encodePush(0, 'b', 1, 1, Buffer.alloc(16)).subarray(0, 17), PAGES, 16, 8), // name cut off
      () => decodePush(encodePush(0, 'b', 1, 1, Buffer.alloc(0)), PAGES, 16, 8), // no page
      () => decodePush(encodePush(0, 'b', 1, 1, Buffer.alloc(17)), PAGES, 16, 8), // not whole pages
      () => decodePush(encodePush(0, 'b', 1, 1, Buffer.alloc(16 * 9)), PAGES, 16, 8), // too many
      () => decodePush(encodePush(PAGES - 1, 'b', 1, 1, Buffer.alloc(32)), PAGES, 16, 8), // past the region
      () => decodePush(Buffer.concat([encodePush(0, 'b', 1, 1, Buffer.alloc(16)).subarray(0, 8), Buffer.alloc(8, 0xff), Buffer.from([1, 98]), Buffer.alloc(16)]), PAGES, 16, 8), // a generation past 2^53
      () => checkModelChanges(new Uint32Array([0, 1]), PAGES, 3), // not whole triples
      () => checkModelChanges(new Uint32Array([PAGES - 1, 2, 2]), PAGES, 3), // past the region
      () => checkModelChanges(new Uint32Array([PAGES, 0, 2]), PAGES, 3), // outside the region
      () => checkModelChanges(new Uint32Array([0, 1, 4]), PAGES, 3), // unknown model
      () => decodeLost(Buffer.alloc(4), PAGES), // no generation
      () => decodeLost(encodeLost(PAGES, 1), PAGES), // outside the region
      () => decodeLost(Buffer.alloc(12, 0xff).fill(0, 0, 4), PAGES), // a generation past 2^53
      () => decodeTakeOver(Buffer.alloc(3), PAGES), // short
      () => decodeTakeOver(Buffer.from(new Uint32Array([2, 7]).buffer), PAGES), // count past the payload
      () => decodeTakeOver(encodeTakeOver(new Uint32Array([1, PAGES])), PAGES), // outside the region
      () => decodeTakeOver(encodeTakeOver(new Uint32Array([5, 5])), PAGES), // repeated
      () => decodeTakeOver(encodeTakeOver(new Uint32Array([6, 5])), PAGES), // out of order
      () => decodeAdopt(Buffer.alloc(7), PAGES), // short
      () => decodeAdopt(encodeAdopt(0, []), PAGES), // nobody holds a copy
      () => decodeAdopt(encodeAdopt(PAGES, [1]), PAGES), // outside the region
      () => decodeAdopt(encodeAdopt(0, [1, 2]).subarray(0, 9), PAGES), // count past the payload
      () => decodeAdopt(encodeAdopt(0, [2, 2]), PAGES), // repeated
    ];
    expect(decodeAdopt(encodeAdopt(7, [3, 1, 2]), PAGES)).toEqual({ page: 7, holders: [1, 2, 3] });
    expect(decodeTakeOver(encodeTakeOver(new Uint32Array([0, 5, PAGES - 1])), PAGES)).toEqual(new Uint32Array([0, 5, PAGES - 1]));
    expect(decodeTakeOver(encodeTakeOver(new Uint32Array(0)), PAGES)).toEqual(new Uint32Array(0));
    for (const f of bad) expect(f).toThrow(WireError);
    for (const ok of [new Uint32Array(0), new Uint32Array([5, 3, 2, 9, 1, 0, PAGES - 1, 1, 3])]) expect(() => checkModelChanges(ok, PAGES, 3)).not.toThrow();
    expect(decodeLost(encodeLost(PAGES - 1, 2 ** 45 + 3), PAGES)).toEqual({ page: PAGES - 1, generation: 2 ** 45 + 3 });
  });
});
