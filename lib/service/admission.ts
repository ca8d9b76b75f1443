// Admission: who gets in. Every authenticated connection says Hello first and is routed by
// it (a member, a joiner, a member's data channel, a stats client); joiners are admitted
// under the token, so a join is ordered with commits; a new node joins through any member.
import { decode, encode, type Hello, type JoinAccept, type JoinRefusal, LOST_OWNER, type Member, Msg, NO_NODE, type PageVersions, type RegionGeometry } from './protocol';
import { type Connection, dialable, splitAddress, unspecifiedHost } from './transport';
import { ANSWER_MS, type Answer, askCluster, CONNECT_MS } from './cluster_query';
import { InvalidOptionError } from '../errors';
import { StoreError } from '../pageserver/errors';
import { AuthFailedError, ProtocolVersionError } from './transport_errors';
import type { NativeAddon } from '../native';

/**
 * Failures that neither another peer nor waiting can mend: the join stops at once. A page
 * server's store that the cluster reached cannot take (lib/pageserver/live_cluster.ts
 * refuseCluster) means peers that name the wrong cluster.
 */
const hopeless = (e: unknown): boolean => e instanceof AuthFailedError || e instanceof ProtocolVersionError || e instanceof InvalidOptionError || e instanceof StoreError;
import type { Cluster } from './cluster';

export class Admission {
  constructor(private readonly n: Cluster) {}

  /** A new authenticated connection: it must say Hello first. */
  adopt(c: Connection): void {
    const n = this.n;
    const onFirst = (type: number, payload: Buffer) => {
      c.off('message', onFirst);
      if (type !== Msg.Hello) {
        n.ev.log('warn', `a peer at ${c.remoteAddress} spoke before saying hello (type ${type}); closing`);
        c.close('protocol');
        return;
      }
      let h: Hello;
      try {
        h = decode.hello(payload);
      } catch (e) {
        n.ev.log('warn', `bad hello from ${c.remoteAddress}: ${(e as Error).message}`);
        c.close('protocol');
        return;
      }
      if (h.client) n.serveClient(c);
      else if (h.data) n.data.accept(c, h.id);
      else if (h.joining) void this.admit(c, h);
      else n.membership.hello(c, h.id, h.address, h.to);
    };
    c.on('message', onFirst);
  }

