// The wire layout of the sequential and migratory pages' messages (protocol.ts Msg.SeqRequest,
// SeqReply, SeqInvalidate, SeqInvalidateAck, SeqPush, SeqTakeOver, SeqAdopt, SeqLost; the protocol in sequential.ts) and of a commit's model changes. Their
// numbers are in protocol.ts with every other message's. Decoders check sizes and ranges and
// throw WireError: the sender is logged and its connection dropped, never trusted.
import { WireError } from './wire';

/** Read copies a request may ask for from its page on (read-ahead; 1 for writes). */
export const READ_AHEAD = 4;

/**
 * SeqRequest: u32 page | u16 requester | u8 flags (1: write, 2: search) | u16 hops (forwards
 * so far) | u16 count (pages wanted from `page` on).
 */
export interface SeqRequest {
  page: number;
  requester: number;
  write: boolean;
  hops: number;
  count: number;
  /** Asked of every member at once: only the owner serves it, the others answer notOwner. */
  search?: boolean;
}

export function encodeRequest(r: SeqRequest): Buffer {
  const b = Buffer.allocUnsafe(11);
  b.writeUInt32LE(r.page, 0);
  b.writeUInt16LE(r.requester, 4);
  b.writeUInt8((r.write ? 1 : 0) | (r.search ? 2 : 0), 6);
  b.writeUInt16LE(r.hops, 7);
  b.writeUInt16LE(r.count, 9);
  return b;
}

/** A request from member `from` in a region of `numPages` pages. */
export function decodeRequest(from: number, p: Buffer, numPages: number): SeqRequest {
  if (p.length !== 11) throw new WireError('a sequential page request has the wrong size');
  if (p[6] > 3) throw new WireError('a sequential page request has unknown flags');
  const r: SeqRequest = { page: p.readUInt32LE(0), requester: p.readUInt16LE(4), write: (p[6] & 1) !== 0, search: (p[6] & 2) !== 0, hops: p.readUInt16LE(7), count: p.readUInt16LE(9) };
  if (r.search && (r.hops !== 0 || r.count !== 1)) throw new WireError('a sequential page search must come from its requester for one page');
  if (r.page >= numPages) throw new WireError('a sequential page request names a page outside the region');
  if (r.count < 1 || r.count > READ_AHEAD || (r.write && r.count !== 1)) throw new WireError('a sequential page request asks for a bad number of pages');
  if (r.hops === 0 && r.requester !== from) throw new WireError(`a sequential page request naming node ${r.requester} came from node ${from}`);
  return r;
}

/** SeqReply's status byte. */
export const enum ReplyStatus {
  read = 0,
  owner = 1,
  /** The page is another node's local page: never sent. */
  local = 2,
  /** The node the hints led to was made owner by a recovery but holds no copy: the page's data died with its owner. */
  lost = 3,
  /** Not the owner: the answer to a search, or to a request whose hints led to a node that is gone (search then). */
  notOwner = 4,
  /** Not the owner, but holding a read copy while the owner it knows of is gone: the answer to a search. */
  copy = 5,
}

/**
 * SeqReply: u32 page | u8 status (ReplyStatus) | u64 generation | the pages' contents, if any.
 * The generation is the sender's generation of the page when it answered (the time of the
 * page's latest model declaration it knew of): a reply about an earlier life of the page
 * (its block freed and allocated again since) is void where a later one is known.
 */
export interface SeqReply {
  page: number;
  status: number;
  generation: number;
  data: Buffer;
}

export function encodeReply(page: number, status: number, generation: number, data: Uint8Array | undefined): Buffer {
  const b = Buffer.allocUnsafe(13 + (data ? data.length : 0));
  b.writeUInt32LE(page, 0);
  b[4] = status;
  writeGeneration(b, 5, generation);
  if (data) b.set(data, 13);
  return b;
}

