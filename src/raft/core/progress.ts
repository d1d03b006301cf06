// What a leader knows about one follower's log.
//   probe:     we do not know where the logs match; send one append per heartbeat, wait.
//   replicate: logs match up to `match`; stream appends optimistically from `next`.
//   snapshot:  a snapshot is on its way; send nothing else until it is acknowledged.

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** In probe state: an append is outstanding, wait for its answer or the next heartbeat. */
  probeSent = false;
  /** In snapshot state: index of the snapshot sent and the tick it was sent at. */
  pendingSnapshot = 0;
  snapshotSentTick = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** Leader tick of the latest heartbeat this peer acknowledged (for the lease). */
  ackedTick = -Infinity;

  constructor(next: number) {
    this.next = next;
  }

  becomeProbe(): void {
    this.next = this.match + 1;
    this.pendingSnapshot = 0;
    this.state = 'probe';
    this.probeSent = false;
  }

  becomeReplicate(): void {
    this.state = 'replicate';
    this.next = this.match + 1;
    this.pendingSnapshot = 0;
    this.probeSent = false;
  }

  becomeSnapshot(index: number, tick: number): void {
    this.state = 'snapshot';
    this.pendingSnapshot = index;
    this.snapshotSentTick = tick;
    this.probeSent = false;
  }

  /** A successful append answer up to n. Returns true if it told us something new. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    if (this.next < n + 1) this.next = n + 1;
    return updated;
  }

  /**
   * A rejected append for probe index `rejected`; `next` is the leader's chosen retry point.
   * Returns false if the rejection is stale (answers an older probe) and must be ignored.
   */
  maybeDecrTo(rejected: number, next: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, next), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    if (this.state === 'probe') return this.probeSent;
    if (this.state === 'snapshot') return true;
    return false;
  }
}
