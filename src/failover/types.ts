// The engine's request and result shapes, shared by the queue, the decisions and the
// execution (and shown by the admin API and `failovers`).
import type { BackendRole, BackendStatus } from '../backends/registry.js';
import type { CandidateChoice } from './candidate.js';
import type { FailoverKind } from './decisions.js';
import type { ResumeOf } from './resume.js';

export interface FailoverRequest {
  kind: FailoverKind;
  ids: number[];
  /** promote only: shut the current primary down cleanly first, so no write is lost. */
  switchover?: boolean;
  reason: string;
  /** Raft term of the coordinator deciding this (%T); else the Decisions sink's term(). */
  term?: number;
  /** When the failure was detected (for the timings in the status). */
  detectedAt?: Date;
  /** Who asked: "health", "admin", "watchdog", … (auto_failback respects admin detaches). */
  source?: string;
  /** Set by detection: each backend's decided status and role when it was seen failing. The
   * request is checked again on fresh evidence when it runs (decide.ts staleness). */
  observed?: { id: number; status: BackendStatus; role: BackendRole }[];
  /** node_up only: point the standby at the current primary first (builtin promotion), for a
   * standby that was detached while a new primary was promoted and so missed the follow. */
  follow?: boolean;
  /** Set by a coordinator that takes over a failover record another one left open: the plan
   * comes from the record, and the steps it records done are not run again (resume.ts). */
  resume?: ResumeOf;
}

export interface FailoverStep {
  name: string;
  backend?: number;
  ok: boolean;
  ms: number;
  detail: string;
}

export interface FailoverResult {
  seq: number;
  kind: FailoverKind;
  ids: number[];
  reason: string;
  term: number;
  switchover: boolean;
  ok: boolean;
  summary: string;
  oldPrimary: number | null;
  newPrimary: number | null;
  candidate: CandidateChoice | null;
  steps: FailoverStep[];
  detectedAt: string | null;
  queuedAt: string;
  startedAt: string;
  /** When the registry named the new primary (new sessions route there from this instant). */
  newPrimaryAt: string | null;
  finishedAt: string;
  /** detectedAt (or queuedAt) → newPrimaryAt, when a primary was found or promoted. */
  toNewPrimaryMs: number | null;
  durationMs: number;
}

export interface FailoverStatus {
  active: { seq: number; kind: FailoverKind; ids: number[]; reason: string; startedAt: string } | null;
  queue: { seq: number; kind: FailoverKind; ids: number[]; reason: string; queuedAt: string }[];
  history: FailoverResult[];
  /** The last time a primary failed and no standby qualified: why. */
  noCandidate: { at: string; failed: number[]; summary: string; rejected: CandidateChoice['rejected'] } | null;
  primary: number | null;
  synchronous: { mode: 'auto' | 'off'; savedStandbyNames: string | null; last: string | null };
}
