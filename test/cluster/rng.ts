// A small seeded generator for the randomised cluster tests: the same seed draws the same
// steps, so a printed seed replays a failure (DSM_SEED).

/** xorshift32 from `seed`: numbers in [0, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}
