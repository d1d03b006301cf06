// Prometheus metrics (GET /metrics), with prom-client on a registry of our own (not the
// library's global one, so two peers in one test process never mix). Gauges read one
// AdminSnapshot at scrape time; counters and the duration histogram follow events (failover
// results, backends entering quarantine) because a scrape cannot see what happened between
// two scrapes. Watchdog facts come through the WatchdogView: a standalone peer reports term
// and commit 0, no peers but itself and no VIP holder.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BackendChange } from '../backends/registry.js';
import type { FailoverResult } from '../failover/index.js';
import type { AdminSnapshot } from './views.js';
import type { PeerState } from './watchdog-view.js';

const STATUSES = ['up', 'down', 'quarantine', 'waiting', 'unused'] as const;
const ROLES = ['primary', 'standby', 'unknown'] as const;
const PEER_STATES: PeerState[] = ['coordinator', 'standby', 'candidate', 'joining', 'isolated', 'lost', 'shutdown', 'standalone'];

export interface Metrics {
  readonly contentType: string;
  render(): Promise<string>;
  /** Feed a finished failover request (the engine's 'result' event). */
  failoverFinished(r: FailoverResult): void;
  /** Feed a registry change (counts entries into quarantine). */
  backendChanged(c: BackendChange): void;
}

