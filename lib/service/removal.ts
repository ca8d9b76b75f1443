// Removing members a recovery decided lost (recovery.ts): the configuration without them,
// committed under the token with the recovery's authority. Each page a removed member owned
// moves to a survivor that reported holding its latest version, or is decided lost, once,
// for every node (membership.ts applies the change).
import type { ConfigChange } from './protocol';
import { NO_NODE } from './protocol';
import type { Cluster } from './cluster';

/** What a member reported holding of the suspects' pages (recovery.ts Report). */
export interface HeldReport {
  heldPages: Uint32Array;
  heldVersions: Float64Array;
}

/**
 * Commits the configuration without `removed`, deciding where their pages went, from what
 * the recovery's quorum reported holding (`states`); `retry` runs the recovery again if the
 * commit fails.
 */
export async function removeMembers(n: Cluster, removed: number[], states: Map<number, HeldReport>, retry: () => void): Promise<void> {
  // Who holds which version of the removed members' pages (as reported; this node's own copies are read at decision time).
  const holders = new Map<number, Array<[number, number]>>();
  for (const [id, s] of states) {
    if (id === n.id) continue;
    for (let i = 0; i < s.heldPages.length; i++) {
      let h = holders.get(s.heldPages[i]);
      if (!h) holders.set(s.heldPages[i], (h = []));
      h.push([id, s.heldVersions[i]]);
    }
  }
  try {
    // The recovery's quorum is its authority: it must not wait for a lease it stopped.
    await n.commits.commitConfig((epoch, nextId) => configWithout(n, removed, holders, epoch, nextId), undefined, { recovery: true });
  } catch (e) {
    n.ev.log('warn', `removing node(s) ${removed.join(', ')} failed (${(e as Error).message}); trying again`);
    retry();
  }
}

/** The configuration without `removed`, at the token's time: each of their pages moves to a holder of its latest version, or is lost. */
function configWithout(n: Cluster, removed: number[], holders: Map<number, Array<[number, number]>>, epoch: number, nextId: number): ConfigChange | undefined {
  const gone = new Set(removed);
  const stillThere = removed.filter((id) => n.members.has(id));
  if (stillThere.length === 0) return undefined;
  const { states: st, owners, versions } = n.table;
  const lost: number[] = [];
  const moved: number[] = [];
  const movedTo: number[] = [];
  for (let p = 0; p < owners.length; p++) {
    if (!gone.has(owners[p]) || versions[p] === 0n) continue;
    const v = Number(versions[p]);
    let to = st[p] !== 0 ? n.id : NO_NODE;
    if (to === NO_NODE) for (const [id, hv] of holders.get(p) ?? []) if (hv === v && n.members.has(id) && !gone.has(id)) to = id;
    if (to === NO_NODE) lost.push(p);
    else {
      moved.push(p);
      movedTo.push(to);
    }
  }
  if (lost.length) {
    // What the decision rested on, for the first few: the version this coordinator knows
    // of, and the versions the survivors reported holding.
    const why = lost
      .slice(0, 4)
      .map((p) => `page ${p} at ${versions[p]} (held: ${(holders.get(p) ?? []).map(([id, hv]) => `node ${id} at ${hv}`).join(', ') || 'nowhere'})`)
      .join('; ');
    n.ev.log('error', `${lost.length} page(s) lost with node(s) ${stillThere.join(', ')}: no survivor holds their latest version; ${why}`);
  }
  return {
    epoch,
    nextId,
    members: [...n.members.values()].filter((m) => !gone.has(m.id)),
    removed: stillThere,
    lost: Uint32Array.from(lost),
    moved: Uint32Array.from(moved),
    movedTo: Uint16Array.from(movedTo),
    movedVersions: Float64Array.from(moved, (p) => Number(versions[p])),
  };
}
