// The admin API's JSON views, as src/proxy/show.ts is for SQL: pure functions from one
// snapshot of what the peer knows (`AdminSnapshot`) to the bodies the API answers with. No
// I/O here, so every field can be tested without a server, and the CLI, the dashboard and
// the health endpoints all read the same shapes.
import type { BackendState } from '../backends/registry.js';
import { formatLsn } from '../backends/lsn.js';
import type { FailoverResult, FailoverStatus } from '../failover/index.js';
import type { ProxyStats } from '../proxy/index.js';
import type { WatchdogNode } from '../proxy/show.js';
import type { FailoverRecord } from '../cluster/state.js';
import { statusName, type ReplicatedFailovers, type WatchdogFacts, type WatchdogPeerFacts } from './watchdog-view.js';

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
  /** The replicated failover records; undefined without a watchdog (then `failover.history`). */
  replicatedFailovers: ReplicatedFailovers | undefined;
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

export interface FailoverStepView {
  name: string;
  backend: number | null;
  /** null: begun and no end on record (cut off, or left when the event ended). */
  ok: boolean | null;
  /** null when not known (a cluster step with no begin or end time on record). */
  ms: number | null;
  detail: string;
  /** The peer that ran it (recorded its last phase), under which term, and how many runs began
   * it (more than one: a later coordinator ran it again). One peer: itself, the request's term, 1. */
  peer: string;
  term: number;
  runs: number;
}

export interface FailoverView {
  /** In a cluster the record's cluster-wide seq (the log index of its FailoverStarted); on a
   * peer without a watchdog its engine's request number. */
  seq: number;
  kind: FailoverResult['kind'];
  nodes: number[];
  /** The Raft term it ran under (%T); 0 without a watchdog. */
  term: number;
  /** The peer that ran it: the coordinator that started it, or the last one that resumed it. */
  ranBy: string;
  /** How many times a later coordinator took it over (0 without a watchdog). */
  resumes: number;
  reason: string;
  /** null: not on record (cluster records do not carry it). */
  switchover: boolean | null;
  ok: boolean;
  result: string;
  oldPrimary: number | null;
  newPrimary: number | null;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** Detection (or queueing) to the new primary being named; null in a cluster record. */
  toNewPrimaryMs: number | null;
  /** One peer: every step its engine ran. Cluster: the steps the record keeps (promote,
   * follow, failover_command, follow_primary_command, failback_command), in the order they
   * first began. */
  steps: FailoverStepView[];
}

/** A failover as this peer's engine ran it. */
export function failoverView(r: FailoverResult, ranBy: string): FailoverView {
  return {
    seq: r.seq,
    kind: r.kind,
    nodes: r.ids,
    term: r.term,
    ranBy,
    resumes: 0,
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
    steps: r.steps.map((st) => ({ name: st.name, backend: st.backend ?? null, ok: st.ok, ms: st.ms, detail: st.detail, peer: ranBy, term: r.term, runs: 1 })),
  };
}

/** A finished record of the replicated cluster state: built from the record alone (the
 * proposers' clocks included), so every peer that applied it answers the same. */
export function recordView(r: FailoverRecord & { finished: NonNullable<FailoverRecord['finished']> }): FailoverView {
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    seq: r.seq,
    kind: r.kind,
    nodes: r.ids,
    term: r.term,
    ranBy: r.runner,
    resumes: r.resumes,
    reason: r.reason,
    switchover: null,
    ok: r.finished.ok,
    result: r.finished.summary,
    oldPrimary: r.replaces,
    newPrimary: r.finished.newPrimary,
    startedAt: iso(r.started.at),
    finishedAt: iso(r.finished.at),
    durationMs: Math.max(0, r.finished.at - r.started.at),
    toNewPrimaryMs: null,
    steps: r.steps.map((st) => ({
      name: st.step,
      backend: st.backend,
      ok: st.phase === 'done' ? st.ok : null,
      ms: st.begunAt !== null && st.doneAt !== null ? Math.max(0, st.doneAt - st.begunAt) : null,
      detail: st.phase === 'done' ? st.result : 'begun; no end on record',
      peer: st.peer,
      term: st.term,
      runs: st.runs,
    })),
  };
}

type ActiveFailover = FailoverStatus['active'];

/** The failovers an operator sees, from one source for every view (API, CLI, dashboard). */
interface FailoverHistory {
  source: 'cluster' | 'local';
  appliedIndex: number | null;
  /** Finished, oldest first. */
  finished: FailoverView[];
  active: ActiveFailover;
}

function failoverHistory(s: AdminSnapshot): FailoverHistory {
  const rep = s.replicatedFailovers;
  if (rep === undefined) {
    return { source: 'local', appliedIndex: null, finished: s.failover.history.map((r) => failoverView(r, s.watchdog.self)), active: s.failover.active };
  }
  const finished: FailoverView[] = [];
  let active: ActiveFailover = null;
  for (const r of rep.records) {
    if (r.finished !== null) finished.push(recordView({ ...r, finished: r.finished }));
    else active ??= { seq: r.seq, kind: r.kind, ids: r.ids, reason: r.reason, startedAt: new Date(r.started.at).toISOString() };
  }
  return { source: 'cluster', appliedIndex: rep.appliedIndex, finished, active };
}

export interface FailoversView {
  /** `cluster`: the replicated records (the same on every peer that applied the same log
   * index); `local`: this peer's engine (no watchdog). */
  source: 'cluster' | 'local';
  /** cluster: the log index the records reflect; null for `local`. */
  appliedIndex: number | null;
  /** Finished failovers, newest first. */
  history: FailoverView[];
  /** The one running: in a cluster the oldest record without its FailoverFinished. */
  active: ActiveFailover;
  /** Requests waiting in this peer's engine (only a coordinator's engine runs requests). */
  queue: FailoverStatus['queue'];
}

export function failoversView(s: AdminSnapshot, limit = Infinity): FailoversView {
  const h = failoverHistory(s);
  const history = h.finished.slice(-Math.min(limit, h.finished.length || 1)).reverse();
  return { source: h.source, appliedIndex: h.appliedIndex, history, active: h.active, queue: s.failover.queue };
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
  const h = failoverHistory(s);
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
    failover: { active: h.active, queued: s.failover.queue.length, last: h.finished.at(-1) ?? null },
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
