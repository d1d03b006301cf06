// The failover engine's one way out: every state change it decides is a Decision, recorded
// through a Decisions sink. With one peer the sink writes the registry at once
// (RegistryDecisions); under the watchdog it proposes the Decision to the Raft log and resolves
// once the entry has committed and been applied here, so every peer's routing follows the same
// history. That is why a Decision is plain JSON data (it travels in log entries) and why
// `record` is asynchronous and may reject (a coordinator that lost its leadership can record
// nothing; the engine then abandons the request, says why and runs no further command).
//
// Observations (health checks, replication sampling) are not decisions: they stay local to
// each peer and never pass through here.
import type { BackendRole, BackendStatus } from '../backends/registry.js';

/** The request kinds the engine runs, as recorded in failover records. */
export type FailoverKind = 'node_down' | 'node_up' | 'promote' | 'close_idle';

/**
 * The steps of a failover event whose repetition matters, each for one backend: `promote`
 * (builtin pg_promote of the candidate) and `follow` (builtin repointing of a standby) are
 * safe to repeat; the operator's commands (`failover_command` for a failed node,
 * `follow_primary_command` per standby, `failback_command` for an attached node) are not.
 */
export type FailoverStepName = 'promote' | 'follow' | 'failover_command' | 'follow_primary_command' | 'failback_command';

/** A step as the failover record keeps it (what a resuming coordinator reads). */
export interface FailoverStepRecord {
  step: FailoverStepName;
  backend: number;
  /** `begun`: recorded before it ran, no end recorded (it may or may not have finished). */
  phase: 'begun' | 'done';
  /** done only: its outcome, and what it printed or why it was treated as done. */
  ok: boolean | null;
  result: string;
  /** The peer that recorded its last phase, and under which term. */
  peer: string;
  term: number;
  /** How many runs began it (more than one: a later coordinator ran it again). */
  runs: number;
}

export type Decision =
  /** A backend's decided status and/or role changes (detach, attach, new primary, false
   * primary). `detachedBy: 'admin'` marks an operator's detach, which auto re-attachment
   * respects. */
  | { type: 'backend'; id: number; status?: BackendStatus; role?: BackendRole; detachedBy?: 'admin' | 'failover'; reason: string }
  /** A failover event begins; recorded before any command or promotion runs (the interlock).
   * `replaces`: the primary it replaces (node_down of the primary, promote), so a coordinator
   * that resumes it knows the plan even once the failed nodes are recorded down. */
  | { type: 'failoverStarted'; seq: number; kind: FailoverKind; ids: number[]; term: number; reason: string; replaces?: number | null }
  /** One step of the event, recorded `begun` before it runs and `done` (with its outcome)
   * after, so a resuming coordinator skips what is done and decides what was cut off. */
  | { type: 'failoverStep'; seq: number; step: FailoverStepName; backend: number; phase: 'begun' | 'done'; ok?: boolean; result?: string }
  /** The event ended; recorded once, after its last step. */
  | { type: 'failoverFinished'; seq: number; ok: boolean; summary: string; newPrimary: number | null };

export interface Decisions {
  /** Resolves once the decision is in force on this peer; rejects (with why) if it cannot be recorded. */
  record(decision: Decision): Promise<void>;
  /** The sequence number of the next failover request, unique across the cluster (under the
   * watchdog: one more than the last one in the replicated state). */
  nextSeq(): number;
  /** The term decisions are recorded under now, passed to commands as %T: the coordinator's
   * Raft term under the watchdog, 0 with one peer. */
  term(): number;
}
