// Resuming a failover event that a previous coordinator left open (DESIGN.md "How a decision
// flows", step 5), as pure rules. The record carries the event's steps, each recorded
// `begun` before it ran and `done` after; a resuming coordinator
//   - takes the plan from the record (planResume): the failed nodes may already be recorded
//     down, where a fresh decision (decide.ts decideRequest) would find nothing to do;
//   - per step (decideStep): skips what is recorded done; re-runs what is safe to repeat
//     (promoting a server already promoted, repointing a standby that already follows: both
//     no-ops); and for an operator's command that began but has no recorded end (it may have
//     finished, or died with its peer) asks the servers whether its effect is there: if so
//     it is treated as done, else it runs again with %T = the new term, the fencing token the
//     command can check against the run that was cut off.
// Every verdict carries its reason; the execution logs it.
import type { Plan } from './decide.js';
import type { FailoverKind, FailoverStepName, FailoverStepRecord } from './decisions.js';

/** Safe to run again after an unknown outcome. */
export const REPEATABLE: Readonly<Record<FailoverStepName, boolean>> = {
  promote: true,
  follow: true,
  failover_command: false,
  follow_primary_command: false,
  failback_command: false,
};

/** What a resuming run knows of the record it takes over. */
export interface ResumeOf {
  /** The cluster-wide seq of the record. */
  seq: number;
  /** The primary the event replaces (node_down of the primary, promote), else null. */
  replaces: number | null;
  steps: readonly FailoverStepRecord[];
}

/** The plan of a resumed event, from its record alone. */
export function planResume(kind: FailoverKind, ids: number[], r: ResumeOf): Plan {
  const from = `resuming failover ${r.seq}`;
  switch (kind) {
    case 'close_idle':
      return { action: 'nothing', reason: `${from}: closing idle connections is not resumed (the pools were the previous coordinator's)` };
    case 'node_up':
      return { action: 'attach', ids, reason: `${from}: attach ${ids.join(',')} again (attaching is idempotent; its failback_command is recorded per step)` };
    case 'node_down':
      if (r.replaces === null) return { action: 'detach', ids, primaryFailed: false, reason: `${from}: detach ${ids.join(',')}; the primary was not among them` };
      return { action: 'replace primary', ids, oldPrimary: r.replaces, reason: `${from}: primary ${r.replaces} failed; find the primary again and finish the steps left` };
    case 'promote':
      return {
        action: 'replace primary',
        ids: r.replaces === null ? [] : [r.replaces],
        oldPrimary: r.replaces,
        forced: ids[0],
        reason: `${from}: promotion of ${ids[0]}${r.replaces === null ? '' : ` replacing ${r.replaces}`}; finish the steps left`,
      };
  }
}

/** A standby an earlier run began promoting: a resumed run promotes that one again (safe to
 * repeat), never another, or two servers could end up out of recovery. */
export function promotedBefore(r: ResumeOf | null): FailoverStepRecord | undefined {
  return r?.steps.find((s) => s.step === 'promote' && (s.phase === 'begun' || s.ok === true));
}

/** What the servers show of a step's effect, for a step not safe to repeat. */
export interface Observation {
  done: boolean;
  reason: string;
}

export type StepVerdict = { action: 'run' | 'skip' | 'treat as done'; reason: string };

export function decideStep(x: { step: FailoverStepName; backend: number; prior: FailoverStepRecord | undefined; observed: Observation | null; term: number }): StepVerdict {
  const p = x.prior;
  const what = `${x.step} for backend ${x.backend}`;
  if (!p) return { action: 'run', reason: `${what}: not begun by an earlier run` };
  const by = `by ${p.peer} in term ${p.term}`;
  if (p.phase === 'done') return { action: 'skip', reason: `${what}: recorded done ${by} (${p.ok ? 'ok' : 'failed'}${p.result ? `: ${p.result}` : ''}); not run again` };
  if (REPEATABLE[x.step]) return { action: 'run', reason: `${what}: begun ${by}, no end recorded; safe to repeat, so it runs again` };
  if (x.observed?.done) return { action: 'treat as done', reason: `${what}: begun ${by}, no end recorded; ${x.observed.reason}: treated as done, not run again` };
  const seen = x.observed ? x.observed.reason : 'its effect cannot be observed';
  return { action: 'run', reason: `${what}: begun ${by}, no end recorded; ${seen}: run again with %T = ${x.term} as the fencing token` };
}
