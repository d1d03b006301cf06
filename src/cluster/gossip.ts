// Gossip of local views: this peer's health-check observations of every backend and its own
// status go to every other peer at once on every change of health or role, and every `intervalMs` anyway; the
// latest view of each peer (by (startedAt, seq)) is kept with its arrival time, so the tally
// can tell fresh views from a lost peer's.
import { EventEmitter } from 'node:events';
import type { BackendChange, BackendRegistry } from '../backends/registry.js';
import { formatLsn } from '../backends/lsn.js';
import type { Logger } from '../log.js';
import type { PeerTransport } from './transport.js';
import { isNewerView, type AgedView, type BackendView, type PeerStatus, type PeerView } from './view.js';
import { WIRE_VERSION, type Envelope } from './wire.js';

export interface GossipOptions {
  self: string;
  peers: readonly string[];
  registry: BackendRegistry;
  transport: PeerTransport;
  status: () => PeerStatus;
  intervalMs: number;
  logger: Logger;
}

/** Emits 'view' when a peer's view says something new (health, roles, status). */
export class Gossip extends EventEmitter<{ view: [peer: string] }> {
  private readonly startedAt = Date.now();
  private seq = 0;
  private readonly received = new Map<string, { view: PeerView; at: number }>();
  private readonly lastSaid = new Map<string, string>();
  private readonly since = new Map<number, { health: BackendView['health']; at: number }>();
  private timer: NodeJS.Timeout | undefined;
  private scheduled = false;
  private readonly onMessage = (env: Envelope) => {
    if (env.kind !== 'view') return;
    const v = env.body;
    if (v.peer !== env.from) return this.o.logger.warn({ from: env.from, claims: v.peer }, 'gossiped view names another peer: dropped');
    if (!this.o.peers.includes(v.peer)) return;
    const prev = this.received.get(v.peer);
    if (!isNewerView(prev?.view, v)) return;
    this.received.set(v.peer, { view: v, at: Date.now() });
    // Listeners re-decide on what a view says, not on its arrival: a periodic resend of the
    // same observations is only freshness.
    const said = JSON.stringify([v.backends.map((b) => [b.health, b.role]), v.status]);
    if (said !== this.lastSaid.get(v.peer)) {
      this.lastSaid.set(v.peer, said);
      this.emit('view', v.peer);
    }
  };
  // What a peer decides on (health, role) goes out at once; WAL positions, sampled as often as
  // every proxy.causal_sample_ms while sessions wait for causal reads, wait for the interval.
  private readonly onChange = (c: BackendChange) => {
    if (c.before.pgStatus !== c.after.pgStatus || c.before.pgRole !== c.after.pgRole) this.sendSoon();
  };
  private readonly onUp = (peer: string) => this.sendTo([peer]);

  constructor(private readonly o: GossipOptions) {
    super();
  }

  start(): void {
    this.o.transport.on('message', this.onMessage);
    this.o.transport.on('up', this.onUp);
    this.o.registry.on('change', this.onChange);
    this.timer = setInterval(() => this.sendTo(), this.o.intervalMs);
    this.sendTo();
  }

  stop(): void {
    clearInterval(this.timer);
    this.o.transport.off('message', this.onMessage);
    this.o.transport.off('up', this.onUp);
    this.o.registry.off('change', this.onChange);
  }

  /** Sends the view now (coalescing changes of the same turn), e.g. after a status change. */
  sendSoon(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.sendTo();
    });
  }

  /** The latest view of every peer that sent one, this peer's own included (age 0). */
  views(): Map<string, AgedView> {
    const now = Date.now();
    const out = new Map<string, AgedView>();
    for (const [p, r] of this.received) out.set(p, { view: r.view, ageMs: now - r.at });
    out.set(this.o.self, { view: this.localView(false), ageMs: 0 });
    return out;
  }

  private localView(next: boolean): PeerView {
    const now = Date.now();
    const backends = this.o.registry.list().map((b): BackendView => {
      const prev = this.since.get(b.id);
      if (!prev || prev.health !== b.pgStatus) this.since.set(b.id, { health: b.pgStatus, at: now });
      return { id: b.id, health: b.pgStatus, role: b.pgRole, lsn: b.lsn === null ? null : formatLsn(b.lsn), since: this.since.get(b.id)!.at };
    });
    return { peer: this.o.self, seq: next ? ++this.seq : this.seq, startedAt: this.startedAt, backends, status: this.o.status() };
  }

  private sendTo(peers: readonly string[] = this.o.peers): void {
    const view = this.localView(true);
    for (const p of peers) if (p !== this.o.self) this.o.transport.send(p, { v: WIRE_VERSION, kind: 'view', from: this.o.self, body: view });
  }
}
