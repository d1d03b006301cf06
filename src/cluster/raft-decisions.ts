// The failover engine's Decisions sink under the watchdog: a decision is proposed to the
// Raft log and is in force once it has committed and been applied here (the routing of
// every peer follows it the same way). Only the coordinator's engine records anything; on
// any other peer `record` rejects, and the engine abandons the request with that reason.
//
// Failover records are keyed by the log index their failoverStarted committed at (the
// cluster seq, state.ts). The engine has its own seq; this sink maps one to the other, and
// when the coordinator resumes an open record, the engine's next failoverStarted becomes
// a `failoverResumed` of that record instead of a new one; its steps and its end are then
// recorded on that record.
import type { Decision, Decisions } from '../failover/decisions.js';
import type { RaftRuntime } from './raft-runtime.js';
import type { ClusterCommand, ClusterState } from './state.js';

export class RaftDecisions implements Decisions {
  private readonly clusterSeq = new Map<number, number>();
  private resuming: { seq: number; reason: string } | null = null;
  private localSeq = 0;

  constructor(
    private readonly self: string,
    private readonly runtime: RaftRuntime<ClusterCommand, ClusterState>,
    private readonly state: () => ClusterState,
  ) {}

  /** The engine's next failoverStarted resumes record `seq` rather than starting a new one. */
  resumeNext(seq: number, reason: string): void;
  /** Forget a pending resume (the engine's request ended without starting anything). */
  resumeNext(seq: null): void;
  resumeNext(seq: number | null, reason = ''): void {
    this.resuming = seq === null ? null : { seq, reason };
  }

  async record(d: Decision): Promise<void> {
    const at = Date.now();
    if (d.type === 'failoverStarted' && this.resuming) {
      const r = this.resuming;
      this.resuming = null;
      await this.runtime.propose({ type: 'failoverResumed', peer: this.self, at, seq: r.seq, reason: r.reason });
      this.clusterSeq.set(d.seq, r.seq);
      return;
    }
    if (d.type === 'failoverFinished' || d.type === 'failoverStep') {
      const seq = this.clusterSeq.get(d.seq);
      if (seq === undefined) throw new Error(`failover ${d.seq} has no failover record in the cluster state (its start was not recorded here)`);
      await this.runtime.propose({ type: 'decision', peer: this.self, at, decision: { ...d, seq } });
      if (d.type === 'failoverFinished') this.clusterSeq.delete(d.seq);
      return;
    }
    const { index } = await this.runtime.propose({ type: 'decision', peer: this.self, at, decision: d });
    if (d.type === 'failoverStarted') this.clusterSeq.set(d.seq, index);
  }

  nextSeq(): number {
    const recorded = Math.max(0, ...this.state().failovers.map((f) => f.engineSeq));
    this.localSeq = Math.max(this.localSeq, recorded) + 1;
    return this.localSeq;
  }

  term(): number {
    return this.runtime.status().term;
  }
}
