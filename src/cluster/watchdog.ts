// The watchdog of one peer (two or more `watchdog.peers`): the transport, the Raft runtime
// with the replicated cluster state, gossip of local views, and one loop that every tick
// tallies the views (tally.ts), runs the coordinator step (coordinator.ts, acting only on the
// leader with its lease), the VIP rules (vip-runner.ts) and the isolation rule (vip.ts), and
// keeps this peer's routing on the replicated state.
//
// Routing: the local registry's decided status/role follow the replicated state on every
// peer, with one local overlay: a backend only this peer sees down is `quarantine` here.
// What must pause or refuse traffic without changing a backend's state goes into the
// registry's routing gates (SHOW POOL_NODES and the failover engine keep the decided
// status; no session is ended for it):
//   - `held`: the backends of every open failover record, on every peer (the runner
//     included), until FailoverFinished commits or interlock_timeout_ms passes (interlock.ts);
//   - `refuseWrites`: a peer cut off longer than the lease with `isolated_writes: refuse`
//     answers writes with an error naming the reason, so it cannot write to a deposed
//     primary; reads keep going (vip.ts isolation).
// The failover engine runs its requests only on the coordinator; its decisions reach the
// state through RaftDecisions (Raft proposals), and so reach every peer's routing the same way.
import type { BackendRegistry, BackendStatus, RoutingGates } from '../backends/registry.js';
import { packageVersion } from '../version.js';
import type { Config } from '../config/index.js';
import type { FailoverEngine } from '../failover/index.js';
import type { Logger } from '../log.js';
import { DiskStorage } from '../raft/index.js';
import { join } from 'node:path';
import { Coordinator } from './coordinator.js';
import { FaultyTransport, followFaultFile } from './fault-transport.js';
import { Gossip } from './gossip.js';
import { interlock } from './interlock.js';
import { RaftDecisions } from './raft-decisions.js';
import { RaftRuntime, type RaftRuntimeStatus } from './raft-runtime.js';
import { ReplicatedState } from './replicated-state.js';
import { openFailovers, type ClusterCommand, type ClusterState } from './state.js';
import { tally } from './tally.js';
import { WsTransport, type PeerTransport } from './transport.js';
import type { PeerState, PeerStatus } from './view.js';
import { isolation, type IsolationVerdict } from './vip.js';
import { VipRunner } from './vip-runner.js';

export interface WatchdogOptions {
  config: Config;
  registry: BackendRegistry;
  logger: Logger;
  /** Sessions open on this peer's proxy, for the gossiped status. */
  sessions: () => number;
  proxyUp: () => boolean;
  /** Where this peer's proxy listens, once it does. */
  proxyAddress: () => { host: string; port: number } | null;
}

type WatchdogPeerConfig = Config['watchdog']['peers'][number];

/** A peer's admin API base URL: its `admin_url`, else its watchdog host on this config's admin port. */
export function peerAdminUrl(config: Pick<Config, 'admin'>, p: WatchdogPeerConfig): string {
  return p.admin_url ?? `http://${p.host.includes(':') ? `[${p.host}]` : p.host}:${config.admin.port}`;
}

/** True when the config asks for a watchdog cluster (two or more peers); one peer keeps single-peer behaviour. */
export function watchdogEnabled(config: Config): boolean {
  return config.watchdog.peers.length >= 2;
}

export class Watchdog {
  readonly self: string;
  readonly transport: PeerTransport;
  readonly state: ReplicatedState;
  readonly runtime: RaftRuntime<ClusterCommand, ClusterState>;
  readonly decisions: RaftDecisions;
  readonly gossip: Gossip;
  private readonly wsTransport: WsTransport;
  readonly vip: VipRunner | undefined;
  private coordinator: Coordinator | undefined;
  private readonly log: Logger;
  private readonly peers: string[];
  private readonly quarantined = new Set<number>();
  private iso: IsolationVerdict = { isolated: false, refuseWrites: false, reason: 'starting' };
  private lastIso = '';
  private lastHold = '';
  /** Why writes are refused, fixed when refusing starts (the verdict's own reason counts milliseconds and changes as the peer rejoins). */
  private refuseReason = '';
  private loop: NodeJS.Timeout | undefined;
  private stopFaults: (() => void) | undefined;
  private stopping = false;
  private stepScheduled = false;
  /** A peer whose latest view is older than this is lost. */
  readonly maxViewAgeMs: number;
  private readonly isolateAfterMs: number;

