// When may this peer hold the virtual IP, and when must an isolated peer stop routing
// writes (DESIGN.md "How a decision flows", steps 6 and 7). Pure functions of the Raft
// status, the views and a few local facts; the runner (vip-runner.ts) runs the commands.
//
// Why the lease is the whole safety argument for the VIP: a leader holds its lease only
// once an entry of its term has committed and while a majority acknowledged a heartbeat
// within the lease; a rival can only be elected by a majority that has not heard from it
// for a full election timeout, which is longer than the lease, and a leader elected by a
// transfer takes no lease until the old one's has run out (src/raft/core/raft.ts
// leaseValidUntilTick). So "holds the lease" is true of at most one peer at any instant,
// and a peer may hold the VIP only while it is. Losing the lease (check-quorum, a
// partition, a transfer) de-escalates at once.
//
// The holder is also on record in the replicated state: a leader first commits its
// claim (a `vip` entry of its term, proposed as soon as it leads, so it commits in the same
// round as the term's first entry) and escalates only once that claim has been applied
// here, so the state names the holder before the address moves, and the claim of a later
// term replaces an earlier one (the earlier holder's lease, and so its eligibility, has
// ended by then). A peer that stops cleanly records the release; otherwise the record keeps
// naming the last claimant until the next claim (it says who may hold the VIP, and a holder
// is always the one named).
import type { RaftObservation } from './raft-status.js';
import { majority } from './tally.js';
import type { AgedView } from './view.js';

export type VipAction = 'claim' | 'escalate' | 'de-escalate' | 'hold' | 'nothing';

/** The VIP holder on record in the applied cluster state (state.ts `vipHolder`). */
export interface VipClaim {
  peer: string;
  term: number;
}

export interface VipInput {
  /** This peer's name. */
  self: string;
  /** The holder on record in the state this peer has applied. */
  claim: VipClaim | null;
  raft: Pick<RaftObservation, 'role' | 'term' | 'leader' | 'termCommitted' | 'hasLease' | 'leaseUntilTick' | 'tick' | 'transferee'>;
  /** This peer holds the VIP now (escalated and not de-escalated since). */
  holding: boolean;
  /** `watchdog.trusted_servers`: how many are configured and how many answered the last probe. */
  trusted: { configured: number; answering: number };
  shuttingDown: boolean;
}

export interface Eligibility {
  eligible: boolean;
  reason: string;
}

/**
 * May a peer that just became leader put its claim in its term's first entry? Then the claim
 * commits in the election's first round, instead of one round after the no-op (the leader's
 * followers are probed with that first entry before anything else is sent to them). The same
 * conditions as the early claim of vipDecision, taken at the instant of the election.
 */
export function claimAtTermStart(i: { trusted: VipInput['trusted']; shuttingDown: boolean }): Eligibility {
  if (i.shuttingDown) return { eligible: false, reason: 'shutting down' };
  if (i.trusted.configured > 0 && i.trusted.answering === 0) return { eligible: false, reason: `none of the ${i.trusted.configured} trusted servers answers` };
  return { eligible: true, reason: "claim the VIP in the term's first entry" };
}

/** May this peer hold the VIP right now? The first failing condition is the reason. */
export function vipEligibility(i: Omit<VipInput, 'holding' | 'self' | 'claim'>): Eligibility {
  const r = i.raft;
  if (i.shuttingDown) return { eligible: false, reason: 'shutting down' };
  if (r.role !== 'leader') return { eligible: false, reason: `not the leader (${r.role} in term ${r.term}, leader ${r.leader ?? 'unknown'})` };
  if (r.transferee !== null) return { eligible: false, reason: `handing leadership to ${r.transferee}` };
  if (!r.termCommitted) return { eligible: false, reason: `leader of term ${r.term}, but no entry of the term has committed yet` };
  if (!r.hasLease) return { eligible: false, reason: `leader of term ${r.term} without a lease: the previous leader's may not have expired, or a majority stopped answering` };
  if (i.trusted.configured > 0 && i.trusted.answering === 0) return { eligible: false, reason: `none of the ${i.trusted.configured} trusted servers answers` };
  return { eligible: true, reason: `leader of term ${r.term} with a lease until tick ${r.leaseUntilTick}` };
}

export function vipDecision(i: VipInput): { action: VipAction; reason: string } {
  const e = vipEligibility(i);
  const claimed = i.claim?.peer === i.self && i.claim.term === i.raft.term;
  const named = i.claim ? `${i.claim.peer} (term ${i.claim.term})` : 'nobody';
  if (e.eligible) {
    if (i.holding) return { action: 'hold', reason: `keep the VIP: ${e.reason}` };
    if (claimed) return { action: 'escalate', reason: `take the VIP: ${e.reason}; its claim of term ${i.raft.term} has committed` };
    return { action: 'claim', reason: `record the claim before taking the VIP: ${e.reason}; the state names ${named}` };
  }
  if (i.holding) return { action: 'de-escalate', reason: `drop the VIP: ${e.reason}` };
  // A new leader records its claim before its term's first entry has committed or its lease
  // has begun: the claim then commits in the same round as that first entry, instead of one
  // round after it. It only says who may hold the VIP; escalation still waits for eligibility.
  if (!claimed && vipEligibility({ ...i, raft: { ...i.raft, termCommitted: true, hasLease: true } }).eligible) {
    return { action: 'claim', reason: `record the claim now, so it commits with the term's first entries (escalation waits: ${e.reason}); the state names ${named}` };
  }
  return { action: 'nothing', reason: `not holding the VIP: ${e.reason}` };
}

