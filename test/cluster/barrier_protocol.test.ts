// The barrier messages on the wire (lib/service/protocol.ts): every arrival and answer comes
// back as it was encoded, and any bytes at all either decode or are refused with a WireError
// (the service logs and drops those), never another exception.
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
const load = createRequire(__filename);
const { encode, decode, BarrierKind } = load('../../dist/service/protocol.js');
const { WireError } = load('../../dist/service/wire.js');

const id = fc.integer({ min: 0, max: 0xffff });
const name = fc.string({ minLength: 1, maxLength: 18 }).filter((s) => Buffer.byteLength(s) <= 54);
const round = fc.record({
  gen: fc.integer({ min: 0, max: 0xffffffff }),
  broken: fc.boolean(),
  time: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  reporter: id,
  decider: id,
  ids: fc.array(id, { maxLength: 256 }),
  why: fc.string({ maxLength: 100 }),
});

describe('barrier messages', () => {
  it('decode what was encoded', () => {
    fc.assert(
      fc.property(
        fc.record({ name, gen: fc.integer({ min: 0, max: 0xffffffff }), parties: fc.integer({ min: 1, max: 256 }), time: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), waiting: fc.boolean(), last: fc.option(round, { nil: undefined }) }),
        (a) => {
          const got = decode.barrierArrive(encode.barrierArrive(a));
          expect(got).toEqual(a.last === undefined ? { name: a.name, gen: a.gen, parties: a.parties, time: a.time, waiting: a.waiting } : a);
        },
      ),
    );
    const answer = fc.oneof(
      fc.record({ name, gen: fc.integer({ min: 0, max: 0xffffffff }), kind: fc.constantFrom(BarrierKind.released, BarrierKind.broken, BarrierKind.advance), round }),
      fc.record({ name, gen: fc.integer({ min: 0, max: 0xffffffff }), kind: fc.constant(BarrierKind.mismatch), parties: fc.integer({ min: 1, max: 256 }) }),
      fc.record({ name, gen: fc.integer({ min: 0, max: 0xffffffff }), kind: fc.constant(BarrierKind.arrived), ids: fc.array(id, { maxLength: 256 }) }),
    );
    fc.assert(
      fc.property(answer, (a) => {
        expect(decode.barrierAnswer(encode.barrierAnswer(a))).toEqual(a);
      }),
    );
  });

  it('refuse malformed bytes with a WireError only', () => {
    const valid = encode.barrierAnswer({ name: 'b', gen: 1, kind: BarrierKind.released, round: { gen: 1, broken: false, time: 5, reporter: 1, decider: 0, ids: [0, 1], why: '' } });
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      // Valid messages cut short, or with a byte changed: closer to what a buggy peer sends.
      fc.integer({ min: 0, max: valid.length - 1 }).map((n) => valid.subarray(0, n)),
      fc.tuple(fc.integer({ min: 0, max: valid.length - 1 }), fc.integer({ min: 0, max: 255 })).map(([i, v]) => {
        const b = Buffer.from(valid);
        b[i] = v;
        return b;
      }),
    );
    fc.assert(
      fc.property(bytes, (b) => {
        for (const d of [decode.barrierArrive, decode.barrierAnswer]) {
          try {
            d(Buffer.from(b));
          } catch (e) {
            expect(e).toBeInstanceOf(WireError);
          }
        }
      }),
    );
  });
});
