// The coordinator's decision, one step of its loop (coordinator.ts runs it; this is the
// pure heart, like Patroni's HA cycle): observe the Raft status, the replicated state and
// the tally of the views, and return ONE thing to do, with its reason on every branch.
//
// Order of precedence, and why:
//   1. only a leader holding its lease coordinates (no rival can exist meanwhile); a
//      leader whose transfer failed has no lease for the rest of its term, so it hands
//      over again to end the term;
//   2. claim coordination for the term first, so every peer's state says who runs things;
//   3. resume a failover a previous coordinator left open, before anything new
//      (its interlock is holding clients on the other peers);
//   4. fail over what a majority of views see down; a primary only once every peer that
//      went silent has been silent long enough to have stopped routing writes itself
//      (vip.ts isolation), so no peer writes to the deposed primary;
//   5. hand leadership to a higher-priority peer that is healthy and up to date, only
//      when no failover is open or running (a transfer mid-failover would force a resume);
//   6. nothing.
import { toResume } from './interlock.js';
import type { RaftObservation } from './raft-status.js';
import type { ClusterState, FailoverRecord } from './state.js';
import type { BackendTally } from './tally.js';
import type { AgedView } from './view.js';

export type CoordinatorAction =
  | { kind: 'nothing'; reason: string }
  | { kind: 'claim'; reason: string }
  | { kind: 'resume'; record: FailoverRecord; reason: string }
  | { kind: 'request-down'; ids: number[]; reason: string }
  | { kind: 'transfer'; to: string; reason: string };

export interface DecideInput {
  self: string;
  selfPriority: number;
  /** Configured peer names (this peer included). */
  peers: readonly string[];
  raft: Pick<RaftObservation, 'role' | 'term' | 'leader' | 'hasLease' | 'leaseForfeited' | 'lastIndex' | 'progress' | 'transferee'>;
  state: ClusterState;
  tally: readonly BackendTally[];
  views: ReadonlyMap<string, AgedView>;
  maxViewAgeMs: number;
  /** A silent peer has stopped routing writes once silent this long (vip.ts isolation, plus a gossip interval of margin). */
  silentPeerSafeAfterMs: number;
  /** The failover engine is running or has queued a request. */
  engineBusy: boolean;
  /** Backends the engine was asked to fail over and whose decision has not reached the state yet. */
  pending: ReadonlySet<number>;
  /** Per backend: `failover: allow` in the config. */
  failoverAllowed: readonly boolean[];
}

const UNFIT_STATES = new Set(['LOST', 'SHUTDOWN', 'NETWORK ISOLATION', 'JOINING']);

