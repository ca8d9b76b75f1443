// Barriers and locks for SPMD programs with real node processes: rounds of a barrier make
// every party's writes visible to all, a lock makes a read-modify-write spread over two
// transactions exclusive across nodes, and both survive a party or holder being killed.
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, type RemoteNode, until } from './harness';

const FAST = { heartbeatMs: 200, deadAfterMs: 2000 };

/** The number of parties that arrived at barrier `name` (its state object's word 2), read on `n`. */
function arrived(n: RemoteNode, name: string): Promise<number> {
  return n.run<number>(`const p = await dsm._syncState('barrier', args.name); return dsm.transaction(() => dsm.u32[(p >> 2) + 2]);`, { name });
}

describe('barriers', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('three nodes pass 20 rounds, each round seeing every party\'s writes made before it', async () => {
    const nodes = await h.cluster(3);
    const ROUNDS = 20;
    // Each node writes round r into its own array (its own pages) before the barrier, then
    // reads every node's entry r outside any transaction: all must be there.
    await Promise.all(nodes.map((n, i) => n.run(`await dsm.transaction((tx) => tx.setRoot('slots' + args.i, tx.alloc(4 * args.rounds)));`, { i, rounds: ROUNDS })));
    await Promise.all(nodes.map((n) => n.run(`await dsm.barrier('setup', 3);`)));
    const results = await Promise.all(
      nodes.map((n, i) =>
        n.run<string[]>(
          `const bad = [];
           const slots = [0, 1, 2].map((k) => dsm.root('slots' + k) >> 2);
           for (let r = 0; r < args.rounds; r++) {
             await dsm.transaction(() => { dsm.u32[slots[args.i] + r] = 1000 + r; });
             await dsm.barrier('round', 3);
             for (let k = 0; k < 3; k++) if (dsm.u32[slots[k] + r] !== 1000 + r) bad.push('round ' + r + ': node ' + k + ' wrote ' + dsm.u32[slots[k] + r]);
           }
           return bad;`,
          { i, rounds: ROUNDS },
        ),
      ),
    );
    expect(results).toEqual([[], [], []]);
  });

  it('a killed party fails the barrier with ERR_DSM_BARRIER_BROKEN on every waiting party and on late ones', async () => {
    const [a, b, c, d] = await h.cluster(4, FAST);
    const fail = `try { await dsm.barrier('k', 4); return 'passed'; } catch (e) { return e.code + ': ' + e.message; }`;
    const waitA = a.run(fail);
    const waitB = b.run(fail);
    const waitC = c.run(`await dsm.barrier('k', 4); return 'passed';`).catch(() => 'killed');
    await until('three parties arrived', 30_000, async () => ((await arrived(d, 'k')) === 3 ? true : undefined));
    c.kill('SIGKILL');
    expect(await waitC).toBe('killed');
    for (const r of await Promise.all([waitA, waitB])) expect(r).toMatch(/^ERR_DSM_BARRIER_BROKEN: barrier "k" is broken/);
    // d comes late: fewer members than parties.
    const late = await d.run(`try { await dsm.barrier('k', 4); return 'passed'; } catch (e) { return e.code; }`);
    expect(late).toBe('ERR_DSM_BARRIER_BROKEN');
    // The survivors go on with a barrier of three.
    await Promise.all([a, b, d].map((n) => n.run(`await dsm.barrier('k', 3);`)));
  });

  it('a waiting party fails when a member that has not arrived dies and too few remain', async () => {
    const [a, b, c] = await h.cluster(3, FAST);
    void b;
    const waitA = a.run(`try { await dsm.barrier('n', 3); return 'passed'; } catch (e) { return e.code; }`);
    await until('a arrived', 30_000, async () => ((await arrived(a, 'n')) === 1 ? true : undefined));
    c.kill('SIGKILL');
    expect(await waitA).toBe('ERR_DSM_BARRIER_BROKEN');
  });
});

