// The Jacobi example as a user runs it: real node processes, the result checked against
// the same sweeps over a local Float64Array bit for bit (the example exits 1 otherwise).
// Small grids, so rows per node go down to one (no interior) and the halo prefetch meets
// its edge cases; both synchronisations, with and without the prefetch, and with untimed
// warm-up sweeps.
import { describe, expect, it } from 'vitest';
import { runExample } from './run_example';

const run = (args: string[]) => runExample('jacobi', args);

describe('examples/jacobi', () => {
  for (const args of [
    ['--nodes', '2', '--size', '96', '--sweeps', '12'],
    ['--nodes', '2', '--size', '96', '--sweeps', '12', '--prefetch', 'off'],
    // Every node may run anywhere: the binding is the launcher's choice, never the result's.
    ['--nodes', '2', '--size', '96', '--sweeps', '12', '--bind', 'off'],
    ['--nodes', '3', '--size', '5', '--sweeps', '6'],
    ['--nodes', '4', '--size', '40', '--sweeps', '8', '--sync', 'flags'],
    // Untimed sweeps first, then the grids start over: the flags count on across both.
    ['--nodes', '2', '--size', '96', '--sweeps', '12', '--warmup', '3'],
    ['--nodes', '3', '--size', '40', '--sweeps', '8', '--sync', 'flags', '--warmup', '2'],
  ]) {
    it(`run.mjs ${args.join(' ')}: identical to the local sweep`, async () => {
      const r = await run(args);
      expect(r.out).toContain('identical to the local sweep');
      expect(r.code, r.out).toBe(0);
    });
  }

  // Each refused with the usage line and exit 2, before any sweep: no stack trace.
  for (const args of [['--prefetch', 'maybe'], ['--bind', 'yes'], ['--warmup=-1'], ['--nodes', '2.5'], ['--sweeps', '-1'], ['--bogus', '1']]) {
    it(`refuses ${args.join(' ')}`, async () => {
      const r = await run(args);
      expect(r.code).toBe(2);
      expect(r.out).toMatch(/^usage: run\.mjs --nodes N/m);
      expect(r.out).not.toContain('local Float64Array');
      expect(r.out).not.toMatch(/^\s+at /m);
    });
  }

  it('prints its usage for --help, and sweeps nothing', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^usage: run\.mjs --nodes N/);
    expect(r.out).not.toContain('local Float64Array');
  });
});