  /** Joins the cluster through the first of `peers` that admits us. */
  async join(peers: string[]): Promise<void> {
    const n = this.n;
    if (peers.length > 0 && peers.every((p) => p === n.address)) {
      throw new InvalidOptionError(`the peers list only this node's own address (${n.address}); leave peers out to found a cluster, or name a member of one`);
    }
    const deadline = Date.now() + n.config.joinTimeoutMs;
    let lastError: unknown;
    let toldCutOff = false;
    for (let attempt = 0; Date.now() < deadline && !n.closing; attempt++) {
      for (const peer of peers) {
        // The same peer list is often given to every node: this node's own entry is not a way in.
        if (peer === n.address) continue;
        // A page server's store joins only a cluster that holds what it holds: asked first, so
        // a refusal (StoreError, final) changes nothing in the store nor in that cluster.
        // Which cluster `peer` is a member of, and its members (a process that never answers
        // must not hold the join past its time-out).
        const asked = await askCluster(n.transport, peer, Math.max(0, Math.min(ANSWER_MS, deadline - Date.now() - CONNECT_MS)));
        if (n.store) n.store.checkPeer(peer, asked);
        const cutOff = await this.unreachedMembers(peer, asked);
        if (cutOff !== undefined) {
          lastError = new Error(cutOff);
          if (!toldCutOff) n.ev.log('warn', `${cutOff}; trying again for up to ${Math.round(n.config.joinTimeoutMs / 1000)} s (joinTimeoutMs)`);
          toldCutOff = true;
          continue;
        }
        let c: Connection;
        try {
          c = await n.transport.connect(peer, CONNECT_MS);
        } catch (e) {
          lastError = e;
          // Neither a wrong secret nor another node-dsm version mends itself by waiting.
          if (hopeless(e)) throw e;
          // Peers may still be starting: say so once, with how long this node keeps trying.
          if (attempt === 0) n.ev.log('warn', `${(e as Error).message}; trying again for up to ${Math.round(n.config.joinTimeoutMs / 1000)} s (joinTimeoutMs)`);
          continue;
        }
        const accepted = new Promise<void>((resolve, reject) => {
          const onMsg = (type: number, payload: Buffer) => {
            if (type === Msg.JoinRefused) {
              c.off('message', onMsg);
              c.off('close', onClose);
              let r: JoinRefusal = { final: false, why: 'no reason given' };
              try {
                r = decode.joinRefused(payload);
              } catch {
                // A malformed refusal is still a refusal (of this peer only).
              }
              const why = `${peer} refused this node: ${r.why}`;
              reject(r.final ? new InvalidOptionError(why) : new Error(why));
              return;
            }
            if (type !== Msg.JoinAccept) return;
            c.off('message', onMsg);
            c.off('close', onClose);
            // Admitted at once, in this callback: frames that follow JoinAccept in the same
            // read (a commit, the token) must find the connection bound to the admitter.
            try {
              this.admitted(decode.joinAccept(payload), c, peer);
              resolve();
            } catch (e) {
              reject(e);
            }
          };
          const onClose = (reason: string) => reject(new Error(`the peer closed the connection while admitting us (${reason})`));
          c.on('message', onMsg);
          c.on('close', onClose);
        });
        c.send(Msg.Hello, encode.hello({ id: NO_NODE, address: n.address, joining: true, client: false, pageServer: n.config.pageServer !== undefined, region: this.region }));
        // A peer that took the connection and never answers (stopped, say) must not hold
        // the join past its time-out.
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${peer} did not admit this node within ${n.config.joinTimeoutMs} ms (joinTimeoutMs)`)), Math.max(0, deadline - Date.now()));
        });
        try {
          await Promise.race([accepted, late]);
          return;
        } catch (e) {
          lastError = e;
          c.close('join failed');
          // Every member maps the same region: asking another one, or again, cannot help.
          if (hopeless(e)) throw e;
        } finally {
          clearTimeout(timer);
        }
      }
      await new Promise((r) => setTimeout(r, Math.min(1000, 100 * 2 ** attempt)));
    }
    throw Object.assign(new Error(`could not join the cluster through ${peers.join(', ')}: ${(lastError as Error)?.message ?? 'no answer'}`), {
      code: 'ERR_DSM_JOIN_FAILED',
    });
  }

  /**
   * The members of `peer`'s cluster (as it answered, `asked`) this node cannot reach, said
   * as a reason not to join yet; undefined when it reaches them all, or `peer` is no member
   * (the join then says what is wrong). Every member must reach every other: commits are
   * broadcast, the token and pages move directly. A node that reached its peer but not some
   * other member was admitted, removed by that member's recovery, and joined again at once
   * through the same peer, over and over, each round costing the cluster a recovery
   * (unreached.ts; three nodes, two of them cut apart, network namespaces). A member
   * recorded under the unspecified host (it joined over loopback) is not tried: the
   * admission gives its address as this node can dial it (dialable).
   */
  private async unreachedMembers(peer: string, asked: Answer): Promise<string | undefined> {
    const n = this.n;
    if (!('reply' in asked) || !asked.reply.member) return undefined;
    const others = asked.reply.members.filter((m) => m !== peer && m !== n.address && !unspecifiedHost(splitAddress(m).host));
    const failed = await Promise.all(
      others.map(async (address) => {
        try {
          const c = await n.transport.connect(address, CONNECT_MS);
          // Said as a client: a member takes it for a stats connection, and it closes.
          c.send(Msg.Hello, encode.hello({ id: NO_NODE, address: '', joining: false, client: true }));
          c.close('reached');
          return undefined;
        } catch (e) {
          return `${address} (${(e as Error).message})`;
        }
      }),
    );
    const cut = failed.filter((f) => f !== undefined);
    if (cut.length === 0) return undefined;
    return `this node reaches ${peer} but not every member of its cluster: not ${cut.join(', ')}; every member must reach every other, so it joins once it does`;
  }

  /** This node's region, as a joining Hello carries it. */
  private get region(): RegionGeometry {
    const { base, numPages, pageSize } = this.n.config;
    return { base, size: numPages * pageSize, pageSize };
  }

  /** Why a joiner whose region is `r` cannot be a member (undefined: it can). */
  private mismatch(r: RegionGeometry | undefined): string | undefined {
    const mine = this.region;
    if (!r) return 'its Hello carried no region';
    if (r.base === mine.base && r.size === mine.size && r.pageSize === mine.pageSize) return undefined;
    const show = (g: RegionGeometry) => `${g.size} bytes (${size(g.size).join(' ')}iB) at 0x${g.base.toString(16)} in pages of ${g.pageSize} bytes`;
    return (
      `this cluster's region is ${show(mine)}; the joiner's is ${show(r)}. Every node maps the same region: ` +
      `start it with regionSize ${mine.size}${mine.pageSize !== r.pageSize ? `, pageSize ${mine.pageSize}` : ''}${mine.base !== r.base ? `, base 0x${mine.base.toString(16)}` : ''} ` +
      `(dsm node --region-size ${size(mine.size).join('')})`
    );
  }

  private admitted(ja: JoinAccept, via: Connection, peer: string): void {
    const n = this.n;
    // Checked again on what admitted it, before anything here changes (checkPeer asked before the join).
    n.store?.checkAdmission(ja.identity, ja.time, peer);
    n.id = ja.id;
    n.identity = ja.identity;
    // The address the admitter recorded for us (dialable from the others; see admit).
    n.address = ja.members.find((m) => m.id === ja.id)?.address ?? n.address;
    n.membership.adopt(ja.epoch, ja.nextId, ja.members);
    for (const [k, v] of ja.rn) n.token.rn.set(k, v);
    // The cluster's token generation and its latest regeneration: joining again after the
    // others replaced the token this node once held, it learns of that here, and a late
    // word of the same regeneration must not void what it does as the new member (recovery.ts
    // lateRegeneration takes a node with an older generation that applied past the
    // regenerated time for the old holder, and rolled it back to that time).
    n.token.generation = Math.max(n.token.generation, ja.generation);
    n.recovery.learnAtJoin(ja.known);
    // Every page written before we joined is elsewhere; never-written pages stay valid zeros.
    // Joining again, anything this node committed that the cluster never applied is void:
    // the cluster's table is the truth. Such a copy can carry a version as new as the
    // cluster's or newer (a cut-off holder commits on with its lent token until its lease
    // runs out, at times the majority then uses for other commits), and invalidate() keeps a
    // copy at least as new as the version it is given; so every copy goes first (version 0
    // always invalidates), and the cluster's versions are set after.
    n.sequential.modelTable.forgetModels();
    invalidateWritten(n.native, n.table.versions, ja.admitter);
    const { pages, owners } = ja.pages;
    n.membership.lostPages.clear();
    for (let i = 0; i < pages.length; i++) if (owners[i] === LOST_OWNER) n.membership.lostPages.add(pages[i]);
    n.native.invalidatePages(pages, ja.pages.versions, owners);
    // Pages outside transactional consistency carry no version to tell they were written:
    // without their models a joiner would read them as zero pages of its own.
    n.sequential.modelTable.adopt(ja.models);
    n.log.restart(ja.time);
    n.store?.joined(ja.time, ja.pages);
    n.links.bind(ja.admitter, via);
    n.publishStatus();
    // Higher ids connect to lower ones: we are the highest, so we connect to everyone.
    // (Test hook: a joiner that dies before it reaches the others, held so.)
    if (process.env.DSM_TEST_JOINER_STAYS_UNCONNECTED === '1') return;
    for (const m of ja.members) {
      if (m.id !== n.id && !n.links.has(m.id)) void this.connectTo(m);
    }
  }

  private async connectTo(m: Member): Promise<void> {
    const n = this.n;
    for (let attempt = 0; attempt < 20 && !n.closing && n.members.has(m.id) && !n.links.has(m.id); attempt++) {
      try {
        const c = await n.transport.connect(m.address);
        c.send(Msg.Hello, encode.hello({ id: n.id, address: n.address, joining: false, client: false, to: m.id }));
        n.links.bind(m.id, c);
        return;
      } catch (e) {
        n.ev.log('warn', `connecting to node ${m.id} at ${m.address} failed: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
      }
    }
  }