export interface IsolationInput {
  self: string;
  /** Configured peer names; fewer than two means a lone peer, never isolated. */
  peers: readonly string[];
  views: ReadonlyMap<string, AgedView>;
  maxViewAgeMs: number;
  raft: Pick<RaftObservation, 'role' | 'leader' | 'commit' | 'applied'>;
  /**
   * Ms since this peer last knew itself joined to a majority: a follower, since it last
   * heard from the leader; a leader, since its lease was last valid. null: not since start.
   */
  sinceContactMs: number | null;
  /**
   * Online restart: ms since the process this one took over from last knew itself joined (it
   * handed its watchdog over cleanly just before); null or absent: not taken over. Counts only
   * until this process has had contact of its own.
   */
  inheritedContactMs?: number | null;
  /** How long cut off before writes stop: the lease, which the majority needs at least to fail over. */
  isolateAfterMs: number;
  /** This peer refuses writes now. */
  refusing: boolean;
  /** `watchdog.isolated_writes`. */
  mode: 'refuse' | 'allow';
  /** Epoch ms (for holdWritesUntil). */
  now: number;
}

export interface IsolationVerdict {
  isolated: boolean;
  refuseWrites: boolean;
  /** Set while a successor process joins after the previous one's lease ran out: writes wait (a held primary) rather than fail. */
  holdWritesUntil?: number;
  reason: string;
}

/** How long a successor process may hold writes while it joins, after the previous process's lease ran out. */
export const JOIN_HOLD_MS = 10_000;

/**
 * Isolation: cut off from the majority (no leader contact, or too few fresh views) for
 * longer than the lease. An isolated peer promotes nothing (it is not the coordinator)
 * and, with `refuse`, stops routing writes; it routes them again once it has rejoined and
 * applied the log up to the leader's commit, so it routes by the majority's current state.
 */
export function isolation(i: IsolationInput): IsolationVerdict {
  if (i.peers.length < 2) return { isolated: false, refuseWrites: false, reason: 'a lone peer cannot be isolated' };
  // A successor joining in the predecessor's place is as much in touch as the predecessor was
  // a moment ago: within the lease of that contact, the majority cannot have failed anything
  // over without it, so its writes go on (no views or leader of its own yet, by design).
  const inherited = i.inheritedContactMs;
  if (i.sinceContactMs === null && inherited != null && !i.refusing) {
    if (inherited <= i.isolateAfterMs) return { isolated: false, refuseWrites: false, reason: `joining after an online restart: the previous process was joined to a majority ${inherited} ms ago (≤ ${i.isolateAfterMs} ms)` };
    // Past that lease the majority may have decided without it: writes wait for this process
    // to join (and learn what was decided), for a while, rather than fail.
    const left = i.isolateAfterMs + JOIN_HOLD_MS - inherited;
    if (left > 0) return { isolated: false, refuseWrites: false, holdWritesUntil: i.now + left, reason: `joining after an online restart: the previous process's lease ran out ${inherited - i.isolateAfterMs} ms ago; writes wait until this one has joined (at most ${left} ms more)` };
  }
  const fresh = i.peers.filter((p) => {
    const v = i.views.get(p);
    return p === i.self || (v !== undefined && v.ageMs <= i.maxViewAgeMs);
  });
  const need = majority(i.peers.length);
  let cut: string | null = null;
  if (i.sinceContactMs === null) cut = 'not joined to a majority since start';
  else if (i.sinceContactMs > i.isolateAfterMs) cut = `no ${i.raft.role === 'leader' ? 'lease' : 'word from a leader'} for ${i.sinceContactMs} ms (> ${i.isolateAfterMs} ms)`;
  else if (fresh.length < need) cut = `fresh views from only ${fresh.length} of ${i.peers.length} peers (${fresh.join(', ')}), ${need} needed`;

  if (cut !== null) {
    if (i.mode === 'allow') return { isolated: true, refuseWrites: false, reason: `NETWORK ISOLATION: ${cut}; isolated_writes is allow, so writes still go to the primary` };
    return { isolated: true, refuseWrites: true, reason: `NETWORK ISOLATION: ${cut}; writes refused, connect through the VIP` };
  }
  if (i.refusing && i.raft.leader === null) return { isolated: false, refuseWrites: true, reason: 'rejoined, but no leader known yet: still refusing writes' };
  if (i.refusing && i.raft.applied < i.raft.commit) {
    return { isolated: false, refuseWrites: true, reason: `rejoined; applying the log (${i.raft.applied} of ${i.raft.commit}) before routing writes again` };
  }
  return { isolated: false, refuseWrites: false, reason: i.refusing ? `rejoined and applied the log to ${i.raft.applied}: writes routed again` : 'joined to a majority' };
}