export function decodeReply(p: Buffer, numPages: number): SeqReply {
  if (p.length < 13) throw new WireError('a sequential page reply is too short');
  const page = p.readUInt32LE(0);
  if (page >= numPages) throw new WireError('a sequential page reply names a page outside the region');
  return { page, status: p[4], generation: readGeneration(p, 5, 'a sequential page reply'), data: p.subarray(13) };
}

/** A page's generation (a global time) as u64 LE at `at`: two u32 halves, safe integers only. */
function writeGeneration(b: Buffer, at: number, generation: number): void {
  b.writeUInt32LE(generation % 0x1_0000_0000, at);
  b.writeUInt32LE(Math.floor(generation / 0x1_0000_0000), at + 4);
}

function readGeneration(p: Buffer, at: number, what: string): number {
  const generation = p.readUInt32LE(at) + p.readUInt32LE(at + 4) * 0x1_0000_0000;
  if (!Number.isSafeInteger(generation)) throw new WireError(`${what} carries a generation past 2^53`);
  return generation;
}

/**
 * SeqInvalidate: u32 page | u16 new owner | u32 token (echoed by the acknowledgement) |
 * u16 count (pages from `page` on) | u64 generation (the pages', at the sender: one for the
 * whole run). SeqInvalidateAck: u32 token.
 */
export function encodeInvalidate(page: number, count: number, newOwner: number, token: number, generation: number): Buffer {
  const b = Buffer.allocUnsafe(20);
  b.writeUInt32LE(page, 0);
  b.writeUInt16LE(newOwner, 4);
  b.writeUInt32LE(token, 6);
  b.writeUInt16LE(count, 10);
  writeGeneration(b, 12, generation);
  return b;
}

export function decodeInvalidate(p: Buffer, numPages: number): { page: number; count: number; owner: number; generation: number; ack: Buffer } {
  if (p.length !== 20) throw new WireError('a sequential invalidation has the wrong size');
  const page = p.readUInt32LE(0);
  const count = p.readUInt16LE(10);
  if (count === 0 || page >= numPages || count > numPages - page) throw new WireError('a sequential invalidation names pages outside the region');
  return { page, count, owner: p.readUInt16LE(4), generation: readGeneration(p, 12, 'a sequential invalidation'), ack: p.subarray(6, 10) };
}

export function decodeInvalidateAck(p: Buffer): number {
  if (p.length !== 4) throw new WireError('a sequential invalidation acknowledgement has the wrong size');
  return p.readUInt32LE(0);
}

/**
 * A commit's model changes (protocol.ts CommitRecord.models): (u32 first page, u32 count, u32
 * model) triples the committer allocated, freed or declared again. The commit's time is each
 * page's generation (sequential_loss.ts): a loss announced for an older one is void.
 */
export function checkModelChanges(triples: Uint32Array, numPages: number, maxModel: number): void {
  if (triples.length % 3 !== 0) throw new WireError("a commit's model changes are not whole (first, count, model) triples");
  for (let i = 0; i < triples.length; i += 3) {
    const first = triples[i];
    const count = triples[i + 1];
    if (first >= numPages || count > numPages - first || triples[i + 2] > maxModel) throw new WireError('a model change names pages outside the region or an unknown model');
  }
}

/**
 * SeqPush: u32 first page | u32 barrier generation | u64 the pages' generation (one for the
 * run) | u8 name length | the barrier's name (UTF-8) | the pages' contents (whole pages, at
 * most `maxPages`). The copies are the owner's at its arrival at that round of that barrier.
 */
export interface SeqPush {
  page: number;
  name: string;
  gen: number;
  generation: number;
  data: Buffer;
}

export function encodePush(page: number, name: string, gen: number, generation: number, data: Uint8Array): Buffer {
  const nb = Buffer.from(name, 'utf8');
  const b = Buffer.allocUnsafe(17 + nb.length + data.length);
  b.writeUInt32LE(page, 0);
  b.writeUInt32LE(gen, 4);
  writeGeneration(b, 8, generation);
  b[16] = nb.length;
  nb.copy(b, 17);
  b.set(data, 17 + nb.length);
  return b;
}

