// The cluster protocol: every message between nodes, its type number and its payload
// layout, in one place. The transport (frame.ts) wraps each payload in a frame carrying the
// protocol version and the cluster id; types below 16 belong to the transport.
//
// Conventions: little-endian; u64 fields are global times or versions (safe integers);
// `str` and `bytes` are a u32 length then the bytes; `u32s` is a u32 count then u32s.
// Node ids are u16. Page numbers are u32.
import { WireError, WireReader, WireWriter } from './wire';
import { decodeBarrierAnswer, decodeBarrierArrive, encodeBarrierAnswer, encodeBarrierArrive } from './barrier_wire';
export { BarrierKind, type BarrierAnswer, type BarrierArrival, type BarrierRound } from './barrier_wire';
import { decodeHello, decodeJoinRefused, encodeHello, encodeJoinRefused } from './hello_wire';
import { type ClusterIdentity, readIdentity, writeIdentity } from './cluster_identity';
export type { Hello, JoinRefusal, RegionGeometry } from './hello_wire';
import { decodeRecover, decodeRecoverState, encodeRecover, encodeRecoverState } from './recovery_wire';
export type { Recover, RecoverState } from './recovery_wire';

export const Msg = {
  /** First message on every connection: who I am. */
  Hello: 16,
  /** Founder/any member -> joiner: your id and the cluster's state. */
  JoinAccept: 17,
  // 18 and 19 (MemberAdd, MemberRemove) are retired: membership changes are configuration
  // commits now (Commit with a configuration section).
  /**
   * Leave: u16 the successor. A leaving node, under the token, has handed its pages to the
   * successor; the token follows, and the successor commits the configuration without it.
   */
  Leave: 28,
  TokenRequest: 20,
  Token: 21,
  Commit: 22,
  PageRequest: 23,
  PageReply: 24,
  ResendRequest: 25,
  StatsRequest: 26,
  StatsReply: 27,
  /** Recovery after members are lost (recovery.ts; layouts in recovery_wire.ts). */
  RecoverQuery: 29,
  RecoverState: 30,
  Recovered: 31,
  /** A leaving node's pages, for its successor (payload as PageReply). */
  Handover: 32,
  /** Leaving node -> successor: that was all; answer HandoverAck once installed. */
  HandoverDone: 33,
  HandoverAck: 34,
  /** Owner -> requester on a new data channel: replies may come this way now (no payload). */
  DataReady: 35,
  /** Lease ping: u64 the sender's clock (ms) when sent. Answered by LeaseEcho. */
  LeasePing: 36,
  /**
   * Lease echo: u64 the ping's value | u32 the ballot of the latest regeneration of the token
   * the answering member knows of | u64 the time it was regenerated at (0, 0: none).
   */
  LeaseEcho: 37,
  /** To a node that speaks under an id the configuration no longer has: u32 the configuration's epoch. */
  Removed: 38,
  /**
   * Backup -> committer: u32 count, then u64 times. The backup holds every page of each of
   * those commits at its version or newer (acknowledgements made in one turn travel together).
   */
  CommitAck: 39,
  /**
   * Committer -> a member that became its backup after the commit was made: u64 time | u32s
   * pages. Hold these pages at that version or newer, then answer CommitAck.
   */
  BackupRequest: 40,
  /** Client -> page server: send a snapshot of your store (no payload; lib/pageserver/snapshot_serving.ts). */
  SnapshotRequest: 41,
  /** Page server -> client: the next bytes of the snapshot file, in order. */
  SnapshotChunk: 42,
  /** Page server -> client: that was all. JSON { bytes, time, pages } or { error }. */
  SnapshotEnd: 43,
  // 44 was ModelSet (a commit's model changes, sent ahead of it); since protocol version 16 they travel in the commit.
  /** Sequential page request, forwarded along the owner hints: u32 page | u16 requester | u8 flags (1: write; 2: a search, sent to every member, answered with the page by the owner only) | u16 hops | u16 pages (read-ahead). */
  SeqRequest: 45,
  /** Owner -> requester: u32 page | u8 status (0 read copies, 1 ownership, 2 a local page: refused, 3 lost, 4 not the owner: search, 5 not the owner but a copy here) | u64 the page's generation | the pages (sequential_wire.ts). */
  SeqReply: 46,
  /** Owner -> copy holder: u32 first page | u16 new owner | u32 token | u16 pages | u64 the pages' generation. Answered at once by SeqInvalidateAck (u32 token). */
  SeqInvalidate: 47,
  SeqInvalidateAck: 48,
  /** Party -> the barrier coordinator (barriers.ts; layout in barrier_wire.ts): an arrival, or what the sender knows of a barrier's last round (BarrierArrival). */
  BarrierArrive: 49,
  /** Coordinator -> party: released, broken, moved to a later round, refused, or who arrived so far (BarrierAnswer). */
  BarrierAnswer: 50,
  /** Owner -> a former reader, at the owner's barrier arrival (pushed_copies.ts; layout in sequential_wire.ts): read copies nobody asked for, dropped at the reader's next arrival there. */
  SeqPush: 51,
  /** Member -> joiner, instead of JoinAccept: why this peer cannot admit it (layout in hello_wire.ts): its region differs from the cluster's (final: the joiner gives up at once), or the peer is no member itself (the joiner asks another). */
  JoinRefused: 52,
  /**
   * Leaving node -> its successor, before the transactional hand-over (leaving.ts; layout in
   * sequential_wire.ts): the sequential and migratory pages it owns. The successor takes each
   * through the usual ownership request, then answers SeqTakenOver: u8 1; or at once u8 0
   * when it is leaving too (the leaver asks a member that stays).
   */
  SeqTakeOver: 53,
  SeqTakenOver: 54,
  /**
   * Searcher -> a member holding a read copy of a sequential page whose owner is gone (layout
   * in sequential_wire.ts): take ownership of it, with the other holders as its copy set.
   */
  SeqAdopt: 55,
  /**
   * A member whose search found neither the owner nor a copy of a sequential or migratory
   * page -> every member (layout in sequential_wire.ts): the page is lost, for the whole
   * cluster (sequential_loss.ts), in the generation the message names.
   */
  SeqLost: 56,
  /** Client -> member: which cluster are you in (no payload; lib/pageserver/live_cluster.ts); answered by ClusterReply, JSON (cluster.ts serveClient). */
  ClusterRequest: 57,
  ClusterReply: 58,
  /**
   * A node about to leave -> every member (leave_intent.ts), before it lists the sequential
   * and migratory pages it owns; no payload. From then on the member grants it nothing and
   * sends it no copies; it answers LeaveIntentAck (no payload) once every grant it started
   * before has been sent (on this connection, ahead of the acknowledgement).
   */
  LeaveIntent: 59,
  LeaveIntentAck: 60,
  /**
   * A node ('disk') -> a page server: u64 time. Answer DurableAt once every commit up to that
   * time is on your disk (a read-only transaction that read commits up to it waits for that;
   * durable_reads.ts).
   */
  DurableQuery: 61,
  /** Page server -> a node that asked: u64 time. Every commit up to that time is on its disk. */
  DurableAt: 62,
  /**
   * Member -> a member whose ResendRequest begins before the oldest commit it still keeps:
   * u64 that oldest time. Unless another member fills the gap, the asker joins again as a
   * new member, which hands it the cluster's state whole (commits.ts onResendGone).
   */
  ResendGone: 63,
  // 64 and 65 are unused (a check for a token lost with a connection, made needless by the sessions).
  /**
   * A member session (links.ts), none of the three numbered itself. Resume, the first frame
   * on every connection bound to a member, and Ack: u64 how many of its frames this node has
   * handled. Skip: u64 the number of the next frame (those before it were given up).
   */
  Resume: 66,
  Ack: 67,
  Skip: 68,
  /** To a member that dialled an id this node had before it joined again (Hello names it): u16 that id. */
  Gone: 69,
} as const;