describe('locks', () => {
  const h = new Harness();
  afterEach(() => h.close());

  it('make a read-modify-write over two transactions exclusive across three nodes', async () => {
    const nodes = await h.cluster(3);
    await nodes[0].run(`await dsm.transaction((tx) => tx.setRoot('counter', tx.alloc(8)));`);
    await Promise.all(nodes.map((n) => n.run(`await dsm.barrier('ready', 3);`)));
    const PER = 15;
    const inc = `
      const c = dsm.root('counter') >> 2;
      let overlaps = 0;
      for (let i = 0; i < args.per; i++) {
        const unlock = await dsm.lock('counter');
        // word 1 marks the critical section: nobody else may be inside.
        const v = await dsm.transaction(() => { if (dsm.u32[c + 1] !== 0) overlaps++; dsm.u32[c + 1] = dsm.nodeId + 1; return dsm.u32[c]; });
        await new Promise((r) => setTimeout(r, 2));
        await dsm.transaction(() => { dsm.u32[c] = v + 1; dsm.u32[c + 1] = 0; });
        await unlock();
      }
      return overlaps;`;
    const overlaps = await Promise.all(nodes.map((n) => n.run<number>(inc, { per: PER })));
    expect(overlaps).toEqual([0, 0, 0]);
    await Promise.all(nodes.map((n) => n.run(`await dsm.barrier('done', 3);`)));
    expect(await nodes[1].run(`return dsm.transaction(() => dsm.u32[dsm.root('counter') >> 2]);`)).toBe(3 * PER);
  });

  it('serves waiting nodes in the order they asked', async () => {
    const [a, b, c] = await h.cluster(3);
    await a.run(`await dsm.transaction((tx) => tx.setRoot('order', tx.alloc(64)));`);
    await a.run(`globalThis.unlock = await dsm.lock('fifo');`);
    const queued = (n: number) => until(`${n} node(s) queued`, 30_000, async () =>
      (await a.run<number>(`const p = await dsm._syncState('lock', 'fifo'); return dsm.transaction(() => dsm.u32[(p >> 2) + 2]);`)) === n ? true : undefined,
    );
    // Each waiter appends its id to a shared list once it holds the lock.
    const take = `await dsm.waitForGlobalTime(args.t); const unlock = await dsm.lock('fifo');
      await dsm.transaction(() => { const o = dsm.root('order') >> 2; dsm.u32[o + 1 + dsm.u32[o]] = dsm.nodeId; dsm.u32[o] += 1; });
      await unlock();`;
    const t = await a.run<number>('return dsm.globalTime;');
    const second = c.run(take, { t });
    await queued(1);
    const third = b.run(take, { t });
    await queued(2);
    await a.run('await globalThis.unlock();');
    await Promise.all([second, third]);
    const order = await a.run<number[]>(`await dsm.waitForGlobalTime(args.t); return dsm.transaction(() => { const o = dsm.root('order') >> 2; return Array.from(dsm.u32.subarray(o + 1, o + 1 + dsm.u32[o])); });`, {
      t: Math.max(await b.run<number>('return dsm.globalTime;'), await c.run<number>('return dsm.globalTime;')),
    });
    expect(order).toEqual([c.nodeId, b.nodeId]);
  });

  it('callers on one node take turns, and unlocking twice throws', async () => {
    const [a] = await h.cluster(1);
    const r = await a.run<{ order: string[]; code: string }>(`
      const order = [];
      const u1 = await dsm.lock('l');
      const second = dsm.lock('l').then((u) => { order.push('second'); return u; });
      await new Promise((r) => setTimeout(r, 20));
      order.push('first releases');
      await u1();
      let code = '';
      try { u1(); } catch (e) { code = e.code; }
      await (await second)();
      return { order, code };`);
    expect(r).toEqual({ order: ['first releases', 'second'], code: 'ERR_DSM_LOCK_NOT_HELD' });
  });

  it('a killed holder\'s lock passes to the waiting node once the holder is removed', async () => {
    const [a, b, c] = await h.cluster(3, FAST);
    void c;
    await a.run(`globalThis.unlock = await dsm.lock('m'); say('holding');`);
    const waitB = b.run(`const unlock = await dsm.lock('m'); say('b got it'); await unlock(); return 'ok';`);
    // b is queued behind a before a dies.
    await until('b queued', 30_000, async () =>
      (await b.run<number>(`const p = await dsm._syncState('lock', 'm'); return dsm.transaction(() => dsm.u32[(p >> 2) + 2]);`)) === 1 ? true : undefined,
    );
    expect(b.lines).not.toContain('b got it');
    a.kill('SIGKILL');
    expect(await waitB).toBe('ok');
  });

  it('close() releases the locks a node holds', async () => {
    const [a, b] = await h.cluster(2);
    await a.run(`globalThis.unlock = await dsm.lock('z');`);
    const word = () => b.run<number>(`const p = await dsm._syncState('lock', 'z'); return dsm.transaction(() => dsm.u32[p >> 2]);`);
    await until('b sees the lock held', 30_000, async () => ((await word()) === a.nodeId + 1 ? true : undefined));
    await a.close();
    // Released by a's own commit: nobody else touched the lock, so only that can have freed it.
    expect(await word()).toBe(0);
  });
});
