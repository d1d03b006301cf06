// Gossip of local views: this peer's health-check observations of every backend and its own
// status go to every other peer at once on every change of health or role (and, through
// `sendIfChanged`, of its status), and every `refreshMs` anyway. The latest view of each peer
// (by (startedAt, seq)) is kept with what says it is current:
//   - while the authenticated link it came over is up, it IS the peer's current view (every
//     change is sent at once over that ordered link), so it counts as fresh (age 0) unless
//     it is older than `staleAfterMs` (a peer whose link answers but whose gossip stopped);
//   - once that link is down, it ages from the moment the link went down (the peer was known
//     alive with it until then), so a lost peer's view stops counting `maxViewAgeMs` later.
// A link is dropped after four silent ping periods (transport.ts), so a hung peer's view
// stops being fresh about as soon as a resent view would have gone missing before.
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
  /** The periodic resend: only a refresh (changes go at once), so it can be slow. */
  refreshMs: number;
  /** A view older than this counts for nothing even while its link is up. */
  staleAfterMs: number;
  logger: Logger;
}

/** Emits 'view' when a peer's view says something new (health, roles, status). */
export class Gossip extends EventEmitter<{ view: [peer: string] }> {
  private readonly startedAt = Date.now();
  private seq = 0;
  /** at: arrival; onLink: it came over the link that is up now; aliveAt: when that link went down (the peer was alive with this view until then). */
  private readonly received = new Map<string, { view: PeerView; at: number; onLink: boolean; aliveAt: number }>();
  /** What the last view sent said (health, roles, status without the session count): `sendIfChanged` compares. */
  private lastSent = '';
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
    const now = Date.now();
    this.received.set(v.peer, { view: v, at: now, onLink: true, aliveAt: now });
    // Listeners re-decide on what a view says, not on its arrival: a periodic resend of the
    // same observations (or a new session count) is only freshness.
    const said = this.said(v);
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
  private readonly onUp = (peer: string) => {
    // What came over an earlier link keeps aging; the peer sends its view on this one at once.
    const r = this.received.get(peer);
    if (r) r.onLink = false;
    this.sendTo([peer]);
  };
  private readonly onDown = (peer: string) => {
    const r = this.received.get(peer);
    if (r?.onLink) {
      r.onLink = false;
      r.aliveAt = Date.now();
    }
  };

  constructor(private readonly o: GossipOptions) {
    super();
  }

  start(): void {
    this.o.transport.on('message', this.onMessage);
    this.o.transport.on('up', this.onUp);
    this.o.transport.on('down', this.onDown);
    this.o.registry.on('change', this.onChange);
    this.timer = setInterval(() => this.sendTo(), this.o.refreshMs);
    this.sendTo();
  }

  stop(): void {
    clearInterval(this.timer);
    this.o.transport.off('message', this.onMessage);
    this.o.transport.off('up', this.onUp);
    this.o.transport.off('down', this.onDown);
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

  /**
   * Sends the view now if what peers decide on (health, roles, status) differs from what was
   * last sent: the watchdog calls it every step, so status changes that no event announces
   * (isolation, JOINING → STANDBY, the proxy up or down) reach the others within a step.
   */
  sendIfChanged(): void {
    if (this.said(this.localView(false)) !== this.lastSent) this.sendSoon();
  }

  /** The latest view of every peer that sent one, this peer's own included (age 0): age 0
   * while its link is up and it is younger than `staleAfterMs`, else the time since the peer
   * was last known alive with it. */
  views(): Map<string, AgedView> {
    const now = Date.now();
    const out = new Map<string, AgedView>();
    for (const [p, r] of this.received) out.set(p, { view: r.view, ageMs: r.onLink && now - r.at <= this.o.staleAfterMs ? 0 : now - r.aliveAt });
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

  private said(v: PeerView): string {
    const { sessions: _, ...status } = v.status;
    return JSON.stringify([v.backends.map((b) => [b.health, b.role]), status]);
  }

  private sendTo(peers: readonly string[] = this.o.peers): void {
    const view = this.localView(true);
    this.lastSent = this.said(view);
    for (const p of peers) if (p !== this.o.self) this.o.transport.send(p, { v: WIRE_VERSION, kind: 'view', from: this.o.self, body: view });
  }
}
