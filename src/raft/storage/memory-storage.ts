// Storage in memory: what the simulator treats as "on disk" (it survives a simulated crash).
import type { Entry, HardState, Ready, Snapshot } from '../core/types.js';
import { EMPTY_HARD_STATE, type RaftStorage, type StoredState } from './storage.js';

export class MemoryStorage<T, S> implements RaftStorage<T, S> {
  hardState: HardState = { ...EMPTY_HARD_STATE };
  snapshot: Snapshot<S> | null = null;
  entries: Entry<T>[] = [];

  load(): StoredState<T, S> {
    return { hardState: { ...this.hardState }, snapshot: this.snapshot, entries: [...this.entries] };
  }

  private offset(): number {
    return this.snapshot ? this.snapshot.meta.index : 0;
  }

  save(rd: Pick<Ready<T, S>, 'hardState' | 'entries' | 'snapshot'>): void {
    if (rd.snapshot) {
      this.snapshot = rd.snapshot;
      this.entries = [];
    }
    if (rd.entries.length) {
      const first = rd.entries[0].index;
      const keep = first - this.offset() - 1;
      if (keep < 0 || keep > this.entries.length) {
        throw new Error(`memory storage: entries from ${first} do not follow stored log (offset ${this.offset()}, ${this.entries.length} entries)`);
      }
      this.entries.length = keep;
      for (const e of rd.entries) this.entries.push(e);
    }
    if (rd.hardState) this.hardState = { ...rd.hardState };
  }

  compact(snap: Snapshot<S>): void {
    const drop = snap.meta.index - this.offset();
    if (drop <= 0) return;
    this.entries = this.entries.slice(drop);
    this.snapshot = snap;
  }
}
