// The wire layout of the first message on every connection (protocol.ts Msg.Hello) and of a
// joiner's refusal (Msg.JoinRefused; admission.ts decides). Their numbers are in protocol.ts
// with every other message's; encode and decode there call these.
import { WireReader, WireWriter } from './wire';

/**
 * Hello: u16 id (NO_NODE when joining) | str listen address | u8 flags (1: joining, 2: client
 * only, 4: a data channel: a member's second connection, on which it only receives page
 * replies, read natively; 8: a page server joining; 16: the member dialled is named), then,
 * when joining, the joiner's region: u64 base address | u64 size in bytes | u32 page size;
 * then, with flag 16, u16 the id of the member the sender means to reach.
 */
export interface Hello {
  id: number;
  address: string;
  joining: boolean;
  client: boolean;
  data?: boolean;
  pageServer?: boolean;
  /** The joiner's region (joining only): every member maps the same one. */
  region?: RegionGeometry;
  /**
   * The member the sender means to reach. A node that joined again under a new id still
   * listens where it did: a member that dials its old id reaches it, and must not be taken
   * for one that speaks to its new id (the frames it sends belong to the old one's session).
   */
  to?: number;
}

/** Where a node maps the shared region, how large it is, and its page size. */
export interface RegionGeometry {
  base: number;
  size: number;
  pageSize: number;
}

export function encodeHello(h: Hello): Buffer {
  const w = new WireWriter().u16(h.id).str(h.address).u8((h.joining ? 1 : 0) | (h.client ? 2 : 0) | (h.data ? 4 : 0) | (h.pageServer ? 8 : 0) | (h.to !== undefined ? 16 : 0));
  if (h.joining) {
    if (!h.region) throw new Error("a joining Hello carries the joiner's region");
    w.u64(h.region.base).u64(h.region.size).u32(h.region.pageSize);
  }
  if (h.to !== undefined) w.u16(h.to);
  return w.done();
}

export function decodeHello(b: Buffer): Hello {
  const r = new WireReader(b);
  const id = r.u16();
  const address = r.str(300);
  const flags = r.u8();
  const joining = (flags & 1) !== 0;
  const region = joining ? { base: r.u64(), size: r.u64(), pageSize: r.u32() } : undefined;
  const to = (flags & 16) !== 0 ? r.u16() : undefined;
  r.end();
  return { id, address, joining, client: (flags & 2) !== 0, data: (flags & 4) !== 0, pageServer: (flags & 8) !== 0, region, to };
}

/**
 * JoinRefused: u8 final (1: no member can admit this joiner, e.g. its region differs; 0: this
 * peer cannot, e.g. it is not a member yet: ask another) | str why.
 */
export interface JoinRefusal {
  final: boolean;
  why: string;
}

export const encodeJoinRefused = (r: JoinRefusal): Buffer => new WireWriter().u8(r.final ? 1 : 0).str(r.why).done();

export function decodeJoinRefused(b: Buffer): JoinRefusal {
  const r = new WireReader(b);
  const final = r.u8() !== 0;
  const why = r.str(2000);
  r.end();
  return { final, why };
}
