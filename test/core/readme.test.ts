// The README's first example, taken from the README itself and run as a user would, so
// the README cannot drift from what works.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PKG, runScript } from './fixtures/run_script';

/** The first ```js block of the README. */
function firstExample(): string {
  const readme = readFileSync(path.join(PKG, 'README.md'), 'utf8');
  const m = /```js\n([\s\S]*?)```/.exec(readme);
  if (!m) throw new Error('the README has no ```js block');
  return m[1];
}

describe('README', () => {
  it('the first example runs: it allocates and names its counter and increments it', async () => {
    const example = firstExample();
    expect(example).toContain("require('node-dsm')");
    // The example uses top-level await, as in an ES module or the REPL; run it as CommonJS
    // (require('node-dsm') resolves to this package from its own directory).
    const r = await runScript(`(async () => {\n${example}\n})().catch((e) => { console.error('failed:', e); process.exit(1); });`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^1 \{\s+read: \d+,\s+write: \d+,\s+service: \d+,\s+violations: 0,\s+writeAhead: \d+,\s+writeAheadUnused: \d+,\s+answeredByChannel: 0,\s+sentByFault: 0,\s+servedByChannel: 0,\s+refused: 0\s+\}\n$/);
  });
});