  constructor(private readonly o: WatchdogOptions) {
    const wd = o.config.watchdog;
    const name = wd.name;
    if (!name) throw new Error('watchdog: watchdog.name (or --name) must say which of watchdog.peers this peer is');
    this.self = name;
    this.log = o.logger;
    this.peers = wd.peers.map((p) => p.name);
    // Changes are gossiped at once over ordered, authenticated links, and a view counts as
    // current while its link is up (gossip.ts): the periodic resend is only a slow refresh.
    const refreshMs = 10 * Math.max(wd.tick_ms * 10, 500);
    // A lost peer's view counts for nothing this long after its link went down (the link
    // itself goes down after four silent ping periods, about one second by default): about
    // as soon as the old rule (three 1 s gossip rounds since the last view) noticed.
    this.maxViewAgeMs = 2 * Math.max(wd.tick_ms * 10, 500) + wd.tick_ms;
    // The lease: the majority cannot elect a new coordinator (and fail anything over) sooner.
    this.isolateAfterMs = (wd.election_timeout_ticks - 1) * wd.tick_ms;
    this.wsTransport = new WsTransport({ self: name, peers: wd.peers, authKey: wd.auth_key ?? '', tls: wd.tls, logger: o.logger.child({ part: 'transport' }), pingIntervalMs: Math.max(200, Math.round((wd.tick_ms * wd.election_timeout_ticks) / 4)) });
    const faults = process.env.PGWATCHDOG_FAULTS_FILE;
    if (faults) {
      const ft = new FaultyTransport(this.wsTransport);
      this.stopFaults = followFaultFile(ft, faults, o.logger.child({ part: 'faults' }));
      this.transport = ft;
    } else {
      this.transport = this.wsTransport;
    }
    this.state = new ReplicatedState(o.config, o.logger.child({ part: 'state' }));
    const dataDir = wd.data_dir || join(process.cwd(), `pgwatchdog-raft-${name}`);
    this.runtime = new RaftRuntime<ClusterCommand, ClusterState>({
      self: name,
      peers: wd.peers.map((p) => ({ name: p.name, priority: p.priority })),
      tickMs: wd.tick_ms,
      electionTicks: wd.election_timeout_ticks,
      heartbeatTicks: wd.heartbeat_ticks,
      openStorage: () => new DiskStorage<ClusterCommand, ClusterState>(dataDir),
      transport: this.transport,
      machine: this.state,
      logger: o.logger.child({ part: 'raft' }),
      // A new leader's first entry carries its VIP claim: one commit round instead of two.
      firstEntry: (term) => (this.vip?.claimInFirstEntry(term, this.stopping) ? { type: 'vip', peer: name, at: Date.now(), holding: true } : null),
      isHealthy: (p) => {
        const v = this.gossip.views().get(p);
        return v !== undefined && v.ageMs <= this.maxViewAgeMs && v.view.status.proxyUp && v.view.status.state !== 'SHUTDOWN';
      },
    });
    this.decisions = new RaftDecisions(name, this.runtime, () => this.state.state);
    this.gossip = new Gossip({ self: name, peers: this.peers, registry: o.registry, transport: this.transport, status: () => this.peerStatus(), refreshMs, staleAfterMs: 3 * refreshMs + wd.tick_ms, logger: o.logger.child({ part: 'gossip' }) });
    this.vip = wd.vip
      ? new VipRunner(wd.vip, wd.trusted_servers, o.logger.child({ part: 'vip' }), (holding) => this.runtime.propose({ type: 'vip', peer: name, at: Date.now(), holding }))
      : undefined;
    this.state.on('change', () => this.route());
  }

  /** The failover engine (built with this watchdog's `decisions`) runs its requests only on the coordinator. */
  attachEngine(engine: FailoverEngine): void {
    this.coordinator = new Coordinator({ self: this.self, config: this.o.config, runtime: this.runtime, engine, decisions: this.decisions, state: () => this.state.state, logger: this.log.child({ part: 'coordinator' }) });
  }