  /**
   * Admits a joining node: a new configuration with it, made under the token (so a join is
   * ordered with commits), and the state at that configuration's time handed to it.
   */
  private async admit(c: Connection, h: Hello): Promise<void> {
    const n = this.n;
    if (!n.members.has(n.id)) {
      // Joining (or joining again) itself: only a member can admit, under the token. Without
      // this, a node given its own address among its peers asked itself and waited for ever.
      const self = h.address === n.address ? ' (it is the joiner itself: leave its own address out of its peers)' : '';
      c.send(Msg.JoinRefused, encode.joinRefused({ final: false, why: `${n.address} is not a member of a cluster yet${self}; one node must be started without peers to found the cluster` }));
      c.close('refused');
      return;
    }
    const why = this.mismatch(h.region);
    if (why) {
      // Refused before it takes an id: a joiner that fails after admission costs the
      // cluster a recovery, and it would try again and again.
      n.ev.log('warn', `refused a node from ${c.remoteAddress} (${h.address}): ${why}`);
      c.send(Msg.JoinRefused, encode.joinRefused({ final: true, why }));
      c.close('refused');
      return;
    }
    let closed = false;
    c.once('close', () => (closed = true));
    // Nodes listening on every interface are recorded under an address the others can dial:
    // the joiner's IP as it reached us, and ours as it dialed us (a founder learns it from
    // its first joiner from another machine; the configuration carries it to everyone).
    // Before, the members' records said 0.0.0.0, and on other machines every connection to
    // them went to the dialer itself.
    const self = n.members.get(n.id);
    const mine = self && dialable(self.address, c.localIp);
    if (self && mine !== undefined && mine !== self.address) {
      // A member still recorded under an unspecified host joined over loopback from an
      // admitter recorded so too, and so on back to the founder: all of them run on the
      // founder's machine, and ours is that machine whenever our record was unspecified.
      for (const m of n.members.values()) if (m !== self) m.address = dialable(m.address, splitAddress(mine).host);
      self.address = n.address = mine;
    }
    // A joiner that came over loopback runs on our machine: it is dialable where we are.
    const joinerAddress = dialable(dialable(h.address, c.remoteIp), self && splitAddress(self.address).host);
    let id = NO_NODE;
    let exhausted = false;
    try {
      const change = await n.commits.commitConfig((epoch, nextId) => {
        if (closed) return undefined;
        // Ids are 16 bits and never given twice; the two highest mean "lost" and "nobody"
        // in the page table, and a node given one would make its pages read as lost.
        if (nextId >= LOST_OWNER) {
          exhausted = true;
          return undefined;
        }
        id = nextId;
        const m: Member = h.pageServer ? { id, address: joinerAddress, pageServer: true } : { id, address: joinerAddress };
        return { epoch, nextId: nextId + 1, members: [...n.members.values(), m], removed: [], lost: new Uint32Array(0), moved: new Uint32Array(0), movedTo: new Uint16Array(0), movedVersions: new Float64Array(0) };
      }, (t) => {
        // Still under the token, at the configuration's time: the joiner's starting state.
        const pages = writtenPages(n.table);
        c.send(Msg.JoinAccept, encode.joinAccept({ id, admitter: n.id, time: t.time, epoch: n.membership.epoch, nextId: n.membership.nextId, members: t.members, pages, rn: n.token.rn, models: n.sequential.modelTable.runs(), generation: t.generation, known: n.recovery.regenerated, identity: n.identity }));
        n.links.bind(id, c);
      });
      if (exhausted) {
        const why = `this cluster has given out all ${LOST_OWNER} node ids over its life (ids are never reused): restart it from its page server, where ids start over, or start a new cluster`;
        n.ev.log('warn', `refused a node from ${c.remoteAddress}: ${why}`);
        c.send(Msg.JoinRefused, encode.joinRefused({ final: true, why }));
      }
      if (!change) c.close('not admitted');
    } catch (e) {
      n.ev.log('warn', `could not admit a node from ${c.remoteAddress}: ${(e as Error).message}`);
      c.close('not admitted');
    }
  }
}

