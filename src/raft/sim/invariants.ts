// Safety properties the simulator checks after every step. Each check is incremental
// (it looks only at what changed), so checking every step stays cheap.
import type { RaftNode } from '../core/raft.js';
import type { Entry, HardState, NodeId, Ready } from '../core/types.js';

export class SafetyViolation extends Error {
  constructor(
    readonly property: string,
    detail: string,
  ) {
    super(`${property}: ${detail}`);
    this.name = 'SafetyViolation';
  }
}

/** The simulated application: a running hash over the applied (term, data) sequence. */
export interface SmState {
  index: number;
  hash: number;
}

export function applyEntry(s: SmState, e: Entry<number>): SmState {
  if (e.index !== s.index + 1) throw new SafetyViolation('apply order', `applied ${e.index} after ${s.index}`);
  let x = (s.hash ^ Math.imul(e.term, 0x9e3779b1)) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x85ebca6b);
  x ^= e.data === null ? 0x5bd1e995 : e.data;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return { index: e.index, hash: (x ^ (x >>> 16)) >>> 0 };
}

type SimRaft = RaftNode<number, SmState>;

interface NodeTrack {
  term: number;
  commit: number;
  persistedTerm: number;
  persistedCommit: number;
}

export class InvariantChecker {
  /** term -> the one node that led it */
  private leaderOfTerm = new Map<number, NodeId>();
  /** "index:term" -> data and previous entry's term, as first seen in any log */
  private entryAt = new Map<string, { data: number | null; prevTerm: number | undefined }>();
  /** index -> term of the entry known committed there */
  private committedTerm: number[] = [];
  /**
   * index -> lowest current term of any node seen holding it committed. The leader that
   * commits an entry sees it first, in its own term, so this is the term the entry was
   * committed in (never less), which is what leader completeness is stated against.
   */
  private committedIn: number[] = [];
  maxCommitted = 0;
  /** index -> state hash after applying that index (first node to apply it sets it) */
  private hashAt: number[] = [];
  private nodes = new Map<NodeId, NodeTrack>();
  elections = 0;

  /** A node (re)started from storage. */
  onStart(id: NodeId, raft: SimRaft, sm: SmState): void {
    const t = this.nodes.get(id);
    const hs = raft.hardState();
    if (t) {
      if (hs.term < t.persistedTerm) throw new SafetyViolation('term monotonic', `${id} restarted at term ${hs.term} < persisted ${t.persistedTerm}`);
      if (hs.commit < t.persistedCommit) throw new SafetyViolation('commit monotonic', `${id} restarted at commit ${hs.commit} < persisted ${t.persistedCommit}`);
    }
    this.nodes.set(id, { term: hs.term, commit: hs.commit, persistedTerm: hs.term, persistedCommit: hs.commit });
    this.onSnapshot(id, sm);
  }

  onReady(id: NodeId, raft: SimRaft, rd: Ready<number, SmState>): void {
    const t = this.nodes.get(id) as NodeTrack;
    const term = raft.term;
    if (term < t.term) throw new SafetyViolation('term monotonic', `${id} term went from ${t.term} to ${term}`);
    t.term = term;

    // Log matching: an (index, term) pair always names the same entry with the same predecessor term.
    for (const e of rd.entries) {
      const prevTerm = raft.log.term(e.index - 1);
      const key = `${e.index}:${e.term}`;
      const seen = this.entryAt.get(key);
      if (!seen) {
        this.entryAt.set(key, { data: e.data, prevTerm });
      } else {
        if (seen.data !== e.data) {
          throw new SafetyViolation('log matching', `${id} has entry ${key} with data ${e.data}, another log has ${seen.data}`);
        }
        if (prevTerm !== undefined && seen.prevTerm !== undefined && prevTerm !== seen.prevTerm) {
          throw new SafetyViolation('log matching', `${id} has entry ${key} after term ${prevTerm}, another log after term ${seen.prevTerm}`);
        }
      }
    }

    // Commit: never backwards, and an index once committed keeps its term everywhere.
    const commit = raft.log.committed;
    if (commit < t.commit) throw new SafetyViolation('commit monotonic', `${id} commit went from ${t.commit} to ${commit}`);
    for (let i = t.commit + 1; i <= commit; i++) {
      const it = raft.log.term(i);
      if (it === undefined) continue; // covered by a snapshot (checked through its state hash)
      const known = this.committedTerm[i];
      if (known === undefined) this.committedTerm[i] = it;
      else if (known !== it) throw new SafetyViolation('committed entry changed', `${id} committed index ${i} with term ${it}, earlier committed with term ${known}`);
      const at = this.committedIn[i];
      if (at === undefined || term < at) this.committedIn[i] = term;
    }
    if (commit > this.maxCommitted) this.maxCommitted = commit;
    t.commit = commit;

    if (rd.softStateChanged && rd.softState.role === 'leader') this.onLeader(id, raft);
  }

  private onLeader(id: NodeId, raft: SimRaft): void {
    this.elections++;
    const term = raft.term;
    const other = this.leaderOfTerm.get(term);
    if (other !== undefined && other !== id) {
      throw new SafetyViolation('election safety', `two leaders in term ${term}: ${other} and ${id}`);
    }
    this.leaderOfTerm.set(term, id);
    // Leader completeness: an entry committed in term T is in the log of every leader of a
    // term after T. (A leader of an older term can still come to power late, when delayed
    // vote answers arrive; it need not hold entries committed since, and cannot commit.)
    for (let i = raft.log.snapIndex + 1; i <= this.maxCommitted; i++) {
      const known = this.committedTerm[i];
      const at = this.committedIn[i];
      if (known === undefined || at === undefined || at >= term) continue;
      const mine = raft.log.term(i);
      if (mine !== known) {
        throw new SafetyViolation(
          'leader completeness',
          `${id} leads term ${term} with ${mine === undefined ? 'no entry' : `term ${mine}`} at index ${i}, committed in term ${at} with term ${known}`,
        );
      }
    }
  }

  onPersist(id: NodeId, hs: HardState): void {
    const t = this.nodes.get(id) as NodeTrack;
    if (hs.term < t.persistedTerm) throw new SafetyViolation('term monotonic', `${id} persisted term ${hs.term} < ${t.persistedTerm}`);
    if (hs.commit < t.persistedCommit) throw new SafetyViolation('commit monotonic', `${id} persisted commit ${hs.commit} < ${t.persistedCommit}`);
    t.persistedTerm = hs.term;
    t.persistedCommit = hs.commit;
  }

  /** State machine safety: every node's applied sequence is a prefix of one history. */
  onApply(id: NodeId, sm: SmState): void {
    const known = this.hashAt[sm.index];
    if (known === undefined) this.hashAt[sm.index] = sm.hash;
    else if (known !== sm.hash) throw new SafetyViolation('state machine safety', `${id} applied a different entry sequence up to index ${sm.index}`);
  }

  onSnapshot(id: NodeId, sm: SmState): void {
    if (sm.index > 0) this.onApply(id, sm);
  }

  /** Lease safety: at no instant do two live nodes believe they hold the leader lease. */
  checkLeases(nodes: Iterable<SimRaft | null>): void {
    let holder: SimRaft | null = null;
    for (const r of nodes) {
      if (!r || r.role !== 'leader' || !r.hasLease()) continue;
      if (holder) throw new SafetyViolation('lease safety', `${holder.id} (term ${holder.term}) and ${r.id} (term ${r.term}) both hold a lease`);
      holder = r;
    }
  }
}
