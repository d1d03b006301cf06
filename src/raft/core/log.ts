// The in-memory Raft log: an optional snapshot prefix followed by entries, plus the
// bookkeeping of what is committed, applied, and not yet persisted.
import type { Entry, Snapshot } from './types.js';

export class RaftLog<T, S> {
  /** Index and term of the last entry covered by the snapshot (0, 0 without one). */
  snapIndex = 0;
  snapTerm = 0;
  /** Latest snapshot (for sending to lagging followers), if any. */
  snapshot: Snapshot<S> | null = null;
  /** entries[i].index === snapIndex + 1 + i */
  entries: Entry<T>[] = [];
  committed = 0;
  applied = 0;
  /** First index that the runtime still has to persist. */
  unstableFrom = 1;
  /** Snapshot received from a leader that the runtime still has to persist and apply. */
  pendingSnapshot: Snapshot<S> | null = null;

  /** Rebuild from what storage holds. */
  static restore<T, S>(snapshot: Snapshot<S> | null, entries: Entry<T>[], commit: number): RaftLog<T, S> {
    const log = new RaftLog<T, S>();
    if (snapshot) {
      log.snapshot = snapshot;
      log.snapIndex = snapshot.meta.index;
      log.snapTerm = snapshot.meta.term;
    }
    let expect = log.snapIndex + 1;
    for (const e of entries) {
      if (e.index < expect) continue;
      if (e.index !== expect) throw new Error(`raft log: gap in stored entries at ${expect} (found ${e.index})`);
      log.entries.push(e);
      expect++;
    }
    log.committed = Math.max(commit, log.snapIndex);
    if (log.committed > log.lastIndex()) throw new Error(`raft log: commit ${commit} beyond last index ${log.lastIndex()}`);
    log.applied = log.snapIndex;
    log.unstableFrom = log.lastIndex() + 1;
    return log;
  }

  firstIndex(): number {
    return this.snapIndex + 1;
  }

  lastIndex(): number {
    return this.snapIndex + this.entries.length;
  }

  lastTerm(): number {
    return this.entries.length ? this.entries[this.entries.length - 1].term : this.snapTerm;
  }

  /** Term at index i, or undefined if i is compacted away (below the snapshot) or beyond the log. */
  term(i: number): number | undefined {
    if (i === this.snapIndex) return this.snapTerm;
    if (i < this.snapIndex || i > this.lastIndex()) return undefined;
    return this.entries[i - this.snapIndex - 1].term;
  }

  entry(i: number): Entry<T> | undefined {
    if (i <= this.snapIndex || i > this.lastIndex()) return undefined;
    return this.entries[i - this.snapIndex - 1];
  }

  matchTerm(i: number, t: number): boolean {
    return this.term(i) === t;
  }

  /** Raft's "at least as up to date" comparison of a candidate's last entry with ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /** Entries in [lo, hi), at most max of them. Caller makes sure lo > snapIndex. */
  slice(lo: number, hi: number, max = Infinity): Entry<T>[] {
    const from = lo - this.snapIndex - 1;
    const to = Math.min(hi - this.snapIndex - 1, from + max);
    return this.entries.slice(from, to);
  }

  /** Leader-side append of new entries (already numbered). */
  append(entries: Entry<T>[]): void {
    if (!entries.length) return;
    const first = entries[0].index;
    if (first <= this.committed) throw new Error(`raft log: append at ${first} would overwrite committed ${this.committed}`);
    this.truncateFrom(first);
    for (const e of entries) this.entries.push(e);
  }

  private truncateFrom(i: number): void {
    if (i <= this.lastIndex()) {
      this.entries.length = i - this.snapIndex - 1;
    }
    if (i < this.unstableFrom) this.unstableFrom = i;
  }

  /**
   * Follower-side append after (prevIndex, prevTerm). Returns the index of the last new
   * entry, or null if the log does not contain (prevIndex, prevTerm).
   */
  maybeAppend(prevIndex: number, prevTerm: number, entries: Entry<T>[]): number | null {
    if (prevIndex < this.snapIndex) {
      // Our snapshot covers part of the batch; those entries are committed and equal. Skip them.
      const skip = this.snapIndex - prevIndex;
      if (skip > entries.length) return prevIndex + entries.length;
      const base = entries[skip - 1];
      if (base && base.index !== this.snapIndex) return null;
      if (base && base.term !== this.snapTerm) return null;
      entries = entries.slice(skip);
      prevIndex = this.snapIndex;
      prevTerm = this.snapTerm;
    }
    if (!this.matchTerm(prevIndex, prevTerm)) return null;
    const lastNew = prevIndex + entries.length;
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k];
      const t = this.term(e.index);
      if (t === undefined) {
        for (let j = k; j < entries.length; j++) this.entries.push(entries[j]);
        break;
      }
      if (t !== e.term) {
        if (e.index <= this.committed) {
          throw new Error(`raft log: conflicting entry at committed index ${e.index}`);
        }
        this.truncateFrom(e.index);
        for (let j = k; j < entries.length; j++) this.entries.push(entries[j]);
        break;
      }
    }
    return lastNew;
  }

  /**
   * Fast backtracking: the largest index <= index whose term is <= term, with its term.
   * Used by a follower to answer a rejected append and by the leader to pick the next probe.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    while (i > this.snapIndex) {
      const t = this.term(i) as number;
      if (t <= term) return { index: i, term: t };
      i--;
    }
    return { index: this.snapIndex, term: this.snapTerm };
  }

  commitTo(i: number): boolean {
    if (i <= this.committed) return false;
    if (i > this.lastIndex()) throw new Error(`raft log: commit ${i} beyond last index ${this.lastIndex()}`);
    this.committed = i;
    return true;
  }

  /** Entries committed but not yet handed out for applying. */
  nextCommitted(max = Infinity): Entry<T>[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    if (lo > this.committed) return [];
    return this.slice(lo, this.committed + 1, max);
  }

  unstableEntries(): Entry<T>[] {
    if (this.unstableFrom > this.lastIndex()) return [];
    return this.slice(Math.max(this.unstableFrom, this.firstIndex()), this.lastIndex() + 1);
  }

  /** Replace the whole log with a snapshot received from the leader. */
  restoreSnapshot(snap: Snapshot<S>): void {
    this.snapshot = snap;
    this.pendingSnapshot = snap;
    this.snapIndex = snap.meta.index;
    this.snapTerm = snap.meta.term;
    this.entries = [];
    this.committed = snap.meta.index;
    this.unstableFrom = snap.meta.index + 1;
  }

  /** Drop entries up to and including snap.meta.index (the application took a snapshot there). */
  compact(snap: Snapshot<S>): void {
    const i = snap.meta.index;
    if (i <= this.snapIndex) return;
    if (i > this.applied) throw new Error(`raft log: cannot compact to ${i}, applied is ${this.applied}`);
    const t = this.term(i);
    if (t !== snap.meta.term) throw new Error(`raft log: snapshot term ${snap.meta.term} does not match log term ${t} at ${i}`);
    this.entries = this.entries.slice(i - this.snapIndex);
    this.snapIndex = i;
    this.snapTerm = t;
    this.snapshot = snap;
    if (this.unstableFrom <= i) this.unstableFrom = i + 1;
  }
}
