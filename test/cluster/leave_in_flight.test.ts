// What is in flight while a node closes gracefully: the token it passes on its way out, and
// page requests sent to it, or meant for it, as it goes. The leaver ends its connections as
// soon as it has said Leave, so anything it writes after that never arrives.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, settle } from './harness';

const AT = 3000 * 1024;

describe('in flight while a node leaves', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('a leaver that committed just before closing passes the token on before its connections close', async () => {
    // With a token batch (durability 'none'), a holder that committed lately keeps an asked-for
    // token a little longer for its app's next commit. The leaver's successor asks for it as it
    // hears Leave; a leaver that batched the hand-on wrote the token on a connection it had
    // already ended, and the successor waited 8 s before it looked for the token and regenerated it.
    const [a, b] = await h.cluster(2, { durability: 'none', tokenBatchMs: 100 });
    await settle([a, b]);
    // Long batches, so the leaver is certain to be inside one when it is asked.
    await b.run('await dsm.transaction(() => { dsm.u32[args.at] = 1; }); await dsm.close();', { at: AT });
    await a.waitForLine((l) => l === `peer-leave ${b.nodeId}`);
    expect(await a.run('await dsm.transaction(() => { dsm.u32[args.at] += 1; }); return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })).toBe(2);
    expect(a.stderr).not.toContain('for the token');
    expect(a.stderr).not.toContain('regenerated');
  }, 60_000);
});