export const NO_NODE = 0xffff;
const EMPTY = new Uint8Array(0);
const NO_MODELS = new Uint32Array(0);
/** The owner of a page decided lost (its latest version died with every holder). */
export const LOST_OWNER = 0xfffe;

export interface Member {
  id: number;
  /** host:port others connect to. */
  address: string;
  /** A page server (lib/pageserver): stores every commit, never runs transactions. */
  pageServer?: boolean;
}

/**
 * JoinAccept: u16 assigned id | u16 admitter's id | u64 time | u32 configuration epoch | u16 next id | u32 member count, then per member
 * u16 id, str address, u8 flags (1: a page server) | u32 written page count, then per page u32 page, u64 version, u16 owner (LOST_OWNER: lost) |
 * u32 rn count, then per entry u16 id, u32 seq | u32 model run count, then per run u32 first page, u32 pages,
 * u8 model (sequential.ts Model), u16 owner hint, u64 generation (the global time the run's pages were declared at):
 * the admitter's pages outside transactional consistency |
 * u32 the token's generation | u32 ballot, u64 time: the latest regeneration of the token the admitter knows of |
 * the cluster's identity (cluster_identity.ts).
 */
/** Pages with a version and an owner each, as parallel arrays of one length. */
export interface PageVersions {
  pages: Uint32Array;
  versions: Float64Array;
  owners: Uint16Array;
}

