// The record, in a store's directory, of the cluster the store belongs to: the cluster's
// identity (lib/service/cluster_identity.ts) and its members' addresses as this page server
// last knew them. A page server restarted alone (no peers) asks those addresses first
// whether its cluster still runs (live_cluster.ts). Written whole on each change (a
// founding, a join, a configuration: rare), aside and renamed into place after a sync, so a
// crash leaves the old record or the new one; never in the store's LMDB file, which a
// snapshot copies to make another cluster's store.
import fs from 'node:fs';
import path from 'node:path';
import type { ClusterIdentity } from '../service/cluster_identity';
import { StoreError } from './errors';

export const RECORD_FILE = 'cluster.json';

export interface ClusterRecordData {
  identity: ClusterIdentity;
  /** host:port of each member, this page server's own included. */
  members: string[];
  /**
   * Addresses of members since gone, latest first (at most FORMER): a member that left may be
   * where the cluster was founded again (another page server of it, restarted first).
   */
  former: string[];
}

const FORMER = 32;

export class ClusterRecord {
  private written = '';

  private constructor(
    private readonly file: string,
    /** What the directory holds (undefined: no record; a new store, or one made before records were kept, or restored from a snapshot that names no cluster). */
    public data: ClusterRecordData | undefined,
    private readonly log: (message: string) => void,
  ) {}

  /** The record of the store in `dir` (no file: no record). Throws StoreError for a record that cannot be read. */
  static open(dir: string, log: (message: string) => void): ClusterRecord {
    const file = path.join(dir, RECORD_FILE);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new ClusterRecord(file, undefined, log);
      throw new StoreError(`cannot read ${file}: ${(e as Error).message}`, { cause: e });
    }
    const r = new ClusterRecord(file, parse(file, text), log);
    r.written = text;
    return r;
  }

  /**
   * A record of `identity` with no member known, in the store directory `dir` (a store
   * restored from a snapshot). Throws StoreError when it cannot be written.
   */
  static create(dir: string, identity: ClusterIdentity): void {
    const r = new ClusterRecord(path.join(dir, RECORD_FILE), undefined, () => undefined);
    try {
      r.put(JSON.stringify({ identity, members: [], former: [] }));
    } catch (e) {
      throw new StoreError(`cannot record the store's cluster in ${r.file}: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * Records `data` (nothing is written when it is what the file holds). A failed write is
   * said, never thrown: it comes from a configuration being applied, which must go on; the
   * record then lags, and a restart alone may ask addresses that no longer answer.
   */
  write(data: Omit<ClusterRecordData, 'former'>): void {
    const members = [...new Set(data.members)].sort();
    const before = this.data ? [...this.data.members, ...this.data.former] : [];
    const former = [...new Set(before)].filter((a) => !members.includes(a)).slice(0, FORMER);
    const text = JSON.stringify({ identity: data.identity, members, former });
    if (text === this.written) return;
    try {
      this.put(text);
    } catch (e) {
      this.log(`could not record the cluster's members in ${this.file} (${(e as Error).message}): restarted alone, this page server may not find them`);
    }
  }

  /** Writes `text` aside, synced, and renames it into place (the top of this file). */
  private put(text: string): void {
    const aside = `${this.file}.new`;
    const fd = fs.openSync(aside, 'w');
    try {
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(aside, this.file);
    const dir = fs.openSync(path.dirname(this.file), 'r');
    try {
      fs.fsyncSync(dir);
    } finally {
      fs.closeSync(dir);
    }
    this.written = text;
    this.data = JSON.parse(text) as ClusterRecordData;
  }
}

function parse(file: string, text: string): ClusterRecordData {
  const damaged = (why: string) =>
    new StoreError(
      `${file} is damaged (${why}). It records which cluster the store belongs to and where its members were: remove it, and a page server started on the store ` +
        'founds the cluster again from it (give it --peers HOST:PORT to join a running cluster instead)',
    );
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw damaged((e as Error).message);
  }
  const r = v as Partial<ClusterRecordData> | null;
  const i = r?.identity;
  if (!i || typeof i.id !== 'string' || typeof i.foundedAt !== 'number' || typeof i.from !== 'string') throw damaged('no cluster identity');
  const addresses = (a: unknown): a is string[] => Array.isArray(a) && a.every((m) => typeof m === 'string');
  if (!addresses(r.members) || !addresses(r.former)) throw damaged('no list of member addresses');
  return { identity: { id: i.id, foundedAt: i.foundedAt, from: i.from }, members: r.members, former: r.former };
}
