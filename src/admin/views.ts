// The admin API's JSON views, as src/proxy/show.ts is for SQL: pure functions from one
// snapshot of what the peer knows (`AdminSnapshot`) to the bodies the API answers with. No
// I/O here, so every field can be tested without a server, and the CLI, the dashboard and
// the health endpoints all read the same shapes.
import type { BackendState } from '../backends/registry.js';
import { formatLsn } from '../backends/lsn.js';
import type { FailoverResult, FailoverStatus } from '../failover/index.js';
import type { ProxyStats } from '../proxy/index.js';
import type { WatchdogNode } from '../proxy/show.js';
import { statusName, type WatchdogFacts, type WatchdogPeerFacts } from './watchdog-view.js';

/** Everything the views read, gathered once per request (server.ts `snapshot()`). */
export interface AdminSnapshot {
  version: string;
  startedAt: string;
  now: string;
  /** Is this peer's proxy accepting connections? */
  proxyListening: boolean;
  proxy: ProxyStats;
  backends: readonly Readonly<BackendState>[];
  failover: FailoverStatus;
  watchdog: WatchdogFacts;
}

export interface BackendView {
  id: number;
  name: string;
  host: string;
  port: number;
  status: BackendState['status'];
  pgStatus: BackendState['pgStatus'];
  role: BackendState['role'];
  pgRole: BackendState['pgRole'];
  weight: number;
  /** The node's share of the total weight (pgpool's lb_weight), 0..1. */
  lbWeight: number;
  /** Current LSN on a primary, last replayed LSN on a standby ("0/3000060"). */
  lsn: string | null;
  receiveLsn: string | null;
  lagBytes: number | null;
  lagMs: number | null;
  replicationState: string;
  syncState: string;
  lastStatusChange: string;
  /** Backend connections in use by client sessions now. */
  sessions: number;
  pool: { total: number; inUse: number; idle: number; waiting: number };
  /** Statements this peer routed to it as reads (pgpool's select_cnt). */
  readsRouted: number;
}

export function backendsView(s: AdminSnapshot): BackendView[] {
  let total = 0;
  for (const b of s.backends) if (b.weight > 0) total += b.weight;
  return s.backends.map((b) => {
    const pool = s.proxy.pools[b.id] ?? { total: 0, inUse: 0, idle: 0, waiting: 0 };
    return {
      id: b.id,
      name: b.name,
      host: b.host,
      port: b.port,
      status: b.status,
      pgStatus: b.pgStatus,
      role: b.role,
      pgRole: b.pgRole,
      weight: b.weight,
      lbWeight: total > 0 && b.weight > 0 ? b.weight / total : 0,
      lsn: b.lsn === null ? null : formatLsn(b.lsn),
      receiveLsn: b.receiveLsn === null ? null : formatLsn(b.receiveLsn),
      lagBytes: b.role === 'primary' ? 0 : b.lagBytes,
      lagMs: b.role === 'primary' ? 0 : b.lagMs,
      replicationState: b.role === 'primary' ? '' : b.replicationState,
      syncState: b.role === 'primary' ? '' : b.syncState,
      lastStatusChange: b.lastStatusChange.toISOString(),
      sessions: pool.inUse,
      pool: { total: pool.total, inUse: pool.inUse, idle: pool.idle, waiting: pool.waiting },
      readsRouted: s.proxy.selectCounts[b.id] ?? 0,
    };
  });
}

/** The per-node fields of pgpool's pcp_watchdog_info, as text: SHOW WATCHDOG_NODES prints
 * them and `pgwatchdog watchdog` shows the same. */
export function watchdogNodes(w: WatchdogFacts): WatchdogNode[] {
  return w.peers.map((p, i) => ({
    node_id: String(i),
    node_name: p.name,
    hostname: p.host,
    pgpool_port: p.proxyPort === null ? '' : String(p.proxyPort),
    watchdog_port: p.watchdogPort === null ? '' : String(p.watchdogPort),
    priority: String(p.priority),
    status_name: statusName(p.state),
    membership: p.state === 'shutdown' ? 'NOT-MEMBER' : 'MEMBER',
    is_coordinator: p.coordinator ? 'true' : 'false',
    delegate_ip: w.vip.address ?? '',
    vip_holder: p.vipHolder ? 'true' : 'false',
    last_seen: p.lastSeen ?? '',
    is_local: p.self ? 'true' : 'false',
  }));
}