export interface JoinAccept {
  id: number;
  admitter: number;
  time: number;
  epoch: number;
  nextId: number;
  members: Member[];
  /** Every written page's version and owner, as parallel arrays (a large region has millions). */
  pages: PageVersions;
  rn: Map<number, number>;
  /** Runs of pages outside transactional consistency, with the admitter's owner hint for each run. */
  models: ModelRun[];
  /**
   * The generation of the token the admission was made under, and the latest regeneration
   * the admitter knows of: a node joining again holds no older token's view any more, and a
   * regeneration it hears of later that happened before it joined voids nothing of its own.
   */
  generation: number;
  known: Regeneration;
  identity: ClusterIdentity;
}

/** Pages `first` .. `first + count - 1`, all of `model`, whose probable owner is `owner`, declared at global time `generation` (sequential_loss.ts). */
export interface ModelRun {
  first: number;
  count: number;
  model: number;
  owner: number;
  generation: number;
}

/** Token: u32 generation | u32 hops (transfers so far) | u64 time | u32 ln count, then u16 id, u32 seq | u32 queue count, then u16 ids | members as in JoinAccept. */
export interface TokenState {
  generation: number;
  hops: number;
  time: number;
  ln: Map<number, number>;
  queue: number[];
  members: Member[];
}

/**
 * Commit: u64 time | u16 committer | u8 backups the committer waits for (replication.ts; 0:
 * durability 'none') | u32 generation of the token it was made with | u32s pages | bytes changes (per page, in order: u64 the version it replaces |
 * u32 length | a diff, native/page_diff.h; empty: no changes carried, receivers invalidate)
 * | u32s model changes ((first page, count, model) triples; sequential_wire.ts checkModelChanges)
 * | then, for a configuration change only:
 * u32 epoch | u16 next id | members as in JoinAccept | u32 count, then u16 removed ids | u32s pages decided
 * lost | u32s pages moved | u32 count, then u16 their new owners | u32 count, then u64 their versions.
 */
export interface CommitRecord {
  time: number;
  node: number;
  pages: Uint32Array;
  /** What changed in each page (see above); absent for configurations. */
  changes?: Uint8Array;
  /**
   * Blocks the commit allocated, freed or declared again outside transactional consistency:
   * (first page, count, model) triples. In the record, so that whoever re-sends it (a backup
   * after the committer died, any member to one that missed it) re-sends them too.
   */
  models?: Uint32Array;
  /** How many backups the committer waits for (durability 'replicated'; 0: none). */
  backups?: number;
  /**
   * The generation of the token it was made with: past the time a later generation was
   * regenerated at, it is void (recovery.ts isVoid), however late it arrives.
   */
  generation?: number;
  /** A new configuration, made under the token at this time. */
  config?: ConfigChange;
}

/** A numbered configuration: the members after the change, and what it decided about pages. */
export interface ConfigChange {
  epoch: number;
  /** The next id to give a joiner: ids are never reused, so a removed node cannot come back as itself. */
  nextId: number;
  members: Member[];
  removed: number[];
  /** Pages whose latest version died with the removed members. */
  lost: Uint32Array;
  /** Pages the removed members owned whose latest version a survivor holds: they are its now. */
  moved: Uint32Array;
  movedTo: Uint16Array;
  /** Their versions (a node whose copy says otherwise holds data of a commit a recovery voided). */
  movedVersions: Float64Array;
}