/** `bytes` as a count and the largest unit that divides it: [512, 'M'], [1, 'G'], [4, 'K'] (the CLI's --region-size units). */
function size(bytes: number): [number, string] {
  for (const [unit, b] of [['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) if (bytes % b === 0) return [bytes / b, unit];
  return [bytes, ''];
}

/** The pages of `table` ever written (version not 0), with their versions and owners: a joiner's starting state. */
function writtenPages(table: { versions: BigUint64Array; owners: Uint16Array }): PageVersions {
  const { versions, owners } = table;
  let count = 0;
  for (let p = 0; p < versions.length; p++) if (versions[p] !== 0n) count++;
  const out: PageVersions = { pages: new Uint32Array(count), versions: new Float64Array(count), owners: new Uint16Array(count) };
  for (let p = 0, i = 0; p < versions.length; p++) {
    if (versions[p] === 0n) continue;
    out.pages[i] = p;
    out.versions[i] = Number(versions[p]);
    out.owners[i++] = owners[p];
  }
  return out;
}

/** Invalidates every page `versions` says was written to version 0, in one native call. */
function invalidateWritten(native: NativeAddon, versions: BigUint64Array, owner: number): void {
  const pages: number[] = [];
  for (let p = 0; p < versions.length; p++) if (versions[p] !== 0n) pages.push(p);
  if (pages.length > 0) native.invalidatePages(Uint32Array.from(pages), new Float64Array(pages.length), new Uint16Array(pages.length).fill(owner));
}
