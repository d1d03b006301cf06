// The live feed behind GET /v1/events (the dashboard and `status --watch`): one snapshot
// built per tick for ALL subscribers, sent only when it differs from the last one sent, and
// at once (debounced) when a backend, a failover or the watchdog changes. Twenty open
// dashboards therefore cost one view per second, not twenty requests per second.
import { SseChannel } from './http.js';

export interface LiveFeedOptions {
  /** The payload of one `status` event, as a JSON-able value. */
  build: () => unknown;
  tickMs?: number;
  /** Debounce for change-driven pushes. */
  settleMs?: number;
  keepaliveMs?: number;
}

export class LiveFeed {
  private readonly clients = new Set<SseChannel>();
  private last = '';
  private timer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Timeout | undefined;
  private sinceKeepalive = 0;
  private readonly tickMs: number;
  private readonly settleMs: number;
  private readonly keepaliveMs: number;

  constructor(private readonly opts: LiveFeedOptions) {
    this.tickMs = opts.tickMs ?? 1000;
    this.settleMs = opts.settleMs ?? 50;
    this.keepaliveMs = opts.keepaliveMs ?? 15_000;
  }

  get size(): number {
    return this.clients.size;
  }

  add(ch: SseChannel): void {
    this.clients.add(ch);
    ch.res.on('close', () => {
      this.clients.delete(ch);
      if (this.clients.size === 0) this.stopTimer();
    });
    // A newcomer gets the current state at once, from the shared snapshot when it is fresh.
    if (!this.timer) {
      this.refresh();
      this.timer = setInterval(() => this.tick(), this.tickMs);
      this.timer.unref();
    } else {
      ch.sendJsonText('status', this.last);
    }
  }

  /** Something changed: push within settleMs rather than at the next tick. */
  poke(): void {
    if (this.clients.size === 0 || this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      this.refresh();
    }, this.settleMs);
    this.soon.unref();
  }

  private tick(): void {
    this.sinceKeepalive += this.tickMs;
    const sent = this.refresh();
    if (!sent && this.sinceKeepalive >= this.keepaliveMs) {
      for (const c of this.clients) c.comment('keepalive');
      this.sinceKeepalive = 0;
    }
  }

  /** Builds the snapshot once; sends it to everyone if it changed. */
  private refresh(): boolean {
    const text = JSON.stringify(this.opts.build());
    const fresh = text !== this.last;
    this.last = text;
    if (fresh) {
      this.sinceKeepalive = 0;
      for (const c of this.clients) c.sendJsonText('status', text);
    }
    return fresh;
  }

  private stopTimer(): void {
    clearInterval(this.timer);
    clearTimeout(this.soon);
    this.timer = undefined;
    this.soon = undefined;
    this.last = '';
  }

  close(): void {
    this.stopTimer();
    for (const c of this.clients) c.end();
    this.clients.clear();
  }
}