export function createMetrics(snapshot: () => AdminSnapshot): Metrics {
  const register = new Registry();
  // The event-loop lag histogram samples on a timer: prom-client's default (every 10 ms) woke an
  // idle peer 100 times a second for that alone. Every 100 ms still records any stall long
  // enough to matter here (the watchdog ticks every 100 ms).
  collectDefaultMetrics({ register, eventLoopMonitoringPrecision: 100 });
  // One snapshot per scrape, shared by every gauge's collect (they run one after another).
  let current: AdminSnapshot | undefined;
  const snap = (): AdminSnapshot => (current ??= snapshot());
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (g: Gauge<L>, s: AdminSnapshot) => void) =>
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [register],
      collect() {
        this.reset();
        fill(this, snap());
      },
    });
  const backendLabels = ['backend', 'name'] as const;
  const bl = (b: { id: number; name: string }) => ({ backend: String(b.id), name: b.name });

  gauge('pgwatchdog_backend_up', 'Whether the backend is attached and routable (status up): 1 or 0.', backendLabels, (g, s) => {
    for (const b of s.backends) g.set(bl(b), b.status === 'up' ? 1 : 0);
  });
  gauge('pgwatchdog_backend_status', "The backend's decided status (pgpool's status): 1 for the current one.", [...backendLabels, 'status'], (g, s) => {
    for (const b of s.backends) for (const st of STATUSES) g.set({ ...bl(b), status: st }, b.status === st ? 1 : 0);
  });
  gauge('pgwatchdog_backend_role', "The backend's decided role: 1 for the current one.", [...backendLabels, 'role'], (g, s) => {
    for (const b of s.backends) for (const r of ROLES) g.set({ ...bl(b), role: r }, b.role === r ? 1 : 0);
  });
  gauge('pgwatchdog_backend_health_check_up', "The last health check's result (pgpool's pg_status): 1 up, 0 otherwise.", backendLabels, (g, s) => {
    for (const b of s.backends) g.set(bl(b), b.pgStatus === 'up' ? 1 : 0);
  });
  gauge('pgwatchdog_backend_replication_lag_bytes', 'Replay lag of a standby behind the primary, in bytes (0 for the primary; absent while unknown).', backendLabels, (g, s) => {
    for (const b of s.backends) {
      const v = b.role === 'primary' ? 0 : b.lagBytes;
      if (v !== null) g.set(bl(b), v);
    }
  });
  gauge('pgwatchdog_backend_replication_lag_seconds', 'Replay lag of a standby behind the primary, in seconds (0 for the primary; absent while unknown).', backendLabels, (g, s) => {
    for (const b of s.backends) {
      const v = b.role === 'primary' ? 0 : b.lagMs;
      if (v !== null) g.set(bl(b), v / 1000);
    }
  });
  gauge('pgwatchdog_backend_lsn_bytes', 'WAL position as a byte offset: current LSN on a primary, last replayed LSN on a standby.', backendLabels, (g, s) => {
    for (const b of s.backends) if (b.lsn !== null) g.set(bl(b), Number(b.lsn));
  });
  gauge('pgwatchdog_backend_receive_lsn_bytes', 'Last WAL position a standby received, as a byte offset.', backendLabels, (g, s) => {
    for (const b of s.backends) if (b.receiveLsn !== null) g.set(bl(b), Number(b.receiveLsn));
  });
  gauge('pgwatchdog_backend_weight', "The backend's load-balance weight as configured.", backendLabels, (g, s) => {
    for (const b of s.backends) g.set(bl(b), b.weight);
  });
  gauge('pgwatchdog_pool_connections', 'Pooled backend connections of this peer, by state (in_use by a session, idle in the pool).', [...backendLabels, 'state'], (g, s) => {
    for (const b of s.backends) {
      const p = s.proxy.pools[b.id];
      g.set({ ...bl(b), state: 'in_use' }, p?.inUse ?? 0);
      g.set({ ...bl(b), state: 'idle' }, p?.idle ?? 0);
    }
  });
  gauge('pgwatchdog_pool_waiting_sessions', 'Sessions waiting for a pooled connection to the backend (the pool is at max_per_backend).', backendLabels, (g, s) => {
    for (const b of s.backends) g.set(bl(b), s.proxy.pools[b.id]?.waiting ?? 0);
  });
  gauge('pgwatchdog_client_sessions', 'Client sessions connected to this peer, by state (active: in a query or transaction).', ['state'], (g, s) => {
    g.set({ state: 'active' }, s.proxy.clients.active);
    g.set({ state: 'idle' }, s.proxy.clients.idle);
  });
  gauge('pgwatchdog_client_sessions_native', 'Client sessions whose bytes native forwarding moves now.', [], (g, s) => {
    g.set(s.proxy.clients.native);
  });
  // select_cnt only grows: a counter in Prometheus terms, read from the proxy at scrape time.
  new Counter({
    name: 'pgwatchdog_backend_reads_routed_total',
    help: "Statements this peer routed to the backend as reads (pgpool's select_cnt).",
    labelNames: backendLabels,
    registers: [register],
    collect() {
      const s = snap();
      this.reset();
      for (const b of s.backends) this.inc(bl(b), s.proxy.selectCounts[b.id] ?? 0);
    },
  });

  const failovers = new Counter({
    name: 'pgwatchdog_failovers_total',
    help: 'Failover requests this peer ran (node_down, node_up, promote, close_idle), by result.',
    labelNames: ['kind', 'result'] as const,
    registers: [register],
  });
  const duration = new Histogram({
    name: 'pgwatchdog_failover_duration_seconds',
    help: 'How long failover requests took from start to their last step.',
    labelNames: ['kind'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [register],
  });
  const quarantines = new Counter({
    name: 'pgwatchdog_quarantines_total',
    help: 'Times a backend was quarantined (detached locally without consensus).',
    labelNames: backendLabels,
    registers: [register],
  });
  gauge('pgwatchdog_failover_active', 'Whether a failover request runs now: 1 or 0.', [], (g, s) => g.set(s.failover.active ? 1 : 0));
  gauge('pgwatchdog_failover_queue_length', 'Failover requests waiting behind the active one.', [], (g, s) => g.set(s.failover.queue.length));

  gauge('pgwatchdog_raft_term', 'Current Raft term as this peer knows it (0 without a watchdog).', [], (g, s) => g.set(s.watchdog.raft.term));
  gauge('pgwatchdog_raft_commit_index', 'Raft commit index on this peer (0 without a watchdog).', [], (g, s) => g.set(s.watchdog.raft.commitIndex));
  gauge('pgwatchdog_raft_applied_index', 'Raft index applied to the cluster state on this peer (0 without a watchdog).', [], (g, s) => g.set(s.watchdog.raft.appliedIndex));
  gauge('pgwatchdog_raft_leader', 'Whether this peer is the Raft leader: 1 or 0.', [], (g, s) => g.set(s.watchdog.raft.leader !== null && s.watchdog.raft.leader === s.watchdog.self ? 1 : 0));
  gauge('pgwatchdog_coordinator', 'Whether this peer is the coordinator (a standalone peer is its own): 1 or 0.', [], (g, s) => g.set(s.watchdog.coordinator === s.watchdog.self ? 1 : 0));
  gauge('pgwatchdog_quorum', 'Whether this peer sees a quorum of peers: 1 or 0.', [], (g, s) => g.set(s.watchdog.quorum.present ? 1 : 0));
  gauge('pgwatchdog_watchdog_peers_alive', 'Peers this peer sees alive, itself included.', [], (g, s) => g.set(s.watchdog.quorum.alive));
  gauge('pgwatchdog_watchdog_peer_state', "Each peer's state as this peer sees it: 1 for the current one.", ['peer', 'state'], (g, s) => {
    for (const p of s.watchdog.peers) for (const st of PEER_STATES) g.set({ peer: p.name, state: st }, p.state === st ? 1 : 0);
  });
  gauge('pgwatchdog_watchdog_peer_last_seen_seconds', 'Seconds since this peer last heard from each other peer (absent for itself and never-seen peers).', ['peer'], (g, s) => {
    const now = Date.parse(s.now);
    for (const p of s.watchdog.peers) if (p.lastSeen !== null) g.set({ peer: p.name }, Math.max(0, (now - Date.parse(p.lastSeen)) / 1000));
  });
  gauge('pgwatchdog_vip_holder', 'Which peer holds the virtual IP as this peer knows it: 1 for the holder (absent when none holds it).', ['peer', 'address'], (g, s) => {
    const v = s.watchdog.vip;
    if (v.holder !== null && v.address !== null) g.set({ peer: v.holder, address: v.address }, 1);
  });
  // The view reports running totals; a Counter can only grow, so add what is new since the last scrape.
  const runningTotal = (name: string, help: string, read: (s: AdminSnapshot) => number) => {
    let seen = 0;
    new Counter({
      name,
      help,
      registers: [register],
      collect() {
        const n = read(snap());
        if (n > seen) this.inc(n - seen);
        seen = Math.max(seen, n);
      },
    });
  };
  runningTotal('pgwatchdog_vip_escalations_total', 'VIP escalations (the escalation command run) on this peer.', (s) => s.watchdog.escalations);
  runningTotal('pgwatchdog_vip_de_escalations_total', 'VIP de-escalations (the de-escalation command run) on this peer.', (s) => s.watchdog.deEscalations);
  gauge('pgwatchdog_info', 'Constant 1, labelled with the version and this peer.', ['version', 'peer'], (g, s) => g.set({ version: s.version, peer: s.watchdog.self }, 1));

  return {
    contentType: register.contentType,
    async render() {
      current = undefined;
      try {
        // prom-client writes NaN as "Nan", which Prometheus refuses; the event-loop lag
        // gauges are NaN when no lag sample came since the last scrape (two scrapes within
        // one sampling interval, or one right after start).
        return (await register.metrics()).replace(/ Nan$/gm, ' NaN');
      } finally {
        current = undefined;
      }
    },
    failoverFinished(r) {
      failovers.inc({ kind: r.kind, result: r.ok ? 'ok' : 'failed' });
      duration.observe({ kind: r.kind }, r.durationMs / 1000);
    },
    backendChanged(c) {
      if (c.after.status === 'quarantine' && c.before.status !== 'quarantine') quarantines.inc(bl(c.after));
    },
  };
}
