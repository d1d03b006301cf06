// Promotion candidate choice: pure, so the coordinator's decision can be unit-tested and
// replayed. The candidate is what %m/%H/%r/%R name and what the builtin promotion promotes.
//
// Rule: among standbys that are attached (status up), answered the health check, are
// allowed to fail over and lag at most maxLagBytes behind the most advanced WAL position
// known, take the one with the most WAL; ties go to the higher `priority` (as Patroni's
// failover_priority: bigger wins), then to the lowest id. Taking the most advanced standby
// (rather than pgpool's "lowest live id") loses the least committed data, and the other
// standbys can then follow it without a rewind.
import { formatLsn } from '../backends/lsn.js';

export interface CandidateInput {
  id: number;
  status: 'up' | 'down' | 'quarantine' | 'waiting' | 'unused';
  role: 'primary' | 'standby' | 'unknown';
  /** Health check view: 'down' or 'unknown' standbys cannot be promoted. */
  pgStatus: 'up' | 'down' | 'unknown';
  failoverAllowed: boolean;
  priority: number;
  /** How much WAL the standby holds: its receive LSN (what it will replay once promoted),
   * else its replay LSN; null when it could not be read. */
  lsn: bigint | null;
}

export interface Rejection {
  id: number;
  reason: string;
}

export interface CandidateChoice {
  /** The chosen standby, or null when none qualifies. */
  id: number | null;
  /** Why each other backend was not chosen (all of them when id is null). */
  rejected: Rejection[];
  /** The WAL position lag is measured from. */
  referenceLsn: bigint | null;
  /** One line for the log and the status: what was chosen and why, or why nothing was. */
  summary: string;
}

export interface CandidateOptions {
  /** Backends being failed: never candidates (the failed primary among them). */
  exclude: readonly number[];
  maxLagBytes: number;
  /** The last WAL position known for the failed primary, if any: lag is measured from the
   * larger of it and the most advanced standby. */
  lastPrimaryLsn?: bigint | null;
}

export function chooseCandidate(backends: readonly CandidateInput[], opts: CandidateOptions): CandidateChoice {
  const rejected: Rejection[] = [];
  const eligible: CandidateInput[] = [];
  for (const b of backends) {
    if (opts.exclude.includes(b.id)) rejected.push({ id: b.id, reason: 'is the failed node' });
    else if (b.role !== 'standby') rejected.push({ id: b.id, reason: `role is ${b.role}, not standby` });
    else if (b.status !== 'up') rejected.push({ id: b.id, reason: `status is ${b.status}` });
    else if (b.pgStatus !== 'up') rejected.push({ id: b.id, reason: `health check is ${b.pgStatus}` });
    else if (!b.failoverAllowed) rejected.push({ id: b.id, reason: 'failover: disallow' });
    else if (b.lsn === null) rejected.push({ id: b.id, reason: 'WAL position unknown' });
    else eligible.push(b);
  }

  // Lag is measured from everything known to exist, including WAL on standbys that may not
  // be promoted (a disallowed standby ahead of the others still shows what would be lost).
  let reference: bigint | null = opts.lastPrimaryLsn ?? null;
  for (const b of backends) {
    if (b.role === 'standby' && b.lsn !== null && !opts.exclude.includes(b.id) && (reference === null || b.lsn > reference)) reference = b.lsn;
  }

  const within: CandidateInput[] = [];
  for (const b of eligible) {
    const lag = reference === null ? 0n : reference - b.lsn!;
    if (lag > BigInt(opts.maxLagBytes)) rejected.push({ id: b.id, reason: `lags ${lag} bytes behind ${formatLsn(reference!)} (max_lag_bytes ${opts.maxLagBytes})` });
    else within.push(b);
  }

  within.sort((a, b) => (a.lsn! !== b.lsn! ? (a.lsn! > b.lsn! ? -1 : 1) : b.priority !== a.priority ? b.priority - a.priority : a.id - b.id));
  const best = within[0];
  for (const b of within.slice(1)) {
    const why = b.lsn! < best!.lsn! ? `less WAL (${formatLsn(b.lsn!)} < ${formatLsn(best!.lsn!)})` : b.priority < best!.priority ? `same WAL, lower priority (${b.priority} < ${best!.priority})` : `same WAL and priority, higher id`;
    rejected.push({ id: b.id, reason: why });
  }
  rejected.sort((a, b) => a.id - b.id);

  if (!best) {
    const detail = rejected.filter((r) => !opts.exclude.includes(r.id)).map((r) => `node ${r.id} ${r.reason}`).join('; ');
    return { id: null, rejected, referenceLsn: reference, summary: `no standby qualifies for promotion${detail ? `: ${detail}` : ': there is no other backend'}` };
  }
  return {
    id: best.id,
    rejected,
    referenceLsn: reference,
    summary: `node ${best.id} has the most advanced WAL (${formatLsn(best.lsn!)}) of ${within.length} eligible standby(s)${within.length > 1 && within[1]!.lsn === best.lsn ? ` (tie broken by priority ${best.priority}, then id)` : ''}`,
  };
}

