// The tally: from every peer's gossiped view, what each backend's health means for the
// cluster (DESIGN.md "How a decision flows", step 3). Pure. Every peer runs it; only the
// coordinator acts on `declare-down` (it proposes the failover), every peer acts on its own
// `quarantine` / `lift-quarantine` (local routing only, no command runs).
//
// Counting rules, as pgpool's watchdog has them: a view older than `maxViewAgeMs` counts
// as no view (that peer is lost); with `require_consensus` a backend is down when a
// majority of the CONFIGURED peers see it down (a lost peer never counts as a vote), and
// without it one peer's word is enough; with `failover_when_quorum_exists` nothing is
// declared unless a majority of peers have fresh views at all.
import type { ClusterState } from './state.js';
import type { AgedView } from './view.js';

export type TallyAction = 'declare-down' | 'quarantine' | 'lift-quarantine' | 'none';

export interface TallyInput {
  /** This peer's name. */
  self: string;
  /** Configured peer names (this peer included); an empty list means a lone peer. */
  peers: readonly string[];
  /** The latest view of each peer that has sent one (this peer's own with age 0). */
  views: ReadonlyMap<string, AgedView>;
  maxViewAgeMs: number;
  requireConsensus: boolean;
  failoverWhenQuorumExists: boolean;
  /** The replicated state: what is already decided. */
  state: Pick<ClusterState, 'backends'>;
  /** Backends this peer has quarantined locally. */
  quarantined: ReadonlySet<number>;
}

export interface BackendTally {
  id: number;
  action: TallyAction;
  reason: string;
  /** Fresh views that see the backend down / up / cannot tell; peers without a fresh view. */
  down: string[];
  up: number;
  unknown: number;
  lost: number;
  /** Down votes needed to declare it down. */
  needed: number;
}

export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

export function tally(input: TallyInput): BackendTally[] {
  const peers = input.peers.length > 0 ? input.peers : [input.self];
  const fresh = peers.filter((p) => {
    const v = input.views.get(p);
    return v !== undefined && v.ageMs <= input.maxViewAgeMs;
  });
  const needed = input.requireConsensus ? majority(peers.length) : 1;
  const quorum = fresh.length >= majority(peers.length);
  const mine = input.views.get(input.self);

  return input.state.backends.map((b) => {
    const down: string[] = [];
    let up = 0;
    let unknown = 0;
    for (const p of fresh) {
      const h = input.views.get(p)?.view.backends.find((x) => x.id === b.id)?.health ?? 'unknown';
      if (h === 'down') down.push(p);
      else if (h === 'up') up++;
      else unknown++;
    }
    const lost = peers.length - fresh.length;
    const out = (action: TallyAction, reason: string): BackendTally => ({ id: b.id, action, reason, down, up, unknown, lost, needed });
    const votes = `${down.length} of ${peers.length} peers see it down (${down.join(', ') || 'none'}), ${up} up, ${unknown} unknown, ${lost} without a fresh view`;
    const localDown = mine !== undefined && mine.view.backends.find((x) => x.id === b.id)?.health === 'down';
    const localUp = mine !== undefined && mine.view.backends.find((x) => x.id === b.id)?.health === 'up';
    const isQuarantined = input.quarantined.has(b.id);

    if (b.status === 'down' || b.status === 'unused') {
      if (isQuarantined) return out('lift-quarantine', `backend ${b.id} is ${b.status} in the cluster state: the local quarantine is moot`);
      return out('none', `backend ${b.id} is already ${b.status} in the cluster state`);
    }
    if (down.length >= needed && (quorum || !input.failoverWhenQuorumExists)) {
      const rule = input.requireConsensus ? `consensus: ${needed} needed` : 'require_consensus is off: one is enough';
      return out('declare-down', `${votes}; ${rule}`);
    }
    const blocked =
      down.length >= needed ? `no quorum: only ${fresh.length} of ${peers.length} peers have fresh views (${majority(peers.length)} needed), so nothing fails over` : `${needed} needed`;
    if (localDown) {
      if (isQuarantined) return out('none', `still quarantined locally: ${votes}; ${blocked}`);
      return out('quarantine', `only this peer's checks and too few others see it down: ${votes}; ${blocked}; quarantined locally, no command runs`);
    }
    if (isQuarantined) {
      if (localUp) return out('lift-quarantine', `this peer's checks pass again: ${votes}`);
      return out('none', `still quarantined locally: this peer's checks cannot tell yet (${votes})`);
    }
    return out('none', `${votes}; ${blocked}`);
  });
}
