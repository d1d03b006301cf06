// What a Raft node keeps on stable storage, and the interface the runtime persists through.
import type { Entry, HardState, Ready, Snapshot } from '../core/types.js';

export interface StoredState<T, S> {
  hardState: HardState;
  snapshot: Snapshot<S> | null;
  /** Entries after the snapshot, contiguous. */
  entries: Entry<T>[];
}

export interface RaftStorage<T, S> {
  /** Everything stored, to construct a RaftNode after a (re)start. */
  load(): StoredState<T, S>;
  /**
   * Make the persistent part of a Ready durable, in this order: snapshot (replaces the
   * whole log), entries (replace stored entries from their first index on), hard state.
   * Returns only when all of it is on stable storage.
   */
  save(rd: Pick<Ready<T, S>, 'hardState' | 'entries' | 'snapshot'>): void;
  /** Local log compaction: store `snap` and drop the entries it covers, keep the rest. */
  compact(snap: Snapshot<S>): void;
}

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: null, commit: 0 };
