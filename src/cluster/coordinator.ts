// The coordinator's loop: observe → decide (decide.ts, pure) → act. It runs on every peer
// and acts only where decide() says so (on the leader holding its lease); every decision is
// logged with its reason, "nothing to do" included (at info when it changes, else debug).
// Acting means: claim coordination for the term, then find the primary; resume a failover
// a previous coordinator left open; hand backends a majority sees down to the failover
// engine; transfer leadership to a higher-priority peer; and, when there is nothing else,
// let the engine's maintenance run (attach waiting nodes, failback, false primaries).
import type { Config } from '../config/index.js';
import type { FailoverEngine } from '../failover/index.js';
import type { Logger } from '../log.js';
import { decide, type CoordinatorAction, type DecideInput } from './decide.js';
import type { RaftDecisions } from './raft-decisions.js';
import type { RaftRuntime } from './raft-runtime.js';
import type { ClusterCommand, ClusterState } from './state.js';

export interface CoordinatorOptions {
  self: string;
  config: Config;
  runtime: RaftRuntime<ClusterCommand, ClusterState>;
  engine: FailoverEngine;
  decisions: RaftDecisions;
  state: () => ClusterState;
  logger: Logger;
}

export class Coordinator {
  private readonly pending = new Set<number>();
  private acting = false;
  private lastLogged = '';
  private lastMaintain = 0;
  private foundPrimaryInTerm = -1;

  constructor(private readonly o: CoordinatorOptions) {}

  /** Backends handed to the engine whose decision has not reached the state yet. */
  get requested(): ReadonlySet<number> {
    return this.pending;
  }

  engineBusy(): boolean {
    const s = this.o.engine.status();
    return s.active !== null || s.queue.length > 0;
  }

  /** One step of the loop. `input` lacks what only the coordinator knows (pending, engine). */
  step(input: Omit<DecideInput, 'engineBusy' | 'pending'>): CoordinatorAction {
    const action = decide({ ...input, engineBusy: this.engineBusy(), pending: this.pending });
    this.logDecision(action);
    if (!this.acting) void this.act(action, input.raft.term);
    return action;
  }

  private logDecision(a: CoordinatorAction): void {
    const key = `${a.kind}|${a.reason}`;
    const fields = { decision: a.kind, ...('to' in a ? { to: a.to } : {}), ...('ids' in a ? { backends: a.ids } : {}), ...('record' in a ? { seq: a.record.seq } : {}) };
    if (key !== this.lastLogged) this.o.logger.info(fields, `coordinator: ${a.kind}: ${a.reason}`);
    else this.o.logger.trace(fields, `coordinator: ${a.kind}: ${a.reason}`);
    this.lastLogged = key;
  }

  private async act(a: CoordinatorAction, term: number): Promise<void> {
    this.acting = true;
    const { runtime, engine, decisions, logger } = this.o;
    try {
      switch (a.kind) {
        case 'claim':
          await runtime.propose({ type: 'coordinator', peer: this.o.self, at: Date.now() });
          logger.info({ term }, 'coordinator claimed for the term');
          break;
        case 'resume': {
          // The engine takes the plan from the record and goes through its steps (resume.ts):
          // it finds the primary again, skips what the record says is done, re-runs what is
          // safe to repeat and, for a command cut off between begun and done, asks the servers.
          // Its failoverStarted becomes a failoverResumed of the open record (RaftDecisions),
          // and its steps and end are recorded on that record. If it finds nothing to do it
          // records no start, so the record is closed here, by this coordinator, with its word.
          const rec = a.record;
          decisions.resumeNext(rec.seq, a.reason);
          let outcome: { ok: boolean; summary: string; newPrimary: number | null };
          try {
            const r = await engine.request({
              kind: rec.kind,
              ids: rec.ids,
              reason: `resumed failover ${rec.seq}: ${rec.reason}`,
              term,
              source: 'watchdog',
              resume: { seq: rec.seq, replaces: rec.replaces, steps: rec.steps },
            });
            outcome = { ok: r.ok, summary: r.summary, newPrimary: r.newPrimary };
          } finally {
            decisions.resumeNext(null);
          }
          logger.info({ seq: rec.seq, ...outcome, steps: rec.steps.map((x) => `${x.step}:${x.backend}:${x.phase}`) }, 'resumed failover ended');
          const still = this.o.state().failovers.find((f) => f.seq === rec.seq && f.finished === null);
          if (still) {
            if (still.runner !== this.o.self || still.term !== term) {
              await runtime.propose({ type: 'failoverResumed', peer: this.o.self, at: Date.now(), seq: rec.seq, reason: `taken over to close it: ${outcome.summary}` });
            }
            await runtime.propose({ type: 'decision', peer: this.o.self, at: Date.now(), decision: { type: 'failoverFinished', seq: rec.seq, ok: outcome.ok, summary: `resumed: ${outcome.summary}`, newPrimary: outcome.newPrimary } });
          }
          break;
        }
        case 'request-down':
          for (const id of a.ids) this.pending.add(id);
          void engine
            .request({ kind: 'node_down', ids: a.ids, reason: `watchdog consensus: ${a.reason}`, term, source: 'watchdog', detectedAt: new Date() })
            .catch((err: Error) => logger.error({ backends: a.ids, err: err.message }, 'node_down request failed'))
            .finally(() => {
              for (const id of a.ids) this.pending.delete(id);
            });
          break;
        case 'transfer':
          runtime.transfer(a.to);
          break;
        case 'nothing': {
          const st = runtime.status();
          if (st.role !== 'leader' || !st.hasLease || this.engineBusy()) break;
          if (this.foundPrimaryInTerm !== st.term) {
            // A new coordinator asks the servers who is primary before anything else,
            // as pgpool's find_primary_node does at start.
            this.foundPrimaryInTerm = st.term;
            await engine.findPrimary(`coordinator of term ${st.term}`);
          } else if (Date.now() - this.lastMaintain >= 1000) {
            this.lastMaintain = Date.now();
            await engine.maintain();
          }
          break;
        }
      }
    } catch (err) {
      logger.warn({ decision: a.kind, err: (err as Error).message }, 'coordinator action not carried out');
      if (a.kind === 'nothing') this.foundPrimaryInTerm = -1;
    } finally {
      this.acting = false;
    }
  }
}
