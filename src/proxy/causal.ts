// Causal reads: after a session's write commits, its reads go to its standby only once that
// standby has replayed past the commit; until then they go to the primary. Pure: the session
// keeps a CausalNeed, tells it what happened (writeSent, committed, readAfterLsn) and asks
// decideRead where the next read goes, with the registry's WAL samples; nothing here does I/O.
//
// What "past the commit" is bounded by. The proxy never asks the primary for a commit's LSN
// (that would be a round trip per write). It uses the replication monitor's samples instead:
// each records the primary's WAL *insert* position and the instant its query was sent
// (`sampledAt`, on the system-wide monotonic clock, mono-clock.ts). A commit whose
// ReadyForQuery the session processed at time t is complete on the server before any query
// sent after t runs, so the first primary sample with sampledAt > t has insertLsn at or past
// the end of its commit record. The insert position, not pg_current_wal_lsn (the write
// position), because a commit with synchronous_commit off returns before its record is
// written out. A standby's sample of pg_last_wal_replay_lsn() at or past that LSN means the
// commit record is replayed (visible to new snapshots there), and stays so: replay only moves
// forward while the server runs, and the session's standby leg is one server for its life.
//
// So after a commit the session reads from the primary until (1) a primary sample sent after
// the commit has arrived, and (2) a sample of its standby shows replay at or past that sample's
// insert position. The bound is conservative (the insert position may be ahead of the commit
// by other sessions' WAL) and never unsafe. The wait is what sampling costs: the session asks
// the monitor to sample sooner (proxy.causal_sample_ms) for as long as it waits.
//
// A client may also name an LSN its reads must see (`SET pgwatchdog.read_after_lsn = 'X/Y'`,
// e.g. a value another connection read with `SELECT pg_current_wal_insert_lsn()` after its
// commit): the same rule, with that LSN instead of a sampled one.
import { formatLsn, parseLsn } from '../backends/lsn.js';

export interface CausalNeed {
  /** The WAL position the session's own committed writes need (0n: none). */
  readonly own: bigint;
  /** The position the client asked for with pgwatchdog.read_after_lsn (0n: none). */
  readonly given: bigint;
  /**
   * A write whose commit position is not known yet: Infinity while it may still be running
   * (sent, not yet answered by an idle ReadyForQuery), then the monotonic ms at which the
   * session saw it complete, until a primary sample sent later covers it; null when none.
   */
  readonly pendingSince: number | null;
}

/** Nothing to wait for: the session's reads may use its standby. */
export const NO_NEED: CausalNeed = Object.freeze({ own: 0n, given: 0n, pendingSince: null });

/** What decideRead needs of a backend: the registry's last WAL sample of it. */
export interface WalSample {
  /** Primary: write position; standby: replay position. */
  readonly lsn: bigint | null;
  /** Primary: insert position. */
  readonly insertLsn: bigint | null;
  /** When the sample's query was sent (mono-clock.ts), null without a sample. */
  readonly sampledAt: number | null;
}

export type CausalReason =
  | 'no write to wait for'
  | 'standby replayed past the commit'
  | 'write not committed yet'
  | 'no primary WAL sample since the commit'
  | 'standby replay position unknown'
  | 'standby behind the commit';

export interface CausalDecision {
  target: 'standby' | 'primary';
  reason: CausalReason;
  /** The session's need after this decision (cleared once its standby is past it). */
  need: CausalNeed;
}

const NOTHING: CausalDecision = Object.freeze({ target: 'standby', reason: 'no write to wait for', need: NO_NEED });

/** A write went to the primary: until it completes, reads wait for it. */
export function writeSent(n: CausalNeed): CausalNeed {
  return n.pendingSince === Infinity ? n : { own: n.own, given: n.given, pendingSince: Infinity };
}

/**
 * The primary answered the session's last outstanding request with an idle ReadyForQuery at
 * `now`: whatever it wrote is committed (or rolled back, which costs only a wait).
 */
export function committed(n: CausalNeed, now: number): CausalNeed {
  return n.pendingSince === Infinity ? { own: n.own, given: n.given, pendingSince: now } : n;
}

/** `SET pgwatchdog.read_after_lsn`: replaces the client's LSN ('0/0' clears it). */
export function readAfterLsn(n: CausalNeed, lsn: bigint): CausalNeed {
  const next = { own: n.own, given: lsn, pendingSince: n.pendingSince };
  return next.own === 0n && next.given === 0n && next.pendingSince === null ? NO_NEED : next;
}

/** Parses a value of pgwatchdog.read_after_lsn; a clear error names the setting. */
export function parseReadAfterLsn(value: string): bigint {
  try {
    const lsn = parseLsn(value.trim());
    if (lsn !== null) return lsn;
  } catch {
    // the message below says what is expected
  }
  throw new Error(`invalid value for parameter "pgwatchdog.read_after_lsn": "${value}" (expected an LSN such as '0/16B3748', as pg_current_wal_insert_lsn() returns)`);
}

/**
 * Where the session's next read goes: its standby when nothing is pending or the standby's
 * replay sample is past what the session needs, else the primary. `primary` is the routable
 * primary's sample (undefined when none is known), `standby` the session's standby's.
 */
export function decideRead(n: CausalNeed, primary: WalSample | undefined, standby: WalSample): CausalDecision {
  if (n === NO_NEED) return NOTHING;
  let own = n.own;
  let pendingSince = n.pendingSince;
  if (pendingSince !== null) {
    if (pendingSince === Infinity) return { target: 'primary', reason: 'write not committed yet', need: n };
    const covered = primary !== undefined && primary.sampledAt !== null && primary.insertLsn !== null && primary.sampledAt > pendingSince;
    if (!covered) return { target: 'primary', reason: 'no primary WAL sample since the commit', need: n };
    if (primary.insertLsn! > own) own = primary.insertLsn!;
    pendingSince = null;
  }
  const need: CausalNeed = { own, given: n.given, pendingSince };
  const want = own > n.given ? own : n.given;
  if (want === 0n) return { target: 'standby', reason: 'no write to wait for', need: NO_NEED };
  if (standby.lsn === null) return { target: 'primary', reason: 'standby replay position unknown', need };
  if (standby.lsn < want) return { target: 'primary', reason: 'standby behind the commit', need };
  return { target: 'standby', reason: 'standby replayed past the commit', need: NO_NEED };
}

/** For logs: the LSN the session waits for, or what it waits on. */
export function describeNeed(n: CausalNeed): string {
  if (n.pendingSince === Infinity) return 'a write in progress';
  const want = n.own > n.given ? n.own : n.given;
  const lsn = want === 0n ? '' : formatLsn(want);
  if (n.pendingSince !== null) return lsn ? `${lsn} and a primary sample after the last commit` : 'a primary sample after the last commit';
  return lsn || 'nothing';
}
