// What the pure watchdog rules (vip.ts, decide.ts) need to know of this peer's Raft node,
// read in one place so the runtime and the simulator observe it the same way.
import type { RaftNode } from '../raft/core/raft.js';
import type { Status } from '../raft/core/types.js';

export interface RaftObservation extends Status {
  /** An entry of the current term has committed (the leader then knows the commit index). */
  termCommitted: boolean;
  /** The leader holds its lease: no other peer can be leader until `leaseUntilTick`. */
  hasLease: boolean;
  /** This leader gave its lease up for the term by starting a transfer (see RaftNode.leaseForfeited). */
  leaseForfeited: boolean;
}

export function observeRaft(node: RaftNode<unknown, unknown>): RaftObservation {
  const st = node.status();
  return { ...st, termCommitted: node.log.term(node.log.committed) === node.term, hasLease: st.leaseUntilTick !== null, leaseForfeited: node.leaseForfeited() };
}
