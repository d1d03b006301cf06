// A min-heap of timed events; ties break by insertion order, so runs are deterministic.
export interface Timed<E> {
  at: number;
  seq: number;
  ev: E;
}

export class EventQueue<E> {
  private heap: Timed<E>[] = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  push(at: number, ev: E): void {
    const h = this.heap;
    const item = { at, seq: this.seq++, ev };
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  peek(): Timed<E> | undefined {
    return this.heap[0];
  }

  pop(): Timed<E> | undefined {
    const h = this.heap;
    if (!h.length) return undefined;
    const top = h[0];
    const last = h.pop() as Timed<E>;
    if (h.length) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l], h[m])) m = l;
        if (r < h.length && less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

function less<E>(x: Timed<E>, y: Timed<E>): boolean {
  return x.at < y.at || (x.at === y.at && x.seq < y.seq);
}

/**
 * The simulators' virtual clock: timed events handled in order, time jumping from one to
 * the next. `handle` runs each event at its time; predicates are checked after every event.
 */
export class Scheduler<E> {
  now = 0;
  private readonly queue = new EventQueue<E>();

  constructor(private readonly handle: (ev: E) => void) {}

  push(at: number, ev: E): void {
    this.queue.push(at, ev);
  }

  /** Handle events up to and including time t. */
  runUntil(t: number): void {
    this.runUntilTrueBy(() => false, t);
  }

  /** Handle events until pred() holds (checked after every event) or time `end`; returns whether it held. */
  runUntilTrueBy(pred: () => boolean, end: number): boolean {
    if (pred()) return true;
    for (;;) {
      const top = this.queue.peek();
      if (!top || top.at > end) break;
      this.queue.pop();
      this.now = top.at;
      this.handle(top.ev);
      if (pred()) return true;
    }
    this.now = Math.max(this.now, end);
    return pred();
  }
}
