// A test double of the Raft core that breaks one safety rule on purpose. The checker tests
// (test/raft/checker.test.ts, figure8.test.ts) run the simulator with it and demand that the
// invariant checker catches the violation: proof that the checks are not vacuous. It lives
// with the simulator so that the production core carries no test switches.
import { RaftNode, type RaftConfig, type RaftInitialState } from '../core/raft.js';
import type { MsgVote } from '../core/types.js';

/** The rules a test may break. */
export interface BrokenRules {
  /** Grant a vote to every candidate, even after voting for another in the same term. */
  voteTwice?: boolean;
  /** Commit entries of an earlier term by counting replicas (Raft figure 8). */
  commitOldTermByCounting?: boolean;
  /** Forget the persisted vote on restart. */
  forgetVoteOnRestart?: boolean;
  /** Drop check-quorum's shield: followers that hear from a leader still grant votes. */
  grantVotesDuringLease?: boolean;
  /** Announce a deadline one tick later than the truth (a runtime that sleeps until it would miss a tick's work). */
  lateDeadline?: boolean;
}

export class BrokenRaftNode<T, S> extends RaftNode<T, S> {
  private readonly rules: BrokenRules;

  constructor(config: RaftConfig<T>, init: RaftInitialState<T, S>, rules: BrokenRules) {
    const hs = init.hardState;
    super(config, rules.forgetVoteOnRestart && hs ? { ...init, hardState: { ...hs, vote: null } } : init);
    this.rules = rules;
  }

  protected override mayGrantVote(m: MsgVote): boolean {
    return this.rules.voteTwice === true || super.mayGrantVote(m);
  }

  protected override mayCommitByCounting(n: number): boolean {
    return this.rules.commitOldTermByCounting === true || super.mayCommitByCounting(n);
  }

  override ticksUntilDue(): number {
    return super.ticksUntilDue() + (this.rules.lateDeadline === true ? 1 : 0);
  }

  protected override hearsFromLeader(): boolean {
    if (this.rules.grantVotesDuringLease === true) return this.role === 'leader';
    return super.hearsFromLeader();
  }
}
