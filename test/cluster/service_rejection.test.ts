// A promise rejection nobody handles in the service thread is logged, and the service goes
// on: without that, Node ends the thread, and with it every fault, commit and peer of the
// node. Provoked through a real path: an authenticated peer that claims the last node id,
// then a join, whose admission then fails to encode the next id (past 16 bits) inside an
// async function nobody awaits.
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, SECRET } from './harness';

const load = createRequire(__filename);
const dist = path.join(__dirname, '../../dist');
const { Transport } = load(path.join(dist, 'service/transport.js'));
const { encode, Msg } = load(path.join(dist, 'service/protocol.js'));
const AT = 3000 * 1024;

async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('service thread', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('survives a rejection nobody handles, logs it, and goes on serving', async () => {
    const a = await h.start();
    await a.run('await dsm.transaction(() => { dsm.u32[args.at] = 1; });', { at: AT });
    const t = new Transport({ secret: SECRET });
    try {
      const member = await t.connect(a.address);
      member.send(Msg.Hello, encode.hello({ id: 0xffff, address: '127.0.0.1:1', joining: false, client: false }));
      const joiner = await t.connect(a.address);
      joiner.send(Msg.Hello, encode.hello({ id: 0xffff, address: '127.0.0.1:2', joining: true, client: false }));
      await until(() => /unhandled rejection in the service thread/.test(a.stderr), 'the logged rejection');
    } finally {
      await t.close();
    }
    // The service thread is alive: faults, commits and requests still get answers.
    await a.run('await dsm.transaction(() => { dsm.u32[args.at] += 1; });', { at: AT });
    expect(await a.run('return dsm.transaction(() => dsm.u32[args.at]);', { at: AT })).toBe(2);
    const stats = await a.run<{ members: number[] }>('return dsm.clusterStats();');
    expect(stats.members).toContain(a.nodeId);
    expect(a.proc.exitCode).toBeNull();
  });
});
