// The wire layout of the recovery messages (protocol.ts Msg.RecoverQuery, RecoverState,
// Recovered; the protocol in recovery.ts). Their numbers are in protocol.ts with every other
// message's; encode and decode there call these.
import { WireError, WireReader, WireWriter } from './wire';
import type { Regeneration } from './protocol';

/**
 * RecoverQuery / Recovered: u32 generation (the recovery's ballot: proposed; adopted only if
 * regenerated) | u64 time (Recovered: the cluster's time after recovery) | u16 source (a node
 * that applied it) | u8 regenerated (Recovered only: 1 if a new token was made) | u32 count,
 * then u16 suspects (RecoverQuery: the members the coordinator lost) | u32 ballot and u64 time
 * of the latest regeneration the sender knows of (a decided outcome later ballots carry forward).
 */
export interface Recover {
  generation: number;
  time: number;
  source: number;
  regenerated: boolean;
  suspects: number[];
  known: Regeneration;
}
/**
 * RecoverState: u32 generation | u64 applied | u8 has token | u8 waiting for token | u32 rn seq
 * of the sender | u16 the node it last sent the token to (NO_NODE: never) | u32 hops of that send |
 * u32s pages owned by a suspect that the sender holds, then u32 count and u64 their versions |
 * u32 ballot and u64 time of the latest regeneration the sender knows of.
 */
export interface RecoverState {
  generation: number;
  applied: number;
  hasToken: boolean;
  waiting: boolean;
  seq: number;
  sentTo: number;
  sentHops: number;
  heldPages: Uint32Array;
  heldVersions: Float64Array;
  known: Regeneration;
}

export function encodeRecover(r: Recover): Buffer {
  const w = new WireWriter().u32(r.generation).u64(r.time).u16(r.source).u8(r.regenerated ? 1 : 0).u32(r.suspects.length);
  for (const id of r.suspects) w.u16(id);
  return w.u32(r.known.generation).u64(r.known.time).done();
}

export function encodeRecoverState(s: RecoverState): Buffer {
  const w = new WireWriter(64 + s.heldPages.length * 12)
    .u32(s.generation)
    .u64(s.applied)
    .u8(s.hasToken ? 1 : 0)
    .u8(s.waiting ? 1 : 0)
    .u32(s.seq)
    .u16(s.sentTo)
    .u32(s.sentHops)
    .u32s(s.heldPages)
    .u32(s.heldVersions.length);
  for (const v of s.heldVersions) w.u64(v);
  return w.u32(s.known.generation).u64(s.known.time).done();
}

export function decodeRecover(b: Buffer): Recover {
  const r = new WireReader(b);
  const v: Recover = { generation: r.u32(), time: r.u64(), source: r.u16(), regenerated: r.u8() !== 0, suspects: [], known: { generation: 0, time: 0 } };
  const n = r.u32();
  if (n > 65535) throw new WireError('too many suspects');
  for (let i = 0; i < n; i++) v.suspects.push(r.u16());
  v.known = { generation: r.u32(), time: r.u64() };
  r.end();
  return v;
}

export function decodeRecoverState(b: Buffer): RecoverState {
  const r = new WireReader(b);
  const v = {
    generation: r.u32(),
    applied: r.u64(),
    hasToken: r.u8() !== 0,
    waiting: r.u8() !== 0,
    seq: r.u32(),
    sentTo: r.u16(),
    sentHops: r.u32(),
    heldPages: r.u32s(),
    heldVersions: new Float64Array(0),
  };
  const n = r.u32();
  if (n !== v.heldPages.length) throw new WireError('held pages and versions differ in number');
  v.heldVersions = new Float64Array(n);
  for (let i = 0; i < n; i++) v.heldVersions[i] = r.u64();
  const known = { generation: r.u32(), time: r.u64() };
  r.end();
  return { ...v, known };
}
