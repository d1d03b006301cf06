// The interlock (DESIGN.md "How a decision flows", step 5). Pure. While a failover record
// is open (FailoverStarted committed, FailoverFinished not yet), EVERY peer, its runner
// included, holds statements bound for the backends it touches (the registry's routing
// gate `held`: a statement outside a transaction waits instead of failing), so no peer
// routes to a server that is being promoted, demoted or re-pointed, and sessions can be
// moved to the new primary once it is routable. The hold ends when FailoverFinished
// commits or `interlock_timeout_ms` after the record started (or was last resumed),
// whichever is first: a cluster that lost its coordinator mid-failover must not hold
// clients forever.
// A new coordinator resumes the oldest open record that is not already its own.
import type { ClusterState, FailoverRecord } from './state.js';

export interface Hold {
  seq: number;
  ids: number[];
  /** Wall-clock ms at which the hold lapses even without FailoverFinished. */
  until: number;
  reason: string;
}

export interface InterlockVerdict {
  holds: Hold[];
  /** Backend ids held now (union of `holds`). */
  held: number[];
  reason: string;
}

/**
 * Which backends every peer must hold statements for at `now` (ms). `startedAt` of a
 * record is the proposer's clock; peers' clocks are assumed within a small fraction of
 * `timeoutMs` of each other (NTP), which bounds only how long a hold lasts, not safety.
 */
export function interlock(state: Pick<ClusterState, 'failovers'>, now: number, timeoutMs: number): InterlockVerdict {
  const holds: Hold[] = [];
  const skipped: string[] = [];
  for (const f of state.failovers) {
    if (f.finished !== null) continue;
    const from = f.resumed?.at ?? f.started.at;
    const until = from + timeoutMs;
    if (now >= until) {
      skipped.push(`${f.seq} open for ${now - from} ms, past interlock_timeout_ms ${timeoutMs}`);
      continue;
    }
    holds.push({ seq: f.seq, ids: [...f.ids], until, reason: `failover ${f.seq} (${f.kind} of ${f.ids.join(',')}) run by ${f.runner} in term ${f.term} is open` });
  }
  const held = [...new Set(holds.flatMap((h) => h.ids))].sort((a, b) => a - b);
  const reason = holds.length
    ? `holding new sessions to backends ${held.join(',')}: ${holds.map((h) => h.reason).join('; ')}`
    : skipped.length
      ? `nothing held: ${skipped.join('; ')}`
      : 'nothing held: no failover open';
  return { holds, held, reason };
}

export interface ResumeVerdict {
  record: FailoverRecord | null;
  reason: string;
}

/** For the coordinator of `term`: the open record it must take over, oldest first. */
export function toResume(state: Pick<ClusterState, 'failovers'>, self: string, term: number): ResumeVerdict {
  const open = state.failovers.filter((f) => f.finished === null);
  if (open.length === 0) return { record: null, reason: 'no failover record is open' };
  const mine = open.filter((f) => f.runner === self && f.term === term);
  const other = open.find((f) => !(f.runner === self && f.term === term));
  if (!other) return { record: null, reason: `open failover ${mine.map((f) => f.seq).join(',')} already runs here in term ${term}` };
  return {
    record: other,
    reason: `failover ${other.seq} (${other.kind} of ${other.ids.join(',')}) was left open by ${other.runner} in term ${other.term}: resume it in term ${term}`,
  };
}