export function decide(i: DecideInput): CoordinatorAction {
  const r = i.raft;
  if (r.role !== 'leader') return { kind: 'nothing', reason: `not the leader (${r.role} in term ${r.term}, leader ${r.leader ?? 'unknown'})` };
  if (r.transferee !== null) return { kind: 'nothing', reason: `handing leadership to ${r.transferee}` };
  if (r.leaseForfeited) {
    const to = successor(i, -Infinity);
    if (to) return { kind: 'transfer', to: to.name, reason: `a transfer this term failed and gave the lease up for the term: handing over again to ${to.name} (priority ${to.priority}, up to date)` };
    return { kind: 'nothing', reason: `a transfer this term failed and gave the lease up for the term; no healthy up-to-date peer to hand over to yet` };
  }
  if (!r.hasLease) return { kind: 'nothing', reason: `leader of term ${r.term} without a lease: not coordinating until a majority confirms it` };
  const c = i.state.coordinator;
  if (!c || c.peer !== i.self || c.term !== r.term) {
    return { kind: 'claim', reason: `leader of term ${r.term} with a lease; the state names ${c ? `${c.peer} (term ${c.term})` : 'no coordinator'}` };
  }

  const open = i.state.failovers.filter((f) => f.finished === null);
  if (!i.engineBusy) {
    const res = toResume(i.state, i.self, r.term);
    if (res.record) return { kind: 'resume', record: res.record, reason: res.reason };
  }

  const covered = new Set(open.flatMap((f) => f.ids));
  const down = i.tally.filter((t) => t.action === 'declare-down');
  const skipped: string[] = [];
  const ids: number[] = [];
  for (const t of down) {
    if (i.pending.has(t.id)) skipped.push(`${t.id} already requested`);
    else if (covered.has(t.id)) skipped.push(`${t.id} in an open failover`);
    else if (i.failoverAllowed[t.id] === false) skipped.push(`${t.id} has failover: disallow`);
    else ids.push(t.id);
  }
  if (ids.length) {
    const primary = i.state.primary;
    if (primary !== null && ids.includes(primary)) {
      const unsure = i.peers.filter((p) => {
        if (p === i.self) return false;
        const age = i.views.get(p)?.ageMs ?? Infinity;
        return age > i.maxViewAgeMs && age <= i.silentPeerSafeAfterMs;
      });
      if (unsure.length) {
        return {
          kind: 'nothing',
          reason: `primary ${primary} is down by consensus, but ${unsure.join(', ')} went silent less than ${i.silentPeerSafeAfterMs} ms ago and may still route writes to it: waiting`,
        };
      }
    }
    const why = down.filter((t) => ids.includes(t.id)).map((t) => `backend ${t.id}: ${t.reason}`);
    return { kind: 'request-down', ids, reason: why.join('; ') };
  }

  const busy = open.length > 0 || i.engineBusy;
  const better = busy ? undefined : successor(i, i.selfPriority);
  if (better) return { kind: 'transfer', to: better.name, reason: `${better.name} has priority ${better.priority} > ${i.selfPriority}, is healthy and up to date` };

  const what = skipped.length ? `consensus-down backends not requested again (${skipped.join('; ')})` : 'no backend is down by consensus';
  const failovers = open.length ? `failover ${open.map((f) => f.seq).join(',')} running here` : i.engineBusy ? 'the failover engine is busy' : 'no failover open';
  return { kind: 'nothing', reason: `coordinator of term ${r.term}: ${what}; ${failovers}` };
}

/** The highest-priority peer above `above` that is healthy (fresh view, proxy up, fit state) and has the whole log. */
function successor(i: DecideInput, above: number): { name: string; priority: number } | undefined {
  let best: { name: string; priority: number } | undefined;
  for (const p of i.peers) {
    if (p === i.self) continue;
    const v = i.views.get(p);
    if (!v || v.ageMs > i.maxViewAgeMs) continue;
    const st = v.view.status;
    if (st.priority <= above || !st.proxyUp || UNFIT_STATES.has(st.state)) continue;
    if (i.raft.progress?.[p]?.match !== i.raft.lastIndex) continue;
    if (!best || st.priority > best.priority || (st.priority === best.priority && p < best.name)) best = { name: p, priority: st.priority };
  }
  return best;
}

/**
 * May the coordinator start an execution step expected to last `stepTicks`? Only while its
 * lease covers the whole step: no other peer can hold a lease (so resume the same record)
 * before the step ends. Commands of unbounded length cannot be covered; for those the
 * term (%T) is the fencing token.
 */
export function leaseCovers(raft: Pick<RaftObservation, 'role' | 'hasLease' | 'leaseUntilTick' | 'tick'>, stepTicks: number): { ok: boolean; reason: string } {
  if (raft.role !== 'leader' || !raft.hasLease || raft.leaseUntilTick === null) return { ok: false, reason: 'no lease: not running failover steps' };
  const left = raft.leaseUntilTick - raft.tick;
  if (left < stepTicks) return { ok: false, reason: `lease has ${left} ticks left, the step needs ${stepTicks}: waiting for the next heartbeat round` };
  return { ok: true, reason: `lease covers ${left} ticks >= ${stepTicks}` };
}
