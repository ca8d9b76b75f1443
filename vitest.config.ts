import { defineConfig } from 'vitest/config';

// Each test file runs in its own process: a process can hold one DSM node (signal handlers
// and the fixed base address are per process). Cluster tests start real node processes,
// so time-outs are generous; no test relies on them to pass.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
  },
});