/** pcp_watchdog_info's cluster section. */
export interface WatchdogInfo {
  totalNodes: number;
  remoteNodes: number;
  aliveRemoteNodes: number;
  nodesRequiredForQuorum: number;
  quorumState: 'QUORUM EXIST' | 'QUORUM ABSENT';
  localNodeEscalation: boolean;
  leaderNodeName: string | null;
  leaderHostName: string | null;
}

export interface PeersView {
  self: string;
  mode: WatchdogFacts['mode'];
  state: WatchdogFacts['state'];
  coordinator: string | null;
  vip: WatchdogFacts['vip'];
  quorum: WatchdogFacts['quorum'];
  raft: WatchdogFacts['raft'];
  escalations: number;
  deEscalations: number;
  info: WatchdogInfo;
  peers: WatchdogPeerFacts[];
  nodes: WatchdogNode[];
}

export function peersView(s: AdminSnapshot): PeersView {
  const w = s.watchdog;
  const leader = w.peers.find((p) => p.name === w.coordinator);
  const remote = w.peers.filter((p) => !p.self);
  return {
    self: w.self,
    mode: w.mode,
    state: w.state,
    coordinator: w.coordinator,
    vip: w.vip,
    quorum: w.quorum,
    raft: w.raft,
    escalations: w.escalations,
    deEscalations: w.deEscalations,
    info: {
      totalNodes: w.peers.length,
      remoteNodes: remote.length,
      aliveRemoteNodes: remote.filter((p) => p.state !== 'lost' && p.state !== 'shutdown').length,
      nodesRequiredForQuorum: w.quorum.required,
      quorumState: w.quorum.present ? 'QUORUM EXIST' : 'QUORUM ABSENT',
      localNodeEscalation: w.vip.holder !== null && w.vip.holder === w.self,
      leaderNodeName: w.coordinator,
      leaderHostName: leader?.host ?? null,
    },
    peers: w.peers,
    nodes: watchdogNodes(w),
  };
}

export interface FailoverView {
  seq: number;
  kind: FailoverResult['kind'];
  nodes: number[];
  term: number;
  /** The peer whose engine ran it. */
  ranBy: string;
  reason: string;
  switchover: boolean;
  ok: boolean;
  result: string;
  oldPrimary: number | null;
  newPrimary: number | null;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  toNewPrimaryMs: number | null;
  steps: { name: string; backend: number | null; ok: boolean; ms: number; detail: string }[];
}

export function failoverView(r: FailoverResult, ranBy: string): FailoverView {
  return {
    seq: r.seq,
    kind: r.kind,
    nodes: r.ids,
    term: r.term,
    ranBy,
    reason: r.reason,
    switchover: r.switchover,
    ok: r.ok,
    result: r.summary,
    oldPrimary: r.oldPrimary,
    newPrimary: r.newPrimary,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    durationMs: r.durationMs,
    toNewPrimaryMs: r.toNewPrimaryMs,
    steps: r.steps.map((st) => ({ name: st.name, backend: st.backend ?? null, ok: st.ok, ms: st.ms, detail: st.detail })),
  };
}

export interface FailoversView {
  /** Newest first. */
  history: FailoverView[];
  active: FailoverStatus['active'];
  queue: FailoverStatus['queue'];
}

export function failoversView(s: AdminSnapshot, limit = Infinity): FailoversView {
  const history = s.failover.history.slice(-Math.min(limit, s.failover.history.length || 1)).reverse();
  return { history: history.map((r) => failoverView(r, s.watchdog.self)), active: s.failover.active, queue: s.failover.queue };
}

export interface StatusView {
  version: string;
  startedAt: string;
  now: string;
  peer: { name: string; state: WatchdogFacts['state']; coordinator: boolean; proxyListening: boolean };
  coordinator: string | null;
  vip: WatchdogFacts['vip'];
  quorum: WatchdogFacts['quorum'];
  raft: WatchdogFacts['raft'];
  clients: ProxyStats['clients'];
  primary: number | null;
  backends: BackendView[];
  peers: WatchdogPeerFacts[];
  failover: { active: FailoverStatus['active']; queued: number; last: FailoverView | null };
}

