// Narrates what the peers do, as it happens, from their JSON log lines (each carries its own
// time, so the timings are the peers' and not the demo's polling): every rule turns a log line
// of one peer into a sentence, or ignores it. Lines are printed in time order, with the time
// since the scenario's t0.
import type { LogLine, PeerProcess } from '../../test/support/peer.js';
import type { Bed, Name } from '../../test/support/watchdog-bed.js';

export interface Rule {
  /** The sentence for this line of `peer` ('' to record its time without a sentence), or undefined to skip it. */
  say(peer: Name, l: LogLine): string | undefined;
  /** Say it for the first matching line only: of the whole cluster, or of each peer. */
  once?: 'cluster' | 'peer';
  /** A name for the timings summary; the first time a rule with a key matched is kept. */
  key?: string;
}

const HOLD_MS = 300;

export const at = (l: LogLine): number => Date.parse(String(l.time));
export const fmt = (ms: number) => `${ms >= 0 ? '+' : '-'}${(Math.abs(ms) / 1000).toFixed(3)} s`;

export class Narrator {
  /** The first time (ms since t0) a keyed rule matched, per key. */
  readonly firsts = new Map<string, number>();
  private readonly seen = new Map<PeerProcess, number>();
  private readonly said = new Set<string>();
  private pending: { ms: number; text: string }[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly bed: Bed,
    private readonly t0: number,
    private readonly rules: Rule[],
    private readonly out: (s: string) => void,
  ) {
    // Only what happens from t0 on; a peer started later is read from its first line.
    for (const p of bed.peers.values()) this.seen.set(p, p.logs.length);
  }

  start(): void {
    this.timer = setInterval(() => this.poll(), 50);
  }

  /** Prints what is left and stops. */
  stop(): void {
    clearInterval(this.timer);
    this.poll(true);
  }

  /** A sentence of the demo itself (a probe's result), in the same stream. */
  note(ms: number, text: string, key?: string): void {
    if (key && !this.firsts.has(key)) this.firsts.set(key, ms);
    this.pending.push({ ms, text });
  }

  private poll(final = false): void {
    const batch = this.pending;
    for (const [name, p] of this.bed.peers) {
      const from = this.seen.get(p) ?? 0;
      const lines = p.logs.slice(from);
      this.seen.set(p, from + lines.length);
      for (const l of lines) {
        this.rules.forEach((r, i) => {
          const text = r.say(name, l);
          if (text === undefined) return;
          const id = r.once === 'cluster' ? `${i}` : r.once === 'peer' ? `${i}|${name}` : undefined;
          if (id !== undefined) {
            if (this.said.has(id)) return;
            this.said.add(id);
          }
          const ms = at(l) - this.t0;
          if (r.key && !this.firsts.has(r.key)) this.firsts.set(r.key, ms);
          if (text !== '') batch.push({ ms, text: `${name.padEnd(5)}  ${text}` });
        });
      }
    }
    // A peer's line reaches the demo some milliseconds after it was logged: hold each sentence
    // a moment so that the stream comes out in time order.
    batch.sort((a, b) => a.ms - b.ms);
    const upTo = final ? Infinity : Date.now() - this.t0 - HOLD_MS;
    this.pending = batch.filter((b) => b.ms > upTo);
    for (const b of batch) if (b.ms <= upTo) this.out(`  ${fmt(b.ms).padStart(9)}  ${b.text}`);
  }
}
