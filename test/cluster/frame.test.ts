// The frame decoder against any split of the byte stream: frames come out whole and in
// order however the socket cuts them (headers split, many frames in one chunk, one frame
// over many chunks), and a bad header is refused before its body is buffered.
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
const load = createRequire(__filename);
const { FrameDecoder, encodeHeader } = load('../../dist/service/frame.js');

const CLUSTER = 0x1234abcd;

describe('frame decoder', () => {
  it('returns every frame whole and in order for any split of the stream', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ type: fc.integer({ min: 16, max: 255 }), payload: fc.uint8Array({ maxLength: 3000 }) }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 4000 }), { minLength: 1, maxLength: 40 }),
        (frames, cuts) => {
          const stream = Buffer.concat(frames.flatMap((f) => [encodeHeader(CLUSTER, f.type, f.payload.length), Buffer.from(f.payload)]));
          const d = new FrameDecoder(CLUSTER, 1 << 20);
          const out: Array<{ type: number; payload: Buffer }> = [];
          let at = 0;
          for (let i = 0; at < stream.length; i++) {
            const n = cuts[i % cuts.length];
            out.push(...d.push(stream.subarray(at, at + n)));
            at += n;
          }
          expect(out.map((f) => f.type)).toEqual(frames.map((f) => f.type));
          out.forEach((f, i) => expect(Buffer.compare(f.payload, Buffer.from(frames[i].payload))).toBe(0));
        },
      ),
      { numRuns: 300, seed: 11 },
    );
  });

  it('refuses an oversized length, a wrong version or cluster before buffering the body', () => {
    const big = encodeHeader(CLUSTER, 20, 2 << 20);
    expect(() => new FrameDecoder(CLUSTER, 1 << 20).push(big)).toThrow(/exceeds the limit/);
    const other = encodeHeader(CLUSTER + 1, 20, 0);
    expect(() => new FrameDecoder(CLUSTER, 1 << 20).push(other)).toThrow(/cluster id/);
    const version = encodeHeader(CLUSTER, 20, 0);
    version[4] = 99;
    expect(() => new FrameDecoder(CLUSTER, 1 << 20).push(version)).toThrow(/protocol version 99/);
  });
});
