// Transactions on one node: atomicity, exact read and write sets, rollback of writes
// outside transactions, queueing, afterCommit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
const load = createRequire(__filename);
const { createNode, WriteOutsideTransactionError } = load('../..');

const PAGE = 4096;
let dsm: any;
beforeAll(async () => {
  dsm = await createNode({ regionSize: 64 << 20 });
});
afterAll(() => dsm.close());

/** A seeded generator, so a failure can be replayed. */
function rng(seed: number) {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
}

describe('transactions', () => {
  it('a throwing transaction leaves every byte as it was (random writes over 1,000 pages)', async () => {
    const first = 100;
    const span = 1000 * PAGE;
    await dsm.transaction(() => {
      for (let i = 0; i < span; i += 997) dsm.u8[first * PAGE + i] = i & 255;
    });
    const before = Buffer.from(dsm.u8.subarray(first * PAGE, first * PAGE + span));
    const r = rng(42);
    const boom = new Error('boom');
    await expect(
      dsm.transaction(() => {
        for (let k = 0; k < 20_000; k++) dsm.u8[first * PAGE + Math.floor(r() * span)] = Math.floor(r() * 256);
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(Buffer.from(dsm.u8.subarray(first * PAGE, first * PAGE + span)).equals(before)).toBe(true);
    expect(dsm.stats().shadowRestores).toBeGreaterThanOrEqual(900);
  });

  it('a committed transaction keeps its writes', async () => {
    await dsm.transaction(() => {
      dsm.u32[(2000 * PAGE) / 4] = 0xdeadbeef;
      dsm.f64[(2001 * PAGE) / 8] = Math.PI;
    });
    expect(dsm.u32[(2000 * PAGE) / 4]).toBe(0xdeadbeef);
    expect(dsm.f64[(2001 * PAGE) / 8]).toBe(Math.PI);
  });

  it('the read and write sets are exact', async () => {
    const sets = await dsm.transaction((tx: any) => {
      let s = 0;
      for (const p of [3000, 3002, 3005]) s += dsm.u8[p * PAGE + 7]; // read only
      for (const p of [3010, 3011]) dsm.u8[p * PAGE] = 1; // write only
      dsm.u32[(3005 * PAGE) / 4] += 1; // read, then write
      return { read: tx.readSet(), write: tx.writeSet(), s };
    });
    expect(sets.read).toEqual([3000, 3002, 3005]);
    expect(sets.write).toEqual([3005, 3010, 3011]);
  });

  it('a page written last time and only read now is a read: not in the write set, no commit', async () => {
    const p = 3100;
    await dsm.transaction(() => {
      dsm.u32[(p * PAGE) / 4] += 1;
    });
    const before = dsm.stats().faults;
    const time = dsm.globalTime;
    const sets = await dsm.transaction((tx: any) => {
      const v = dsm.u32[(p * PAGE) / 4]; // granted write access ahead: this node wrote it last
      return { read: tx.readSet(), write: tx.writeSet(), v };
    });
    expect(sets).toEqual({ read: [p], write: [], v: 1 });
    expect(dsm.globalTime).toBe(time); // read-only: nothing committed
    const after = dsm.stats().faults;
    expect(after.writeAhead - before.writeAhead).toBe(1);
    expect(after.writeAheadUnused - before.writeAheadUnused).toBe(1);
    // Read, then written: one fault, and the write counts.
    await dsm.transaction(() => {
      dsm.u32[(p * PAGE) / 4] += 1;
    });
    const w = await dsm.transaction((tx: any) => {
      dsm.u32[(p * PAGE) / 4] += 1;
      return tx.writeSet();
    });
    expect(w).toEqual([p]);
    expect(dsm.u32[(p * PAGE) / 4]).toBe(3);
    expect(dsm.globalTime).toBe(time + 2);
  });

  it('a write outside a transaction makes the next DSM call throw and is rolled back', async () => {
    const i = (4000 * PAGE) / 4;
    await dsm.transaction(() => {
      dsm.u32[i] = 11;
    });
    dsm.u32[i] = 99; // outside: allowed to happen, then undone
    expect(() => dsm.stats()).toThrow(WriteOutsideTransactionError);
    expect(dsm.u32[i]).toBe(11);
    dsm.u32[i + 1] = 5;
    await expect(dsm.transaction(() => 0)).rejects.toMatchObject({ code: 'ERR_DSM_WRITE_OUTSIDE_TRANSACTION' });
    expect(dsm.u32[i + 1]).toBe(0);
    expect(dsm.stats().faults.violations).toBeGreaterThanOrEqual(2);
  });

  it('transactions queue: many concurrent increments end exact; afterCommit runs once; commit events fire', async () => {
    const i = (5000 * PAGE) / 4;
    let after = 0;
    let events = 0;
    const onCommit = () => events++;
    dsm.on('commit', onCommit);
    await Promise.all(
      Array.from({ length: 500 }, () =>
        dsm.transaction((tx: any) => {
          dsm.u32[i] += 1;
          tx.afterCommit(() => after++);
        }),
      ),
    );
    dsm.off('commit', onCommit);
    expect(dsm.u32[i]).toBe(500);
    expect(after).toBe(500);
    expect(events).toBe(500);
  });

  it('a listener for an event no node emits is refused; abort events say why; events.once() works', async () => {
    for (const method of ['on', 'once', 'addListener', 'prependListener', 'prependOnceListener']) {
      expect(() => dsm[method]('comit', () => {})).toThrow(expect.objectContaining({ code: 'ERR_DSM_INVALID_OPTION', message: expect.stringContaining("'commit'") }));
    }
    const aborts: unknown[] = [];
    const onAbort = (e: unknown) => aborts.push(e);
    dsm.on('abort', onAbort);
    await expect(dsm.transaction(() => { throw new Error('mine'); })).rejects.toThrow('mine');
    dsm.off('abort', onAbort);
    expect(aborts).toEqual([{ attempt: 0, reason: 'error' }]);
    // events.once listens to 'error' beside the event it waits for.
    const { once } = await import('node:events');
    const next = once(dsm, 'commit');
    await dsm.transaction(() => { dsm.u32[(5050 * PAGE) / 4] += 1; });
    const [e] = await next;
    expect(e).toMatchObject({ time: expect.any(Number), pages: 1 });
  });

  it('afterCommit never runs for an aborted run; async and nested transactions are refused', async () => {
    let ran = false;
    await expect(
      dsm.transaction((tx: any) => {
        tx.afterCommit(() => (ran = true));
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    expect(ran).toBe(false);
    const i = (5100 * PAGE) / 4;
    await expect(
      dsm.transaction(async () => {
        dsm.u32[i] = 3;
      }),
    ).rejects.toMatchObject({ code: 'ERR_DSM_ASYNC_TRANSACTION' });
    expect(dsm.u32[i]).toBe(0);
    // An async function that throws: its own rejected promise is handled too (left
    // unhandled, it ended the process after the caller had caught ERR_DSM_ASYNC_TRANSACTION).
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      await expect(
        dsm.transaction(async () => {
          throw new Error('thrown in an async transaction function');
        }),
      ).rejects.toMatchObject({ code: 'ERR_DSM_ASYNC_TRANSACTION' });
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
    await expect(dsm.transaction(() => dsm.transaction(() => 1))).rejects.toMatchObject({ code: 'ERR_DSM_NESTED_TRANSACTION' });
    // What waits for other nodes, called inside a transaction, is named as such.
    await expect(dsm.transaction(() => dsm.barrier('b', 1))).rejects.toMatchObject({ code: 'ERR_DSM_NESTED_TRANSACTION', message: expect.stringContaining('dsm.barrier() was called inside a transaction') });
    await expect(dsm.transaction(() => dsm.lock('l'))).rejects.toMatchObject({ code: 'ERR_DSM_NESTED_TRANSACTION', message: expect.stringContaining('dsm.lock() was called inside a transaction') });
    // Not a function at all: a clear error, and the node goes on.
    await expect(dsm.transaction(42 as any)).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION', message: expect.stringContaining('must be a function (tx) => ..., got number') });
    expect(await dsm.transaction(() => 7)).toBe(7);
    // afterCommit takes a function, checked when it is called: the transaction aborts, so a
    // committed transaction never rejects because its callback could not run.
    await expect(
      dsm.transaction((tx: any) => {
        dsm.u32[i] = 4;
        tx.afterCommit(5);
      }),
    ).rejects.toMatchObject({ code: 'ERR_DSM_INVALID_OPTION', message: 'tx.afterCommit: the argument must be a function, got number' });
    expect(dsm.u32[i]).toBe(0);
  });

  it('the service bridge installs an invalidated page on the next touch (read, write, in a transaction)', async () => {
    const before = dsm.stats().faults.service;
    await dsm._testInvalidate(6000, 0xab);
    expect(dsm.u8[6000 * PAGE + 5]).toBe(0xab);
    await dsm._testInvalidate(6001, 0x11);
    await dsm.transaction(() => {
      dsm.u8[6001 * PAGE] += 1;
    });
    expect(dsm.u8[6001 * PAGE]).toBe(0x12);
    expect(dsm.stats().faults.service).toBe(before + 2);
    expect(dsm.stats().installs).toBeGreaterThanOrEqual(2);
  });
});
