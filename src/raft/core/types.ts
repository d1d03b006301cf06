// Plain data types of the Raft core. Everything here is JSON-serialisable as long as
// the entry payload T and the snapshot payload S are.

export type NodeId = string;

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

/** A log entry. `data === null` marks the no-op a leader appends when it is elected. */
export interface Entry<T> {
  term: number;
  index: number;
  data: T | null;
}

/** What must be on disk before any message of the same Ready leaves the node. */
export interface HardState {
  term: number;
  vote: NodeId | null;
  commit: number;
}

/** Volatile state, useful to the runtime and to observers. */
export interface SoftState {
  role: Role;
  leader: NodeId | null;
}

export interface SnapshotMeta {
  /** Last log index the snapshot covers. */
  index: number;
  /** Term of the entry at `index`. */
  term: number;
  /** Cluster membership as of `index`. */
  peers: NodeId[];
}

/** The application's state as of `meta.index`; `data` is opaque to the core. */
export interface Snapshot<S> {
  meta: SnapshotMeta;
  data: S;
}

interface MsgBase {
  from: NodeId;
  to: NodeId;
  term: number;
}

/** Append entries after (index, logTerm); also carries the leader's commit index. */
export interface MsgApp<T> extends MsgBase {
  type: 'app';
  index: number;
  logTerm: number;
  entries: Entry<T>[];
  commit: number;
}

/**
 * Answer to `app` (or to `snap`). On success `index` is the follower's last matching index.
 * On reject, `index` echoes the probe and (`hintIndex`, `hintTerm`) let the leader skip
 * a whole term of divergent entries at once (fast backtracking).
 */
export interface MsgAppResp extends MsgBase {
  type: 'appResp';
  index: number;
  reject: boolean;
  hintIndex: number;
  hintTerm: number;
}

/** Leader liveness; `commit` is capped at what the follower is known to hold. `tick` is the leader's clock, echoed back. */
export interface MsgHeartbeat extends MsgBase {
  type: 'heartbeat';
  commit: number;
  tick: number;
}

export interface MsgHeartbeatResp extends MsgBase {
  type: 'heartbeatResp';
  tick: number;
}

/** Vote or pre-vote request. `force` is set by a leadership transfer and overrides leases. */
export interface MsgVote extends MsgBase {
  type: 'vote' | 'preVote';
  index: number;
  logTerm: number;
  force: boolean;
}

export interface MsgVoteResp extends MsgBase {
  type: 'voteResp' | 'preVoteResp';
  reject: boolean;
}

export interface MsgSnap<S> extends MsgBase {
  type: 'snap';
  snapshot: Snapshot<S>;
}

/** Sent by a leader to its chosen successor: campaign now. */
export interface MsgTimeoutNow extends MsgBase {
  type: 'timeoutNow';
}

export type Message<T, S> =
  | MsgApp<T>
  | MsgAppResp
  | MsgHeartbeat
  | MsgHeartbeatResp
  | MsgVote
  | MsgVoteResp
  | MsgSnap<S>
  | MsgTimeoutNow;

export type MessageType = Message<unknown, unknown>['type'];

/**
 * Work handed to the runtime. Handle it in this order, then call `advance(ready)`:
 * 1. persist `snapshot` (if set; it replaces the whole stored log), then `entries` (they
 *    replace any stored entries at the same or higher index), fsync, then `hardState`
 *    (if set) and fsync — in that order, so a stored commit never points past the stored log;
 * 2. send `messages`;
 * 3. restore the state machine from `snapshot` (if set), then apply `committedEntries`.
 */
export interface Ready<T, S> {
  softState: SoftState;
  /** True when `softState` differs from the previous Ready's. */
  softStateChanged: boolean;
  hardState: HardState | null;
  entries: Entry<T>[];
  snapshot: Snapshot<S> | null;
  committedEntries: Entry<T>[];
  messages: Message<T, S>[];
}

export interface Status {
  id: NodeId;
  role: Role;
  leader: NodeId | null;
  term: number;
  vote: NodeId | null;
  commit: number;
  applied: number;
  lastIndex: number;
  lastTerm: number;
  snapshotIndex: number;
  tick: number;
  leaseUntilTick: number | null;
  transferee: NodeId | null;
  progress: Record<NodeId, { match: number; next: number; state: string; active: boolean }> | null;
}