export function statusView(s: AdminSnapshot): StatusView {
  const w = s.watchdog;
  const last = s.failover.history.at(-1);
  return {
    version: s.version,
    startedAt: s.startedAt,
    now: s.now,
    peer: { name: w.self, state: w.state, coordinator: w.coordinator === w.self, proxyListening: s.proxyListening },
    coordinator: w.coordinator,
    vip: w.vip,
    quorum: w.quorum,
    raft: w.raft,
    clients: s.proxy.clients,
    primary: s.backends.find((b) => b.status === 'up' && b.role === 'primary')?.id ?? null,
    backends: backendsView(s),
    peers: w.peers,
    failover: { active: s.failover.active, queued: s.failover.queue.length, last: last ? failoverView(last, w.self) : null },
  };
}

// ---- load-balancer / keepalived checks (Patroni's semantics, for a proxy peer) ----------------

export type CheckName = 'health' | 'coordinator' | 'primary' | 'replica' | 'readiness' | 'liveness';

export interface CheckAnswer {
  status: 200 | 503;
  body: { ok: boolean; check: CheckName; peer: string; reason: string; [k: string]: unknown };
}

/** Operators write Patroni's ?lag= as bytes or with a unit ("16MB"); null when malformed. */
export function parseLag(v: string): number | null {
  const m = /^\s*(\d+)\s*([kmgt]?b)?\s*$/i.exec(v);
  if (!m) return null;
  const unit = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 }[(m[2] ?? 'b').toLowerCase() as 'b'];
  return Number(m[1]) * unit;
}

/**
 * One check. `health`: the proxy accepts connections. `coordinator`: this peer is the
 * coordinator (a standalone peer is its own). `primary`: writes sent to this peer reach a
 * primary (one is up and routed, and this peer is not cut off from the majority).
 * `replica`: reads can go to a streaming standby within `maxLagBytes` (any lag when null).
 * `readiness`: the peer serves clients: proxy accepting, a primary routed, in touch with the
 * cluster. `liveness`: the process answers (this code runs on its event loop).
 */
export function check(name: CheckName, s: AdminSnapshot, maxLagBytes: number | null = null): CheckAnswer {
  const w = s.watchdog;
  const answer = (ok: boolean, reason: string, extra: Record<string, unknown> = {}): CheckAnswer => ({
    status: ok ? 200 : 503,
    body: { ok, check: name, peer: w.self, reason, ...extra },
  });
  const primary = s.backends.find((b) => b.status === 'up' && b.role === 'primary');
  const inTouch = w.state !== 'isolated' && w.state !== 'joining' && w.state !== 'shutdown';
  switch (name) {
    case 'liveness':
      return answer(true, 'the peer process answers');
    case 'health':
      return s.proxyListening ? answer(true, 'the proxy accepts connections') : answer(false, 'the proxy is not accepting connections');
    case 'coordinator':
      return w.coordinator === w.self
        ? answer(true, w.mode === 'standalone' ? 'standalone peer: it is its own coordinator' : `${w.self} is the coordinator`)
        : answer(false, w.coordinator ? `the coordinator is ${w.coordinator}` : 'no coordinator is known now', { coordinator: w.coordinator });
    case 'primary':
      if (!primary) return answer(false, 'no primary backend is up');
      if (!inTouch) return answer(false, `this peer is ${w.state}: it does not route writes`);
      return answer(true, `backend ${primary.id} (${primary.name}) is the primary`, { backend: primary.id });
    case 'replica': {
      const standbys = s.backends.filter((b) => b.status === 'up' && b.role === 'standby');
      if (standbys.length === 0) return answer(false, 'no standby backend is up');
      const fit = maxLagBytes === null ? standbys : standbys.filter((b) => b.lagBytes !== null && b.lagBytes <= maxLagBytes);
      if (fit.length === 0) {
        const lags = standbys.map((b) => `${b.id}: ${b.lagBytes === null ? 'unknown' : `${b.lagBytes} B`}`).join(', ');
        return answer(false, `no standby within ${maxLagBytes} bytes of lag (${lags})`, { maxLagBytes });
      }
      return answer(true, `standby ${fit.map((b) => b.id).join(', ')} up${maxLagBytes === null ? '' : ` within ${maxLagBytes} bytes of lag`}`, {
        backends: fit.map((b) => b.id),
        maxLagBytes,
      });
    }
    case 'readiness':
      if (!s.proxyListening) return answer(false, 'the proxy is not accepting connections');
      if (!inTouch) return answer(false, `this peer is ${w.state}`);
      if (!primary) return answer(false, 'no primary backend is up');
      return answer(true, `ready: proxy accepting, backend ${primary.id} is the primary`);
  }
}