export function decodePush(p: Buffer, numPages: number, pageSize: number, maxPages: number): SeqPush {
  if (p.length < 17 || p.length < 17 + p[16]) throw new WireError('a pushed sequential copy is too short');
  const page = p.readUInt32LE(0);
  const gen = p.readUInt32LE(4);
  const generation = readGeneration(p, 8, 'a pushed sequential copy');
  const name = p.toString('utf8', 17, 17 + p[16]);
  const data = p.subarray(17 + p[16]);
  const count = data.length / pageSize;
  if (!Number.isInteger(count) || count < 1 || count > maxPages || page >= numPages || count > numPages - page) {
    throw new WireError('a pushed sequential copy names pages outside the region or has the wrong size');
  }
  return { page, name, gen, generation, data };
}

/** SeqTakeOver: u32 count, then u32 pages (each inside the region, ascending). */
export function encodeTakeOver(pages: Uint32Array): Buffer {
  const b = Buffer.allocUnsafe(4 + pages.length * 4);
  b.writeUInt32LE(pages.length, 0);
  for (let i = 0; i < pages.length; i++) b.writeUInt32LE(pages[i], 4 + i * 4);
  return b;
}

export function decodeTakeOver(p: Buffer, numPages: number): Uint32Array {
  if (p.length < 4 || p.length !== 4 + p.readUInt32LE(0) * 4) throw new WireError('a sequential take-over has the wrong size');
  const pages = new Uint32Array(p.readUInt32LE(0));
  for (let i = 0; i < pages.length; i++) {
    pages[i] = p.readUInt32LE(4 + i * 4);
    if (pages[i] >= numPages || (i > 0 && pages[i] <= pages[i - 1])) throw new WireError('a sequential take-over names pages outside the region or out of order');
  }
  return pages;
}

/** SeqAdopt: u32 page | u16 count | u16 ids of the members holding a read copy, ascending. */
export function encodeAdopt(page: number, holders: number[]): Buffer {
  const b = Buffer.allocUnsafe(6 + holders.length * 2);
  b.writeUInt32LE(page, 0);
  b.writeUInt16LE(holders.length, 4);
  [...holders].sort((x, y) => x - y).forEach((id, i) => b.writeUInt16LE(id, 6 + i * 2));
  return b;
}

export function decodeAdopt(p: Buffer, numPages: number): { page: number; holders: number[] } {
  if (p.length < 8 || p.length !== 6 + p.readUInt16LE(4) * 2) throw new WireError('a sequential adoption has the wrong size');
  const page = p.readUInt32LE(0);
  if (page >= numPages) throw new WireError('a sequential adoption names a page outside the region');
  const holders: number[] = [];
  for (let i = 0; i < p.readUInt16LE(4); i++) {
    holders.push(p.readUInt16LE(6 + i * 2));
    if (i > 0 && holders[i] <= holders[i - 1]) throw new WireError('a sequential adoption names its holders out of order');
  }
  return { page, holders };
}

/**
 * SeqLost: u32 page | u64 generation: the time of the page's latest model declaration the
 * sender knows of (sequential_loss.ts). A receiver that knows a later one (a discard made
 * the page new since) ignores it.
 */
export function encodeLost(page: number, generation: number): Buffer {
  const b = Buffer.allocUnsafe(12);
  b.writeUInt32LE(page, 0);
  writeGeneration(b, 4, generation);
  return b;
}

export function decodeLost(p: Buffer, numPages: number): { page: number; generation: number } {
  if (p.length !== 12) throw new WireError('a sequential page loss has the wrong size');
  const page = p.readUInt32LE(0);
  if (page >= numPages) throw new WireError('a sequential page loss names a page outside the region');
  return { page, generation: readGeneration(p, 4, 'a sequential page loss') };
}
