// SPMD kernels on real node processes (fixtures/spmd_kernels.mjs), beside examples/kernels:
// sizes drawn from a random seed (printed, so a failure replays with --seed), children that
// join up to 400 ms after the founder has called its first barrier, every kernel's result
// checked on every node against a local computation. Among them: blocks filled in the
// transactions that allocate them on every node at once, which once left one node's values
// in another's block, or a node's fault waiting for good (cluster/doomed_alloc.test.ts).
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScript } from './run_example';

const script = path.join(__dirname, 'fixtures/spmd_kernels.mjs');
const churn = path.join(__dirname, 'fixtures/spmd_churn.mjs');

describe('SPMD kernels', () => {
  for (const [nodes, stagger] of [
    ['1', '0'],
    ['2', '400'],
    ['3', '0'],
    ['3', '400'],
    ['4', '400'],
  ]) {
    it(`${nodes} node(s), joins staggered over ${stagger} ms: every kernel right on every node`, async () => {
      const r = await runScript(script, ['--nodes', nodes, '--stagger', stagger], 240_000);
      expect(r.out).toMatch(/seed \d+/);
      expect(r.out, r.out).toContain('every kernel right on every node');
      expect(r.code, r.out).toBe(0);
    }, 300_000);
  }

  it('a stencil on three nodes, then two (one closed), then three (one joined late): right after every phase', async () => {
    const r = await runScript(churn, [], 240_000);
    expect(r.out).toMatch(/seed \d+/);
    expect(r.out, r.out).toContain('every phase right');
    expect(r.code, r.out).toBe(0);
  }, 300_000);
});