  async start(): Promise<void> {
    await this.vip?.dropIfHeld();
    await this.wsTransport.start();
    this.runtime.start();
    this.gossip.start();
    this.vip?.startProbing();
    this.runtime.on('status', () => {
      this.gossip.sendSoon();
      this.stepSoon();
    });
    this.gossip.on('view', () => this.stepSoon());
    this.state.on('change', () => this.stepSoon());
    // Changes step the loop at once (above; a lost lease is a Raft status change too); the
    // timer covers what only time changes (isolation after the lease, interlock timeouts,
    // views growing stale, maintenance). Half a second is well inside the margins those
    // rules keep (decide.ts waits a whole view age before trusting a silent peer stopped).
    this.loop = setInterval(() => this.step(this.runtime.status()), Math.max(5 * this.o.config.watchdog.tick_ms, 500));
    this.route();
    this.log.info({ self: this.self, peers: this.peers, isolateAfterMs: this.isolateAfterMs, maxViewAgeMs: this.maxViewAgeMs }, 'watchdog started');
  }

  /** A planned stop: drop the VIP, hand leadership over, then leave. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.loop);
    this.gossip.sendSoon();
    if (this.vip?.holding) await this.vip.deEscalate('shutting down', this.runtime.status().role === 'leader');
    this.vip?.stopProbing();
    const wd = this.o.config.watchdog;
    await this.runtime.handOver(2 * wd.election_timeout_ticks * wd.tick_ms);
    this.gossip.stop();
    this.runtime.stop();
    this.stopFaults?.();
    await this.transport.close();
    this.log.info('watchdog stopped');
  }

  /** Online restart: when the process this one takes over from was last joined to a majority (epoch ms; see vip.ts isolation). */
  private inheritedContactAt: number | null = null;

  inheritContact(at: number | null): void {
    this.inheritedContactAt = at;
  }

  /** When this peer last knew itself joined to a majority (epoch ms), or null: for a successor process (inheritContact). */
  lastContactAt(): number | null {
    const since = this.runtime.status().sinceContactMs;
    return since === null ? null : Date.now() - since;
  }

  /** The Raft term, for %T (the engine reads it through `decisions`). */
  status(): { raft: RaftRuntimeStatus; state: ClusterState; isolation: IsolationVerdict; peerState: PeerState } {
    return { raft: this.runtime.status(), state: this.state.state, isolation: this.iso, peerState: this.peerState() };
  }

  // ---- the loop --------------------------------------------------------------------------

  private stepSoon(): void {
    if (this.stepScheduled) return;
    this.stepScheduled = true;
    setImmediate(() => {
      this.stepScheduled = false;
      this.step(this.runtime.status());
    });
  }

  private step(raft: RaftRuntimeStatus): void {
    if (this.stopping) return;
    const wd = this.o.config.watchdog;
    const views = this.gossip.views();
    const s = this.state.state;
    const t = tally({
      self: this.self,
      peers: this.peers,
      views,
      maxViewAgeMs: this.maxViewAgeMs,
      requireConsensus: wd.require_consensus,
      failoverWhenQuorumExists: wd.failover_when_quorum_exists,
      state: s,
      quarantined: this.quarantined,
    });
    let quarantineChanged = false;
    for (const b of t) {
      if (b.action === 'quarantine' && !this.quarantined.has(b.id)) {
        this.quarantined.add(b.id);
        quarantineChanged = true;
        this.log.warn({ backend: b.id }, `local quarantine: ${b.reason}`);
      } else if (b.action === 'lift-quarantine' && this.quarantined.delete(b.id)) {
        quarantineChanged = true;
        this.log.info({ backend: b.id }, `local quarantine lifted: ${b.reason}`);
      }
    }
    this.iso = isolation({
      self: this.self,
      peers: this.peers,
      views,
      maxViewAgeMs: this.maxViewAgeMs,
      raft,
      sinceContactMs: raft.sinceContactMs,
      inheritedContactMs: this.inheritedContactAt === null ? null : Date.now() - this.inheritedContactAt,
      isolateAfterMs: this.isolateAfterMs,
      refusing: this.iso.refuseWrites,
      mode: wd.isolated_writes,
      now: Date.now(),
    });
    const isoKey = `${this.iso.isolated}|${this.iso.refuseWrites}|${this.iso.holdWritesUntil !== undefined}`;
    if (isoKey !== this.lastIso) {
      this.log[this.iso.isolated ? 'warn' : 'info']({ isolated: this.iso.isolated, refuseWrites: this.iso.refuseWrites }, `isolation: ${this.iso.reason}`);
      this.lastIso = isoKey;
      // The reason clients read is the one that started the refusal; it stays while the peer
      // rejoins (no leader yet, log still applying), so it does not flap under them.
      if (!this.iso.refuseWrites) this.refuseReason = '';
      else if (this.refuseReason === '') this.refuseReason = this.iso.reason;
      quarantineChanged = true;
    }
    // This peer's state shown to the others (isolation, JOINING → STANDBY) changes here too.
    this.gossip.sendIfChanged();
    // The interlock's timeout passes with time alone: re-route while a record is open.
    if (quarantineChanged || openFailovers(s).length > 0) this.route();
    this.coordinator?.step({
      self: this.self,
      selfPriority: wd.peers.find((p) => p.name === this.self)?.priority ?? 0,
      peers: this.peers,
      raft,
      state: s,
      tally: t,
      views,
      maxViewAgeMs: this.maxViewAgeMs,
      silentPeerSafeAfterMs: this.isolateAfterMs + this.maxViewAgeMs,
      failoverAllowed: this.o.config.backends.map((b) => b.failover === 'allow'),
    });
    this.vip?.step({ self: this.self, claim: s.vipHolder, raft, shuttingDown: this.stopping });
  }