/**
 * PageRequest: u32 request id | u32 page | u16 count (read-ahead) | u16 requester | u64 requester's applied time | u8 hops |
 * u8 flags (1: search, any holder of the version may answer; 2: answer on the requester's data channel).
 */
export interface PageRequest {
  reqId: number;
  page: number;
  count: number;
  requester: number;
  time: number;
  hops: number;
  search: boolean;
  /** Answer on the requester's data channel. */
  viaData?: boolean;
}

/**
 * PageReply (and Handover): u32 request id | u32 first page | u8 status | u32 count, then per
 * page u32 page, u64 version, u16 owner, then the count pages' data back to back (count x
 * page size bytes), so the sender copies them in and the receiver installs them in one call.
 */
export interface PageReply {
  reqId: number;
  page: number;
  status: number;
  pages: Uint32Array;
  versions: Float64Array;
  owners: Uint16Array;
  /** count x page size bytes (empty when count is 0). */
  data: Uint8Array;
}
/** notHere: ask elsewhere; lost: the configuration decided the page lost. */
export const PageStatus = { ok: 0, notHere: 1, lost: 2 } as const;

/** Bytes of a PageReply payload carrying `count` pages. */
export function pageReplySize(count: number, pageSize: number): number {
  return 13 + count * (14 + pageSize);
}

/** LeaseEcho (see Msg.LeaseEcho). */
export interface LeaseEcho {
  sent: number;
  generation: number;
  time: number;
}

/** The latest regeneration of the token a node knows of: its ballot and time (0, 0: none). */
export interface Regeneration {
  generation: number;
  time: number;
}

function members(w: WireWriter, m: Member[]): void {
  w.u32(m.length);
  for (const x of m) w.u16(x.id).str(x.address).u8(x.pageServer ? 1 : 0);
}
function readMembers(r: WireReader): Member[] {
  const n = r.u32();
  if (n > 65535) throw new WireError('too many members');
  const out: Member[] = [];
  for (let i = 0; i < n; i++) {
    const m: Member = { id: r.u16(), address: r.str(300) };
    if (r.u8() & 1) m.pageServer = true;
    out.push(m);
  }
  return out;
}
function seqMap(w: WireWriter, m: Map<number, number>): void {
  w.u32(m.size);
  for (const [k, v] of m) w.u16(k).u32(v);
}
function readSeqMap(r: WireReader): Map<number, number> {
  const n = r.u32();
  if (n > 65535) throw new WireError('too many sequence entries');
  const m = new Map<number, number>();
  for (let i = 0; i < n; i++) m.set(r.u16(), r.u32());
  return m;
}

