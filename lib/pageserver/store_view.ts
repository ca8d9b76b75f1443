// Consistent views of the page store (store.ts): one LMDB read transaction, so a view stays
// at one global time while the store goes on applying and flushing. Snapshots and a page
// server founding the cluster read the store through these.
import type { Transaction } from 'lmdb';
import { StoreError } from './errors';
import { type Dbs, type Geometry, joinBody, joinPage, joinTail, u64 } from './store_dir';

/** One page of a consistent view: `data` is null while the store waits for a whole copy of this version. */
export interface ViewPage {
  page: number;
  version: number;
  data: Uint8Array | null;
}

/**
 * The store as it was on disk at one moment (an LMDB read transaction): stays the same while
 * the store goes on applying and flushing. Close it when done: an open view keeps LMDB from
 * reusing the pages it sees, so the file grows while it is open.
 */
export interface StoreView {
  /** The global time of the image. */
  readonly time: number;
  readonly geometry: Geometry;
  /** How many pages `pages()` yields (stored and missing). */
  readonly count: number;
  /** Every page ever written, in page order; `data` is a fresh copy. */
  pages(): Generator<ViewPage>;
  /**
   * The stored pages (not the missing ones) in page order, `batch` at a time, copied straight
   * into one reused buffer (loading a large store without a copy per page); `fn` gets the
   * batch's page numbers, versions and contents (count pages each), valid until it returns.
   */
  batches(batch: number, fn: (pages: Uint32Array, versions: Float64Array, data: Uint8Array, count: number) => void): void;
  close(): void;
}

/** A view of the store in `dir` (its databases `dbs`) as on disk now. */
export function openStoreView(dbs: Dbs, geometry: Geometry, dir: string): StoreView {
  const { root, body, head, missing, meta } = dbs;
  const txn = root.useReadTransaction();
  // lmdb reads through a given read transaction (its typings omit the option).
  const t = (meta.getBinary as (key: string, o: { transaction: Transaction }) => Buffer | undefined).call(meta, 'time', { transaction: txn });
  const time = t ? u64(t, 0) : 0;
  const count = head.getCount({ transaction: txn }) + missing.getCount({ transaction: txn });
  const ps = geometry.pageSize;
  let open = true;
  return {
    time,
    count,
    geometry: { ...geometry },
    *pages(): Generator<ViewPage> {
      if (!open) throw new StoreError('the store view is closed');
      const gone = missing.getRange({ transaction: txn })[Symbol.iterator]();
      let m = gone.next();
      const bodies = body.getRange({ transaction: txn })[Symbol.iterator]();
      for (const { key, value } of head.getRange({ transaction: txn })) {
        while (!m.done && m.value.key < key) {
          yield { page: m.value.key, version: u64(m.value.value, 0), data: null };
          m = gone.next();
        }
        const b = bodies.next();
        const data = new Uint8Array(ps);
        joinPage(dir, key, b.done || b.value.key !== key ? undefined : b.value.value, value, data);
        yield { page: key, version: u64(value, 0), data };
      }
      for (; !m.done; m = gone.next()) yield { page: m.value.key, version: u64(m.value.value, 0), data: null };
    },
    batches(batch: number, fn: (pages: Uint32Array, versions: Float64Array, data: Uint8Array, count: number) => void): void {
      if (!open) throw new StoreError('the store view is closed');
      const pages = new Uint32Array(batch);
      const versions = new Float64Array(batch);
      const data = new Uint8Array(batch * ps);
      let k = 0;
      // Values in place (store_dir.ts IN_PLACE): the head may sit in lmdb-js's shared value
      // buffer, which reading the body overwrites, so it is used first.
      const bodies = dbs.inPlace.body.getRange({ transaction: txn })[Symbol.iterator]();
      for (const { key, value } of dbs.inPlace.head.getRange({ transaction: txn })) {
        const into = data.subarray(k * ps, (k + 1) * ps);
        pages[k] = key;
        versions[k] = u64(value, 0);
        joinTail(value, into);
        const b = bodies.next();
        joinBody(dir, key, b.done || b.value.key !== key ? undefined : b.value.value, into);
        if (++k === batch) {
          fn(pages, versions, data, k);
          k = 0;
        }
      }
      if (k > 0) fn(pages, versions, data, k);
    },
    close(): void {
      if (open) txn.done();
      open = false;
    },
  };
}