  /** Puts the replicated state (with this peer's quarantine) and the routing gates into the local registry (the proxy routes by it). */
  private route(): void {
    const s = this.state.state;
    const hold = interlock(s, Date.now(), this.o.config.watchdog.interlock_timeout_ms);
    if (hold.reason !== this.lastHold) {
      this.log.info({ held: hold.held }, `interlock: ${hold.reason}`);
      this.lastHold = hold.reason;
    }
    for (const b of s.backends) {
      let status: BackendStatus = b.status;
      let why = `cluster state (entry ${b.lastChange.index}): ${b.lastChange.reason}`;
      if (status === 'up' && this.quarantined.has(b.id)) {
        status = 'quarantine';
        why = 'local quarantine: only this peer sees it down';
      }
      this.o.registry.update(b.id, { status, role: b.role }, why);
    }
    const held = hold.held.map((id) => {
      const mine = hold.holds.filter((h) => h.ids.includes(id));
      return { id, reason: mine.map((h) => h.reason).join('; '), untilMs: Math.max(...mine.map((h) => h.until)) };
    });
    // A successor process joining after an online restart holds writes (the primary) until it has joined.
    const until = this.iso.holdWritesUntil;
    if (until !== undefined) for (const b of s.backends) if (b.role === 'primary' && !held.some((h) => h.id === b.id)) held.push({ id: b.id, reason: this.iso.reason, untilMs: until });
    const gates: RoutingGates = {
      held,
      refuseWrites: this.iso.refuseWrites ? this.refuseReason : null,
    };
    const before = this.o.registry.gates();
    const why = `watchdog: ${hold.reason}; ${this.iso.refuseWrites ? `writes refused: ${this.refuseReason}` : 'writes routed'}`;
    this.o.registry.setGates(gates, why);
    if (this.o.registry.gates() !== before) this.log.info({ held: gates.held.map((h) => h.id), refuseWrites: gates.refuseWrites }, `routing gates: ${why}`);
  }

  private peerState(): PeerState {
    if (this.stopping) return 'SHUTDOWN';
    const r = this.runtime.status();
    if (r.role === 'leader' && r.hasLease) return 'LEADER';
    if (this.iso.isolated && r.sinceContactMs !== null) return 'NETWORK ISOLATION';
    if (r.sinceContactMs === null || r.applied < r.commit) return 'JOINING';
    return 'STANDBY';
  }

  private peerStatus(): PeerStatus {
    const me = this.o.config.watchdog.peers.find((p) => p.name === this.self);
    const addr = this.o.proxyAddress();
    // A wildcard listen address is no address to reach: the peer's watchdog host is.
    const wildcard = addr !== null && (addr.host === '0.0.0.0' || addr.host === '::' || addr.host === '');
    return {
      proxyUp: this.o.proxyUp(),
      sessions: this.o.sessions(),
      version: packageVersion(),
      priority: me?.priority ?? 0,
      state: this.peerState(),
      proxy: addr === null ? null : { host: wildcard && me ? me.host : addr.host, port: addr.port },
      adminUrl: me ? peerAdminUrl(this.o.config, me) : null,
    };
  }
}