export const encode = {
  hello: encodeHello,
  joinRefused: encodeJoinRefused,
  joinAccept(j: JoinAccept): Buffer {
    const w = new WireWriter(64 + j.pages.pages.length * 14).u16(j.id).u16(j.admitter).u64(j.time).u32(j.epoch).u16(j.nextId);
    members(w, j.members);
    const { pages, versions, owners } = j.pages;
    w.u32(pages.length);
    for (let i = 0; i < pages.length; i++) w.u32(pages[i]).u64(versions[i]).u16(owners[i]);
    seqMap(w, j.rn);
    w.u32(j.models.length);
    for (const m of j.models) w.u32(m.first).u32(m.count).u8(m.model).u16(m.owner).u64(m.generation);
    w.u32(j.generation).u32(j.known.generation).u64(j.known.time);
    return writeIdentity(w, j.identity).done();
  },
  tokenRequest: (id: number, seq: number) => new WireWriter().u16(id).u32(seq).done(),
  token(t: TokenState): Buffer {
    const w = new WireWriter().u32(t.generation).u32(t.hops).u64(t.time);
    seqMap(w, t.ln);
    w.u32(t.queue.length);
    for (const q of t.queue) w.u16(q);
    members(w, t.members);
    return w.done();
  },
  commit(c: CommitRecord): Buffer {
    const changes = c.changes ?? EMPTY;
    const models = c.models ?? NO_MODELS;
    const w = new WireWriter(28 + c.pages.length * 4 + changes.length + models.length * 4).u64(c.time).u16(c.node).u8(c.backups ?? 0).u32(c.generation ?? 0).u32s(c.pages).bytes(changes).u32s(models);
    const k = c.config;
    if (k) {
      w.u32(k.epoch).u16(k.nextId);
      members(w, k.members);
      w.u32(k.removed.length);
      for (const id of k.removed) w.u16(id);
      w.u32s(k.lost).u32s(k.moved).u32(k.movedTo.length);
      for (const o of k.movedTo) w.u16(o);
      w.u32(k.movedVersions.length);
      for (const v of k.movedVersions) w.u64(v);
    }
    return w.done();
  },
  pageRequest: (p: PageRequest) =>
    new WireWriter().u32(p.reqId).u32(p.page).u16(p.count).u16(p.requester).u64(p.time).u8(p.hops).u8((p.search ? 1 : 0) | (p.viaData ? 2 : 0)).done(),
  /**
   * `fill` writes the pages' data into the view it is given (count x page size bytes);
   * `into`, if given, is the buffer to encode into (the result is a view of it).
   */
  pageReply(p: Omit<PageReply, 'data'>, pageSize: number, fill?: (data: Uint8Array) => void, into?: Buffer): Buffer {
    const n = p.pages.length;
    const w = new WireWriter(into ?? pageReplySize(n, pageSize)).u32(p.reqId).u32(p.page).u8(p.status).u32(n);
    for (let i = 0; i < n; i++) w.u32(p.pages[i]).u64(p.versions[i]).u16(p.owners[i]);
    const data = w.reserve(n * pageSize);
    if (n) fill!(data);
    return w.done();
  },
  resendRequest: (from: number, to: number) => new WireWriter().u64(from).u64(to).done(),
  json: (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8'),
  nodeId: (id: number) => new WireWriter().u16(id).done(),
  recover: encodeRecover,
  recoverState: encodeRecoverState,
  time: (t: number) => new WireWriter().u64(t).done(),
  leaseEcho: (e: LeaseEcho) => new WireWriter().u64(e.sent).u32(e.generation).u64(e.time).done(),
  epoch: (e: number) => new WireWriter().u32(e).done(),
  commitAck(times: number[]): Buffer {
    const w = new WireWriter(4 + times.length * 8).u32(times.length);
    for (const t of times) w.u64(t);
    return w.done();
  },
  backupRequest: (time: number, pages: Uint32Array) => new WireWriter(12 + pages.length * 4).u64(time).u32s(pages).done(),
  barrierArrive: encodeBarrierArrive,
  barrierAnswer: encodeBarrierAnswer,
};

/** Decoders: each reads the whole payload and rejects trailing bytes. */
export const decode = {
  hello: decodeHello,
  joinRefused: decodeJoinRefused,
  joinAccept(b: Buffer): JoinAccept {
    const r = new WireReader(b);
    const id = r.u16();
    const admitter = r.u16();
    const time = r.u64();
    const epoch = r.u32();
    const nextId = r.u16();
    const ms = readMembers(r);
    const n = r.u32();
    if (n > 1 << 26) throw new WireError('page table too large');
    if (n * 14 > r.remaining) throw new WireError('page table longer than its message');
    const pages: PageVersions = { pages: new Uint32Array(n), versions: new Float64Array(n), owners: new Uint16Array(n) };
    for (let i = 0; i < n; i++) {
      pages.pages[i] = r.u32();
      pages.versions[i] = r.u64();
      pages.owners[i] = r.u16();
    }
    const rn = readSeqMap(r);
    const k = r.u32();
    if (k > 1 << 26) throw new WireError('model table too large');
    const models: ModelRun[] = [];
    for (let i = 0; i < k; i++) models.push({ first: r.u32(), count: r.u32(), model: r.u8(), owner: r.u16(), generation: r.u64() });
    const generation = r.u32();
    const known = { generation: r.u32(), time: r.u64() };
    const identity = readIdentity(r);
    r.end();
    return { id, admitter, time, epoch, nextId, members: ms, pages, rn, models, generation, known, identity };
  },
  tokenRequest(b: Buffer): { id: number; seq: number } {
    const r = new WireReader(b);
    const v = { id: r.u16(), seq: r.u32() };
    r.end();
    return v;
  },
  token(b: Buffer): TokenState {
    const r = new WireReader(b);
    const generation = r.u32();
    const hops = r.u32();
    const time = r.u64();
    const ln = readSeqMap(r);
    const qn = r.u32();
    if (qn > 65535) throw new WireError('token queue too long');
    const queue = [];
    for (let i = 0; i < qn; i++) queue.push(r.u16());
    const ms = readMembers(r);
    r.end();
    return { generation, hops, time, ln, queue, members: ms };
  },
  commit(b: Buffer): CommitRecord {
    const r = new WireReader(b);
    const c: CommitRecord = { time: r.u64(), node: r.u16(), pages: new Uint32Array(0) };
    c.backups = r.u8();
    c.generation = r.u32();
    c.pages = r.u32s();
    const changes = r.bytes();
    // Copied: the log keeps records, and a view would keep the whole socket chunk alive.
    if (changes.length) c.changes = new Uint8Array(changes);
    // Checked against the region where it is received (commits.ts onCommit).
    const models = r.u32s();
    if (models.length) c.models = models;
    if (r.remaining > 0) {
      const epoch = r.u32();
      const nextId = r.u16();
      const ms = readMembers(r);
      const rn = r.u32();
      if (rn > 65535) throw new WireError('too many removed members');
      const removed = [];
      for (let i = 0; i < rn; i++) removed.push(r.u16());
      const lost = r.u32s();
      const moved = r.u32s();
      const mn = r.u32();
      if (mn !== moved.length) throw new WireError('moved pages and owners differ in number');
      const movedTo = new Uint16Array(mn);
      for (let i = 0; i < mn; i++) movedTo[i] = r.u16();
      if (r.u32() !== mn) throw new WireError('moved pages and versions differ in number');
      const movedVersions = new Float64Array(mn);
      for (let i = 0; i < mn; i++) movedVersions[i] = r.u64();
      c.config = { epoch, nextId, members: ms, removed, lost, moved, movedTo, movedVersions };
    }
    r.end();
    return c;
  },
  pageRequest(b: Buffer): PageRequest {
    const r = new WireReader(b);
    const p = { reqId: r.u32(), page: r.u32(), count: r.u16(), requester: r.u16(), time: r.u64(), hops: r.u8(), search: false, viaData: false };
    const flags = r.u8();
    p.search = (flags & 1) !== 0;
    p.viaData = (flags & 2) !== 0;
    r.end();
    return p;
  },
  pageReply(b: Buffer, pageSize: number): PageReply {
    const r = new WireReader(b);
    const reqId = r.u32();
    const page = r.u32();
    const status = r.u8();
    const n = r.u32();
    if (n > 4096) throw new WireError('too many pages in one reply');
    const pages = new Uint32Array(n);
    const versions = new Float64Array(n);
    const owners = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      pages[i] = r.u32();
      versions[i] = r.u64();
      owners[i] = r.u16();
    }
    const data = r.raw(n * pageSize);
    r.end();
    return { reqId, page, status, pages, versions, owners, data };
  },
  resendRequest(b: Buffer): { from: number; to: number } {
    const r = new WireReader(b);
    const v = { from: r.u64(), to: r.u64() };
    r.end();
    return v;
  },
  json(b: Buffer): unknown {
    try {
      return JSON.parse(b.toString('utf8'));
    } catch {
      throw new WireError('malformed JSON payload');
    }
  },
  recover: decodeRecover,
  recoverState: decodeRecoverState,
  nodeId(b: Buffer): number {
    const r = new WireReader(b);
    const id = r.u16();
    r.end();
    return id;
  },
  time(b: Buffer): number {
    const r = new WireReader(b);
    const t = r.u64();
    r.end();
    return t;
  },
  leaseEcho(b: Buffer): LeaseEcho {
    const r = new WireReader(b);
    const e = { sent: r.u64(), generation: r.u32(), time: r.u64() };
    r.end();
    return e;
  },
  commitAck(b: Buffer): number[] {
    const r = new WireReader(b);
    const n = r.u32();
    if (n * 8 !== r.remaining) throw new WireError('a commit acknowledgement of the wrong length');
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(r.u64());
    r.end();
    return out;
  },
  backupRequest(b: Buffer): { time: number; pages: Uint32Array } {
    const r = new WireReader(b);
    const out = { time: r.u64(), pages: r.u32s() };
    r.end();
    return out;
  },
  epoch(b: Buffer): number {
    const r = new WireReader(b);
    const e = r.u32();
    r.end();
    return e;
  },
  barrierArrive: decodeBarrierArrive,
  barrierAnswer: decodeBarrierAnswer,
};
