// The SPMD kernels example as a user runs it: real node processes, every node started at
// once and calling its first barrier without waiting for the others to join, each kernel's
// result checked on every node against a local computation (the example exits 1 otherwise).
import { describe, expect, it } from 'vitest';
import { runExample } from './run_example';

const run = (args: string[]) => runExample('kernels', args);

describe('examples/kernels', () => {
  for (const nodes of ['1', '2', '3', '4']) {
    it(`run.mjs --nodes ${nodes}: every kernel right on every node`, async () => {
      const r = await run(['--nodes', nodes]);
      // The seed is printed first, so a failure replays with --seed.
      expect(r.out).toMatch(/seed \d+/);
      expect(r.out, r.out).toContain('every kernel right on every node');
      expect(r.code, r.out).toBe(0);
    });
  }

  for (const args of [['--nodes', '0'], ['--nodes', '2.5'], ['--seed', 'x'], ['--bogus']]) {
    it(`refuses ${args.join(' ')}`, async () => {
      const r = await run(args);
      expect(r.code).toBe(2);
      expect(r.out).toMatch(/^usage: run\.mjs --nodes N/m);
      expect(r.out).not.toMatch(/^\s+at /m);
    });
  }
});
