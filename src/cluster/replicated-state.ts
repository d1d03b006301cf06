// The Raft state machine of a watchdog peer: clogic's pure state.ts behind the runtime's
// StateMachine interface. Every committed entry is validated (clusterCommandSchema) and
// applied; what changed, or why nothing did, is logged; listeners (routing, interlock,
// coordinator) hear about every change.
import { EventEmitter } from 'node:events';
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import type { StateMachine } from './raft-runtime.js';
import { apply, clusterCommandSchema, initialState, restoreState, snapshotState, type ClusterCommand, type ClusterState } from './state.js';

export class ReplicatedState extends EventEmitter<{ change: [state: ClusterState, reason: string] }> implements StateMachine<ClusterCommand, ClusterState> {
  private s: ClusterState;

  constructor(
    private readonly cfg: Pick<Config, 'backends'>,
    private readonly log: Logger,
  ) {
    super();
    this.s = initialState(cfg);
  }

  get state(): ClusterState {
    return this.s;
  }

  apply(cmd: ClusterCommand, at: { index: number; term: number }): void {
    const parsed = clusterCommandSchema.safeParse(cmd);
    if (!parsed.success) {
      // Every peer refuses the same entry the same way, so the replicas stay equal.
      this.log.error({ index: at.index, term: at.term, problem: parsed.error.issues[0]?.message }, 'committed entry is not a cluster command: skipped');
      this.s = apply(this.s, null, at).state;
      return;
    }
    const r = apply(this.s, parsed.data, at);
    this.s = r.state;
    this.log[r.changed ? 'info' : 'debug']({ index: at.index, term: at.term, command: parsed.data.type }, `cluster state: ${r.reason}`);
    if (r.changed) this.emit('change', this.s, r.reason);
  }

  snapshot(): ClusterState {
    return snapshotState(this.s);
  }

  restore(data: ClusterState, at: { index: number; term: number }): void {
    this.s = restoreState(data, this.cfg);
    this.log.info({ index: at.index, term: at.term }, 'cluster state restored from a snapshot');
    this.emit('change', this.s, `snapshot at ${at.index}`);
  }
}
