// Barriers and locks for SPMD programs with real node processes: rounds of a barrier make
// every party's writes visible to all, a lock makes a read-modify-write spread over two
// transactions exclusive across nodes, and both survive a party or holder being killed
// (a barrier also its coordinator, the lowest member) and malformed barrier messages; a
// released party waits for the round's global time (shown with a release made by hand).
import { afterEach, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { Harness, type RemoteNode, until } from './harness';
const { encode, BarrierKind, Msg } = createRequire(__filename)('../../dist/service/protocol.js');

const FAST = { heartbeatMs: 200, deadAfterMs: 2000 };

/** The nodes that arrived at the open round of barrier `name`, as `n` knows them when it is the coordinator (the lowest member). */
function arrived(n: RemoteNode, name: string): Promise<number> {
  return n.run<number>(`return (await dsm._barrierState(args.name)).arrived.length;`, { name });
}

/** The nodes `n`, waiting at barrier `name`, was told arrived so far. */
function known(n: RemoteNode, name: string): Promise<number[]> {
  return n.run<number[]>(`return (await dsm._barrierState(args.name)).known;`, { name });
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
    await until('three parties arrived', 30_000, async () => ((await arrived(a, 'k')) === 3 ? true : undefined));
    c.kill('SIGKILL');
    expect(await waitC).toBe('killed');
    for (const r of await Promise.all([waitA, waitB])) expect(r).toMatch(/^ERR_DSM_BARRIER_BROKEN: barrier "k" is broken/);
    // The survivors go on with a barrier of three.
    await Promise.all([a, b, d].map((n) => n.run(`await dsm.barrier('k', 3);`)));
  });

  it('a round with fewer members than parties waits for the nodes still joining, and breaks only when a member is removed', async () => {
    // Every process of an SPMD program calls the first barrier as soon as it has started:
    // the founder is there before the others are members.
    const a = await h.start(FAST);
    const waitA = a.run(`await dsm.barrier('start', 3); return (await dsm.clusterStats()).members.length;`);
    await until('a arrived', 30_000, async () => ((await arrived(a, 'start')) === 1 ? true : undefined));
    const b = await h.start({ ...FAST, peers: [a.address] });
    const waitB = b.run(`await dsm.barrier('start', 3); return 'passed';`);
    await until('b arrived', 30_000, async () => ((await arrived(a, 'start')) === 2 ? true : undefined));
    const c = await h.start({ ...FAST, peers: [a.address] });
    expect(await c.run(`await dsm.barrier('start', 3); return 'passed';`)).toBe('passed');
    expect(await waitB).toBe('passed');
    expect(await waitA).toBe(3);
    // Still short of parties when a member is removed: the round breaks on every waiting party.
    const w = [a, b].map((n) => n.run(`try { await dsm.barrier('five', 5); return 'passed'; } catch (e) { return e.code; }`));
    await until('a and b arrived', 30_000, async () => ((await arrived(a, 'five')) === 2 ? true : undefined));
    c.kill('SIGKILL');
    expect(await Promise.all(w)).toEqual(['ERR_DSM_BARRIER_BROKEN', 'ERR_DSM_BARRIER_BROKEN']);
  });

  it('a waiting party fails when a member that has not arrived dies and too few remain', async () => {
    const [a, b, c] = await h.cluster(3, FAST);
    void b;
    const waitA = a.run(`try { await dsm.barrier('n', 3); return 'passed'; } catch (e) { return e.code; }`);
    await until('a arrived', 30_000, async () => ((await arrived(a, 'n')) === 1 ? true : undefined));
    c.kill('SIGKILL');
    expect(await waitA).toBe('ERR_DSM_BARRIER_BROKEN');
  });

  it('a waiting party that loses its quorum fails with ERR_DSM_PARTITIONED, as its transactions do', async () => {
    // With two of three dead nobody can remove them, so nothing would ever end the round:
    // the wait hung for good while transactions and locks were refused at once.
    const [a, b, c] = await h.cluster(3, FAST);
    const waitA = a.run(`try { await dsm.barrier('q', 3); return 'passed'; } catch (e) { return e.code; }`);
    await until('a arrived', 30_000, async () => ((await arrived(a, 'q')) === 1 ? true : undefined));
    b.kill('SIGKILL');
    c.kill('SIGKILL');
    expect(await waitA).toBe('ERR_DSM_PARTITIONED');
    // And a call made while cut off fails at once.
    expect(await a.run(`try { await dsm.barrier('q2', 2); return 'passed'; } catch (e) { return e.code; }`)).toBe('ERR_DSM_PARTITIONED');
  });

  it('200 rounds by three nodes: each sees every party\'s sequential and transactional writes made before the round', async () => {
    // Durability 'none': a transaction returns once committed here, before any other node
    // has it; the barrier's release must still wait for it.
    const nodes = await h.cluster(3, { durability: 'none' });
    const ROUNDS = 200;
    // The three sequential words share one page (each write takes it back from the readers
    // of the round before, by invalidation); the transactional words sit on pages of their
    // own and go to every node by their commits.
    await nodes[0].run(`await dsm.transaction((tx) => { tx.setRoot('seq', tx.alloc(3 * 4096, { model: 'sequential' })); tx.setRoot('txn', tx.alloc(3 * 4096)); });`);
    await Promise.all(nodes.map((n) => n.run(`await dsm.barrier('setup', 3);`)));
    const results = await Promise.all(
      nodes.map((n, i) =>
        n.run<string[]>(
          `const bad = [];
           const seq = dsm.root('seq') >> 2;
           const txn = dsm.root('txn') >> 2;
           for (let r = 0; r < args.rounds && bad.length < 10; r++) {
             await dsm.transaction(() => { dsm.u32[txn + args.i * 1024] = r + 1; });
             dsm.u32[seq + args.i] = r + 1;
             await dsm.barrier('rounds', 3);
             // A faster party may already be writing the next round: r + 2 is fine, r is not.
             for (let k = 0; k < 3; k++) {
               const s = dsm.u32[seq + k];
               const t = dsm.u32[txn + k * 1024];
               if (s !== r + 1 && s !== r + 2) bad.push('round ' + r + ': sequential word of node ' + k + ' is ' + s);
               if (t !== r + 1 && t !== r + 2) bad.push('round ' + r + ': transactional word of node ' + k + ' is ' + t);
             }
           }
           return bad;`,
          { i, rounds: ROUNDS },
        ),
      ),
    );
    expect(results).toEqual([[], [], []]);
  });

  it('refuses a second wait from one node and a parties count unlike the round\'s', async () => {
    const [a, b, c] = await h.cluster(3);
    const waitA = a.run(`await dsm.barrier('m', 3); return 'passed';`);
    await until('a arrived', 30_000, async () => ((await arrived(a, 'm')) === 1 ? true : undefined));
    expect(await a.run(`try { await dsm.barrier('m', 3); return 'passed'; } catch (e) { return e.code + ': ' + e.message; }`)).toMatch(/^ERR_DSM_INVALID_OPTION: .*already waiting at it/);
    expect(await b.run(`try { await dsm.barrier('m', 2); return 'passed'; } catch (e) { return e.code + ': ' + e.message; }`)).toMatch(
      /^ERR_DSM_INVALID_OPTION: dsm.barrier\("m", 2\): the parties already waiting passed 3 parties/,
    );
    // The refused party joins the round with the right count.
    await Promise.all([b, c].map((n) => n.run(`await dsm.barrier('m', 3);`)));
    expect(await waitA).toBe('passed');
  });

  it('the coordinator (lowest id) killed while parties wait: a round it was not part of completes', async () => {
    const [z, a, b, c] = await h.cluster(4, FAST);
    const waitA = a.run(`await dsm.barrier('c', 3); return 'passed';`);
    const waitB = b.run(`await dsm.barrier('c', 3); return 'passed';`);
    await until('a and b arrived at the coordinator', 30_000, async () => ((await arrived(z, 'c')) === 2 ? true : undefined));
    z.kill('SIGKILL');
    // c arrives at the dead coordinator or, once the configuration without it is applied, at
    // the new one; a and b arrive there again.
    const waitC = c.run(`await dsm.barrier('c', 3); return 'passed';`);
    expect(await Promise.all([waitA, waitB, waitC])).toEqual(['passed', 'passed', 'passed']);
    // And the survivors go on.
    await Promise.all([a, b, c].map((n) => n.run(`for (let i = 0; i < 5; i++) await dsm.barrier('c', 3);`)));
  });

  it('the coordinator killed after it arrived: the round breaks on every waiting party', async () => {
    const [z, a, b, c] = await h.cluster(4, FAST);
    const waitZ = z.run(`await dsm.barrier('p', 3); return 'passed';`).catch(() => 'killed');
    await until('the coordinator arrived', 30_000, async () => ((await arrived(z, 'p')) === 1 ? true : undefined));
    const waitA = a.run(`try { await dsm.barrier('p', 3); return 'passed'; } catch (e) { return e.code + ': ' + e.message; }`);
    await until('a was told the coordinator arrived', 30_000, async () => ((await known(a, 'p')).includes(z.nodeId) ? true : undefined));
    z.kill('SIGKILL');
    expect(await waitZ).toBe('killed');
    // Three members remain, as many as the parties: the round breaks only because the coordinator had arrived.
    expect(await waitA).toMatch(new RegExp(`^ERR_DSM_BARRIER_BROKEN: barrier "p" is broken: node ${z.nodeId}, which had arrived, was removed`));
    await Promise.all([a, b, c].map((n) => n.run(`await dsm.barrier('p', 3);`)));
  });

  it('the coordinator killed after releasing one party: the new coordinator learns the round and releases the rest', async () => {
    const [z, a, b, c] = await h.cluster(4, FAST);
    void c;
    const waitA = a.run(`await dsm.barrier('r', 3); return 'passed';`);
    const waitB = b.run(`await dsm.barrier('r', 3); return 'passed';`);
    await until('a and b arrived at the coordinator', 30_000, async () => ((await arrived(z, 'r')) === 2 ? true : undefined));
    // The coordinator's releases cut short, made by hand: round 0 ended (with a, b and c), b
    // alone was told. b does not call the barrier again.
    const round = { gen: 0, broken: false, time: 0, reporter: z.nodeId, decider: z.nodeId, ids: [a.nodeId, b.nodeId, c.nodeId], why: '' };
    const release = encode.barrierAnswer({ name: 'r', gen: 0, kind: BarrierKind.released, round });
    await z.run(`await dsm._testSend(args.to, args.msg, new Uint8Array(args.bytes));`, { to: b.nodeId, msg: Msg.BarrierAnswer, bytes: [...release] });
    expect(await waitB).toBe('passed');
    z.kill('SIGKILL');
    // a arrives again at the new coordinator (a itself, the lowest member left), which knows
    // nothing of round 0; b tells it.
    expect(await waitA).toBe('passed');
    expect(await a.run(`return (await dsm._barrierState('r')).next;`)).toBe(1);
  });

  it('a released party returns only once its node has applied the round\'s time', async () => {
    const [a, b] = await h.cluster(2);
    const waitB = b.run<number>(`await dsm.barrier('t', 2); return dsm.globalTime;`);
    await until('b arrived at the coordinator', 30_000, async () => ((await arrived(a, 't')) === 1 ? true : undefined));
    // The coordinator's release, made by hand: the round's time is 5 commits ahead of any node.
    const time = Math.max(await a.run<number>('return dsm.globalTime;'), await b.run<number>('return dsm.globalTime;')) + 5;
    const round = { gen: 0, broken: false, time, reporter: a.nodeId, decider: a.nodeId, ids: [a.nodeId, b.nodeId], why: '' };
    const release = encode.barrierAnswer({ name: 't', gen: 0, kind: BarrierKind.released, round });
    await a.run(`await dsm._testSend(args.to, args.msg, new Uint8Array(args.bytes));`, { to: b.nodeId, msg: Msg.BarrierAnswer, bytes: [...release] });
    await until('b took the release', 30_000, async () => ((await b.run<{ next: number }>(`return dsm._barrierState('t');`)).next === 1 ? true : undefined));
    // Only now does the cluster reach that time.
    await a.run(`const p = await dsm.transaction((tx) => tx.alloc(8)); for (let i = 0; i < 5; i++) await dsm.transaction(() => { dsm.u32[p >> 2] = i; });`);
    expect(await waitB).toBeGreaterThanOrEqual(time);
  });

  it('a malformed barrier message from a peer is dropped: the service goes on, the connection stays', async () => {
    const [a, b] = await h.cluster(2);
    // BarrierArrive (49) and BarrierAnswer (50): empty, truncated, an unknown kind, trailing bytes, a huge id count.
    const bad = [
      [49, []],
      [49, [3, 0, 0, 0, 0x61]],
      [50, [1, 0, 0, 0, 0x61, 0, 0, 0, 0, 9]],
      [50, [1, 0, 0, 0, 0x61, 0, 0, 0, 0, 4, 0xff, 0xff]],
      [49, [1, 0, 0, 0, 0x61, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 7, 7]],
    ];
    await b.run(`for (const [msg, bytes] of args.bad) await dsm._testSend(args.to, msg, new Uint8Array(bytes));`, { bad, to: a.nodeId });
    await Promise.all([a, b].map((n) => n.run(`await dsm.barrier('after', 2);`)));
    expect(a.stderr).toMatch(/dropped a malformed barrier (arrival|answer) from node/);
    expect((await a.run<{ members: number[] }>(`return dsm.clusterStats();`)).members).toEqual([a.nodeId, b.nodeId]);
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

  it('protect a read-modify-write of sequential data (outside transactions) across three nodes', async () => {
    // The next holder must read what the last one wrote: a sequential write has returned
    // only once no other node can read the old value, and the unlock comes after it.
    const nodes = await h.cluster(3);
    await nodes[0].run(`await dsm.transaction((tx) => { tx.setRoot('c', tx.alloc(8, { model: 'sequential' })); });`);
    await Promise.all(nodes.map((n) => n.run(`await dsm.transaction(() => 0); await dsm.barrier('setup', 3);`)));
    const PER = 100;
    const inc = `
      const c = dsm.root('c') >> 2;
      for (let i = 0; i < args.per; i++) {
        const unlock = await dsm.lock('m');
        const x = dsm.u32[c];
        await new Promise((r) => setImmediate(r)); // the others run meanwhile, waiting for the lock
        dsm.u32[c] = x + 1;
        unlock();
      }`;
    await Promise.all(nodes.map((n) => n.run(inc, { per: PER })));
    await Promise.all(nodes.map((n) => n.run(`await dsm.barrier('end', 3);`)));
    expect(await Promise.all(nodes.map((n) => n.run<number>(`return dsm.u32[dsm.root('c') >> 2];`)))).toEqual([3 * PER, 3 * PER, 3 * PER]);
  });

  it('hands the lock to the first waiter in the release commit: the waiter takes it without a commit of its own', async () => {
    const [a, b] = await h.cluster(2);
    await a.run(`globalThis.unlock = await dsm.lock('hand');`);
    const word = (n: typeof a) => n.run<number[]>(`const p = await dsm._syncState('lock', 'hand'); return dsm.transaction(() => [dsm.u32[p >> 2], dsm.u32[(p >> 2) + 2]]);`);
    const taken = b.run<number>(`globalThis.unlock = await dsm.lock('hand'); return dsm.globalTime;`);
    await until('b queued', 30_000, async () => ((await word(a))[1] === 1 ? true : undefined));
    const released = await a.run<number>('await globalThis.unlock(); return dsm.globalTime;');
    // b holds it as of a's release: nothing was committed after that commit (before, b
    // took the freed lock in a commit of its own, which needed the token back from a).
    expect(await taken).toBe(released);
    expect(await word(b)).toEqual([b.nodeId + 1, 0]);
    await b.run('await globalThis.unlock();');
    expect(await word(b)).toEqual([0, 0]);
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

  it('a waiter that times out leaves the queue: the next release frees the lock instead of handing it to nobody', async () => {
    const [a, b] = await h.cluster(2);
    await a.run(`globalThis.unlock = await dsm.lock('t');`);
    const state = () => a.run<number[]>(`const p = await dsm._syncState('lock', 't'); return dsm.transaction(() => Array.from(dsm.u32.subarray(p >> 2, (p >> 2) + 4)));`);
    // b joins the queue at once (its first look, well inside the time-out), then gives up.
    const r = await b.run<{ code: string; message: string; joined: boolean }>(`
      const t0 = dsm.globalTime;
      try { await dsm.lock('t', { timeoutMs: 1500 }); return { code: 'taken' }; }
      catch (e) { return { code: e.code, message: e.message, joined: dsm.globalTime > t0 }; }`);
    expect(r.code).toBe('ERR_DSM_TIMEOUT');
    expect(r.message).toContain('another node held it');
    expect(r.joined).toBe(true); // it had committed its place in the queue
    expect((await state()).slice(0, 3)).toEqual([a.nodeId + 1, 1, 0]); // a holds, nobody waits
    await a.run('await globalThis.unlock();');
    // Freed, not handed to b: a (or anyone) takes it again at once.
    expect((await state())[0]).toBe(0);
    expect(await a.run<string>(`const u = await dsm.lock('t', { timeoutMs: 0 }); await u(); return 'again';`)).toBe('again');
    expect(await b.run<string>(`const u = await dsm.lock('t', { timeoutMs: 0 }); await u(); return 'b too';`)).toBe('b too');
  });

  it('timeoutMs 0 takes a free lock and otherwise fails at once without joining the queue; callers behind a local holder time out too', async () => {
    const [a, b] = await h.cluster(2);
    await a.run(`globalThis.unlock = await dsm.lock('z');`);
    const r = await b.run<{ code: string; commits: number }>(`
      const t0 = dsm.globalTime;
      try { await dsm.lock('z', { timeoutMs: 0 }); return { code: 'taken' }; }
      catch (e) { return { code: e.code, commits: dsm.globalTime - t0 }; }`);
    expect(r).toEqual({ code: 'ERR_DSM_TIMEOUT', commits: 0 });
    const local = await a.run<{ second: string; third: string }>(`
      const second = dsm.lock('z', { timeoutMs: 50 }).then(() => 'taken', (e) => e.code + ': ' + e.message);
      const third = dsm.lock('z').then(async (u) => { await u(); return 'taken after the release'; });
      const s = await second;
      await globalThis.unlock();
      return { second: s, third: await third };`);
    expect(local.second).toMatch(/^ERR_DSM_TIMEOUT: .*a caller on this node/);
    expect(local.third).toBe('taken after the release');
    expect(await b.run<string>(`const u = await dsm.lock('z', { timeoutMs: 0 }); await u(); return 'free';`)).toBe('free');
    const bad = await b.run<string[]>(`
      const out = [];
      for (const o of [{ timeoutMs: -1 }, { timeoutMs: 1.5 }, { timeoutMs: '5' }, { wait: 5 }]) {
        try { await dsm.lock('z', o); out.push('accepted'); } catch (e) { out.push(e.code + ' ' + e.message); }
      }
      return out;`);
    expect(bad).toHaveLength(4);
    for (const line of bad) expect(line).toMatch(/^ERR_DSM_INVALID_OPTION .*(timeoutMs must be|unknown option "wait"; it takes "timeoutMs")/);
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

  it('close() ends what waits on the closing node with ERR_DSM_CLOSED, and an unlock after it says so', async () => {
    const [a, b] = await h.cluster(2);
    await b.run(`globalThis.unlock = await dsm.lock('held');`);
    // Each used to fail another way: the barrier with ERR_DSM_SYSTEM (the service thread
    // exited), the wait with ERR_DSM_TIMEOUT long before its time-out, and the unlock with
    // ERR_DSM_LOCK_NOT_HELD (unlock already called).
    const codes = await a.run<string[]>(
      `const unlock = await dsm.lock('mine');
       const code = (p) => p.then(() => 'resolved', (e) => e.code);
       const pending = [code(dsm.barrier('b', 3)), code(dsm.waitForGlobalTime(dsm.globalTime + 1000, { timeoutMs: 600000 })), code(dsm.lock('held'))];
       await dsm._barrierState('b');
       await dsm.close();
       const ended = await Promise.all(pending);
       try { await unlock(); ended.push('resolved'); } catch (e) { ended.push(e.code); }
       return ended;`,
    );
    expect(codes).toEqual(['ERR_DSM_CLOSED', 'ERR_DSM_CLOSED', 'ERR_DSM_CLOSED', 'ERR_DSM_CLOSED']);
  });

  it('a lock asked for just before close() settles: its acquisition went on in transactions behind the stopped service', async () => {
    const [a] = await h.cluster(2);
    const got = await a.run<string>(
      `const p = dsm.lock('jobs').then(() => 'resolved', (e) => e.code);
       await dsm.close();
       return await p;`,
    );
    expect(got).toBe('ERR_DSM_CLOSED');
  });
});
