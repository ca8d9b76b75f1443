// Nodes listening on every interface (0.0.0.0, as the README's multi-machine example does)
// on three machines: network namespaces, each with an address of its own. Each member must
// be recorded under an address the others can dial. Before, the records said 0.0.0.0:7000,
// which on any other machine is that machine itself: the third node connected to itself
// for the first two, and lost and recovered them over and over.
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import { type RemoteNode, settle, until } from './harness';
import { NetnsCluster, netnsUnavailable } from './netns';

const { dialable } = createRequire(__filename)('../../dist/service/transport.js');

describe('the address a member is recorded under', () => {
  it('replaces an unspecified host by the IP a peer sees, and leaves every other address alone', () => {
    expect(dialable('0.0.0.0:7400', '10.1.2.3')).toBe('10.1.2.3:7400');
    expect(dialable('[::]:7400', '::ffff:10.1.2.3')).toBe('10.1.2.3:7400');
    expect(dialable('[::]:7400', 'fe80::1')).toBe('[fe80::1]:7400');
    expect(dialable('host-a:7400', '10.1.2.3')).toBe('host-a:7400');
    expect(dialable('127.0.0.1:7400', '10.1.2.3')).toBe('127.0.0.1:7400');
    expect(dialable('0.0.0.0:7400', undefined)).toBe('0.0.0.0:7400');
    // A peer on the same machine: loopback would be no better for the others.
    expect(dialable('0.0.0.0:7400', '127.0.0.1')).toBe('0.0.0.0:7400');
    expect(dialable('[::]:7400', '::ffff:127.0.0.1')).toBe('[::]:7400');
    expect(dialable('[::]:7400', '::1')).toBe('[::]:7400');
  });
});

const unavailable = netnsUnavailable();
if (unavailable) console.log(`listening on every interface: tests skipped: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('nodes listening on every interface (network namespaces)', () => {
  let net: NetnsCluster | undefined;
  afterEach(async () => {
    await net?.destroy();
    net = undefined;
  });

  it("a founder with durability 'disk' tells a page server where to join in words another machine can use", async () => {
    net = new NetnsCluster(2);
    net.create();
    // Its createNode waits for its first durable commit, so for a page server.
    const starting = net.start(0, { listen: '0.0.0.0:7000', durability: 'disk' });
    const said = await until('the founder says it waits for a page server', 60_000, async () => net!.nodes[0]?.stderr.match(/waits for a page server.*--peers (\S+)/)?.[1]);
    // It said --peers 0.0.0.0:7000, which on the page server's machine is that machine.
    expect(said).toBe('THIS-HOST:7000');
    const dir = net.tempDir('dsm-any-interface-');
    await net.startPageServer(1, { dir, listen: '0.0.0.0:7000', peers: [`${net.host(0)}:7000`] });
    const a = await starting;
    expect(await a.run<number>('const p = await dsm.transaction((tx) => { const p = tx.alloc(8); dsm.u32[p >> 2] = 42; return p; }); return dsm.u32[p >> 2];')).toBe(42);
  });

  it('record a member that joined over loopback under its machine address once that is known', async () => {
    // Two nodes on the first machine (the second joins over loopback, which tells nothing of
    // an address the other machines can dial), then one on another machine. The second
    // used to stay recorded as 0.0.0.0:7001, and the third dialed itself for it.
    net = new NetnsCluster(2);
    net.create();
    const nodes: RemoteNode[] = [await net.start(0, { listen: '0.0.0.0:7000' })];
    nodes.push(await net.start(0, { listen: '0.0.0.0:7001', peers: ['127.0.0.1:7000'] }));
    nodes.push(await net.start(1, { listen: '0.0.0.0:7000', peers: [`${net.host(0)}:7000`] }));
    // And one more on the first machine over loopback, once its address is known.
    nodes.push(await net.start(0, { listen: '0.0.0.0:7002', peers: ['127.0.0.1:7001'] }));
    await nodes[0].run(`await dsm.transaction((tx) => { tx.setRoot('pages', tx.alloc(4 * dsm.pageSize)); });`);
    await settle(nodes);
    await Promise.all(
      nodes.map((n, k) =>
        n.run(`const p = dsm.root('pages') >> 2; await dsm.transaction(() => { dsm.u32[p + args.k * (dsm.pageSize >> 2)] = 100 + args.k; });`, { k }),
      ),
    );
    await settle(nodes);
    for (const n of nodes) {
      const s = await n.run<{ members: number[]; seen: number[] }>(
        `const p = dsm.root('pages') >> 2; const c = await dsm.clusterStats();
         return { members: c.members,
           seen: await dsm.transaction(() => [0, 1, 2, 3].map((k) => dsm.u32[p + k * (dsm.pageSize >> 2)])) };`,
      );
      expect(s.members).toEqual([0, 1, 2, 3]);
      expect(s.seen).toEqual([100, 101, 102, 103]);
      expect(n.stderr).not.toContain('lost node');
    }
  });

  it('form a cluster on three machines: every member dialable, commits and page fetches between all', async () => {
    net = new NetnsCluster(3);
    net.create();
    const nodes: RemoteNode[] = [await net.start(0, { listen: '0.0.0.0:7000' })];
    for (let i = 1; i < 3; i++) nodes.push(await net.start(i, { listen: '0.0.0.0:7000', peers: [`${net.host(0)}:7000`] }));
    await nodes[0].run(`await dsm.transaction((tx) => { tx.setRoot('ctr', tx.alloc(4)); tx.setRoot('pages', tx.alloc(3 * dsm.pageSize)); });`);
    await settle(nodes);
    // Each writes a page of its own (the others fetch it from its owner) and counts.
    await Promise.all(
      nodes.map((n, k) =>
        n.run(
          `const c = dsm.root('ctr') >> 2; const p = dsm.root('pages') >> 2;
           await dsm.transaction(() => { dsm.u32[p + args.k * (dsm.pageSize >> 2)] = 100 + args.k; });
           for (let i = 0; i < 50; i++) await dsm.transaction(() => { dsm.u32[c] += 1; });`,
          { k },
        ),
      ),
    );
    await settle(nodes);
    for (const n of nodes) {
      const s = await n.run<{ members: number[]; seen: number[] }>(
        `const c = dsm.root('ctr') >> 2; const p = dsm.root('pages') >> 2;
         return { members: (await dsm.clusterStats()).members,
           seen: await dsm.transaction(() => [dsm.u32[c], ...[0, 1, 2].map((k) => dsm.u32[p + k * (dsm.pageSize >> 2)])]) };`,
      );
      expect(s.members).toEqual([0, 1, 2]);
      expect(s.seen).toEqual([150, 100, 101, 102]);
      // Nobody lost anybody on the way.
      expect(n.stderr).not.toContain('lost node');
    }
  });
});
