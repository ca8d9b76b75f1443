// The wire layout of the barrier messages (protocol.ts Msg.BarrierArrive, Msg.BarrierAnswer;
// the protocol in barriers.ts). Their numbers are in protocol.ts with every other message's;
// encode and decode there call these.
import { WireError, WireReader, WireWriter } from './wire';

/** The longest barrier name in UTF-8 bytes (as the lock names of lib/sync/directory.ts). */
export const BARRIER_NAME_MAX = 54;
/** Parties of a barrier and ids in one of its rounds: at most this many (alloc/layout.ts MAX_NODES). */
const BARRIER_IDS_MAX = 256;

/**
 * How one round (generation) of a barrier ended, as its coordinator decided it:
 * u32 generation | u8 broken | u64 time (the highest global time the parties arrived with) |
 * u16 reporter (the party that arrived with it) | u16 decider (the coordinator) |
 * u16 count, then u16 ids (the parties released; broken: those known to have arrived) | str why (broken only; else empty).
 */
export interface BarrierRound {
  gen: number;
  broken: boolean;
  time: number;
  reporter: number;
  decider: number;
  ids: number[];
  why: string;
}

/**
 * BarrierArrive: str name | u32 generation (the sender's next round of that barrier) | u16 parties |
 * u64 time (the global time the sender has applied or committed) | u8 flags (1: waiting, an
 * arrival; 0: only what it knows of the last round) | u8 has round | the last round the sender
 * knows of (BarrierRound), if any.
 */
export interface BarrierArrival {
  name: string;
  gen: number;
  parties: number;
  time: number;
  waiting: boolean;
  last?: BarrierRound;
}

/** What a coordinator answers a party (BarrierAnswer's kind). */
export const BarrierKind = { released: 0, broken: 1, advance: 2, mismatch: 3, arrived: 4 } as const;

/**
 * BarrierAnswer: str name | u32 generation (the party's, as it arrived) | u8 kind, then
 * released / broken / advance (the party is not in a round that ended: it goes on to the
 * next): the round (BarrierRound) | mismatch: u16 the parties the round's first arrival passed |
 * arrived (so far, the round still open): u16 count, then u16 ids.
 */
export type BarrierAnswer =
  | { name: string; gen: number; kind: 0 | 1 | 2; round: BarrierRound }
  | { name: string; gen: number; kind: 3; parties: number }
  | { name: string; gen: number; kind: 4; ids: number[] };

function barrierRound(w: WireWriter, r: BarrierRound): void {
  w.u32(r.gen).u8(r.broken ? 1 : 0).u64(r.time).u16(r.reporter).u16(r.decider);
  barrierIds(w, r.ids);
  w.str(r.why);
}
function barrierIds(w: WireWriter, ids: number[]): void {
  w.u16(ids.length);
  for (const id of ids) w.u16(id);
}
function readBarrierIds(r: WireReader): number[] {
  const n = r.u16();
  if (n > BARRIER_IDS_MAX) throw new WireError('too many ids in a barrier round');
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push(r.u16());
  return ids;
}
function readBarrierRound(r: WireReader): BarrierRound {
  const gen = r.u32();
  const broken = r.u8();
  if (broken > 1) throw new WireError('a barrier round with a bad broken flag');
  return { gen, broken: broken === 1, time: r.u64(), reporter: r.u16(), decider: r.u16(), ids: readBarrierIds(r), why: r.str(1024) };
}
function readBarrierName(r: WireReader): string {
  const name = r.str(BARRIER_NAME_MAX);
  if (name.length === 0) throw new WireError('an empty barrier name');
  return name;
}

export function encodeBarrierArrive(a: BarrierArrival): Buffer {
  const w = new WireWriter().str(a.name).u32(a.gen).u16(a.parties).u64(a.time).u8(a.waiting ? 1 : 0).u8(a.last ? 1 : 0);
  if (a.last) barrierRound(w, a.last);
  return w.done();
}

export function encodeBarrierAnswer(a: BarrierAnswer): Buffer {
  const w = new WireWriter().str(a.name).u32(a.gen).u8(a.kind);
  if (a.kind === BarrierKind.mismatch) w.u16(a.parties);
  else if (a.kind === BarrierKind.arrived) barrierIds(w, a.ids);
  else barrierRound(w, a.round);
  return w.done();
}

export function decodeBarrierArrive(b: Buffer): BarrierArrival {
  const r = new WireReader(b);
  const a: BarrierArrival = { name: readBarrierName(r), gen: r.u32(), parties: r.u16(), time: r.u64(), waiting: false };
  const flags = r.u8();
  if (flags > 1) throw new WireError('a barrier arrival with unknown flags');
  a.waiting = flags === 1;
  if (a.waiting && (a.parties < 1 || a.parties > BARRIER_IDS_MAX)) throw new WireError(`a barrier arrival with ${a.parties} parties`);
  const has = r.u8();
  if (has > 1) throw new WireError('a barrier arrival with a bad round flag');
  if (has) a.last = readBarrierRound(r);
  r.end();
  return a;
}

export function decodeBarrierAnswer(b: Buffer): BarrierAnswer {
  const r = new WireReader(b);
  const name = readBarrierName(r);
  const gen = r.u32();
  const kind = r.u8();
  let a: BarrierAnswer;
  if (kind === BarrierKind.mismatch) a = { name, gen, kind, parties: r.u16() };
  else if (kind === BarrierKind.arrived) a = { name, gen, kind, ids: readBarrierIds(r) };
  else if (kind === BarrierKind.released || kind === BarrierKind.broken || kind === BarrierKind.advance) a = { name, gen, kind, round: readBarrierRound(r) };
  else throw new WireError(`a barrier answer of unknown kind ${kind}`);
  r.end();
  return a;
}
