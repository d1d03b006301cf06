// The failover engine's DECISIONS, pure: given what this peer knows (the backends as the
// registry holds them, the engine's memory) and a request or a fresh observation, what to do
// and why. No I/O and no clock, so every branch is table-tested
// (test/failover/decide.test.ts) and a coordinator's decision can be replayed. Every branch
// returns a reason, "nothing to do" included, and the engine logs it.
//
// The execution (execute.ts) gathers the evidence these functions need (WAL states, probes)
// and carries out what they return; the queue (engine.ts) calls them.
import type { BackendRole, BackendStatus } from '../backends/registry.js';
import type { WalState } from '../backends/replication.js';
import { chooseCandidate, type CandidateChoice, type CandidateInput } from './candidate.js';
import type { ServerState } from './pgops.js';
import { sameHost } from '../backends/hosts.js';
import type { FailoverRequest } from './types.js';

/** What a decision needs to know of one backend (the registry's BackendState is one). */
export interface BackendView {
  id: number;
  host: string;
  port: number;
  status: BackendStatus;
  role: BackendRole;
  pgStatus: 'up' | 'down' | 'unknown';
  pgRole: BackendRole;
  failoverAllowed: boolean;
  priority: number;
  lsn: bigint | null;
  /** When status or role last changed (for a detached backend: when it was detached). */
  lastStatusChange: Date;
}

export interface EngineState {
  backends: readonly BackendView[];
  /** The last routable primary, whoever set it: a later node_down of it means promotion. */
  lastPrimary: number | null;
  /** Backends an operator detached (auto re-attachment leaves them alone). */
  adminDetached: ReadonlySet<number>;
  /** Set while there is no primary because the last choice found no candidate: the
   * reachability (reachability()) it was made with. The choice runs again when it changes. */
  noCandidate: { reachability: string } | null;
}

/** What a fresh probe of a backend said when a request ran. */
export interface Fresh {
  ok: boolean;
  inRecovery?: boolean;
  error?: string;
}

/** Every backend's decided status and health-check view, as one comparable string. */
export function reachability(s: EngineState): string {
  return s.backends.map((b) => `${b.id}:${b.status}/${b.pgStatus}/${b.pgRole}`).join(' ');
}

export type Plan =
  | { action: 'nothing'; reason: string }
  | { action: 'refuse'; reason: string }
  /** Detach `ids`; the primary stays (or there was none to replace). */
  | { action: 'detach'; ids: number[]; primaryFailed: boolean; reason: string }
  /** Detach `ids`, among them the primary, and find or promote a new one. */
  | { action: 'replace primary'; ids: number[]; oldPrimary: number | null; forced?: number; reason: string }
  | { action: 'attach'; ids: number[]; reason: string }
  | { action: 'promote'; id: number; switchover: boolean; reason: string }
  | { action: 'close idle'; ids: number[]; reason: string };

function routablePrimary(s: EngineState): BackendView | undefined {
  return s.backends.find((b) => b.status === 'up' && b.role === 'primary');
}

/**
 * Which of a detected request's backends still need it, on fresh evidence: a backend whose
 * decided status or role changed after the detection (promoted, re-attached, detached by
 * someone else), or that answers a fresh probe, makes its part of the request stale.
 */
export function staleness(s: EngineState, req: FailoverRequest, fresh: ReadonlyMap<number, Fresh>): { live: number[]; stale: { id: number; reason: string }[] } {
  const out: { live: number[]; stale: { id: number; reason: string }[] } = { live: [], stale: [] };
  for (const id of req.ids) {
    const seen = req.observed?.find((o) => o.id === id);
    const b = s.backends[id]!;
    const f = fresh.get(id);
    if (seen && (seen.status !== b.status || seen.role !== b.role)) out.stale.push({ id, reason: `backend ${id} changed since the detection (was ${seen.status} ${seen.role}, now ${b.status} ${b.role})` });
    else if (f?.ok) out.stale.push({ id, reason: `backend ${id} answers a fresh probe (${f.inRecovery ? 'in recovery' : 'a primary'})` });
    else out.live.push(id);
  }
  return out;
}

/** What a queued request means now. `fresh`: probes taken as it started (detected requests). */
export function decideRequest(s: EngineState, req: FailoverRequest, fresh: ReadonlyMap<number, Fresh> = new Map()): Plan {
  switch (req.kind) {
    case 'close_idle':
      return { action: 'close idle', ids: req.ids, reason: `close idle connections of ${req.ids.length ? `backend(s) ${req.ids.join(',')}` : 'every backend'}` };
    case 'node_up':
      return { action: 'attach', ids: req.ids, reason: req.reason };
    case 'promote': {
      const [id] = req.ids as [number];
      const b = s.backends[id]!;
      if (!b.failoverAllowed) return { action: 'refuse', reason: `backend ${id} is marked failover: disallow` };
      if (b.status !== 'up' || b.role !== 'standby') return { action: 'refuse', reason: `backend ${id} is not an attached standby (status ${b.status}, role ${b.role})` };
      return { action: 'promote', id, switchover: req.switchover ?? false, reason: req.reason };
    }
    case 'node_down': {
      let ids = req.ids;
      let reason = req.reason;
      if (req.observed) {
        const st = staleness(s, req, fresh);
        const why = st.stale.map((x) => x.reason).join('; ');
        if (st.live.length === 0) return { action: 'nothing', reason: `stale detection, dropped: ${why}` };
        if (st.stale.length) reason = `${reason} (not for ${st.stale.map((x) => x.id).join(',')}: ${why})`;
        ids = st.live;
      }
      const primaryBefore = routablePrimary(s)?.id ?? s.lastPrimary;
      const primaryFailed = primaryBefore !== null && ids.includes(primaryBefore);
      const remaining = s.backends.find((b) => b.status === 'up' && b.role === 'primary' && !ids.includes(b.id));
      if (primaryFailed && !remaining) return { action: 'replace primary', ids, oldPrimary: primaryBefore, reason: `primary ${primaryBefore} failed: ${reason}` };
      return { action: 'detach', ids, primaryFailed, reason };
    }
  }
}

export type Replacement =
  /** A server already left recovery (an earlier, interrupted run promoted it): it is the primary. */
  | { action: 'adopt'; id: number; reason: string }
  | { action: 'promote'; id: number; choice: CandidateChoice | null; reason: string }
  | { action: 'no candidate'; choice: CandidateChoice; reason: string }
  /** The old primary answers as a primary after all: no failover; it stays the primary. */
  | { action: 'cancel'; id: number; reason: string };

export interface ReplacementInput {
  failed: readonly number[];
  oldPrimary: number | null;
  /** The operator's choice of standby (promote N), else the candidate rule decides. */
  forced: number | null;
  /** Fresh WAL state of each attached standby; null = it did not answer. */
  wal: ReadonlyMap<number, WalState | null>;
  /** Standbys whose promotion failed in this request: the next best is tried instead. */
  unpromotable: readonly number[];
  maxLagBytes: number;
  /** The old primary checked once more, directly, just before the choice; null when not
   * checked (an operator's promotion or detach: they want it replaced). */
  oldPrimaryCheck: Fresh | null;
}

/** Which server becomes the primary when the old one is gone. */
export function decideReplacement(s: EngineState, x: ReplacementInput): Replacement {
  const already = [...x.wal.entries()].find(([id, w]) => w !== null && !w.inRecovery && s.backends[id]!.status !== 'down' && id !== x.oldPrimary);
  if (already) return { action: 'adopt', id: already[0], reason: `backend ${already[0]} is already out of recovery: adopting it as the primary` };
  const c = x.oldPrimaryCheck;
  if (c?.ok && !c.inRecovery && x.oldPrimary !== null) return { action: 'cancel', id: x.oldPrimary, reason: `the old primary ${x.oldPrimary} answers as a primary when checked again before promoting: failover cancelled, it stays the primary` };
  if (x.forced !== null) return { action: 'promote', id: x.forced, choice: null, reason: `backend ${x.forced} chosen by the operator` };
  const inputs: CandidateInput[] = s.backends.map((b) => {
    const w = x.wal.get(b.id) ?? null;
    return {
      id: b.id,
      status: b.status,
      role: b.role,
      pgStatus: w ? 'up' : b.status === 'up' && x.wal.has(b.id) ? 'down' : b.pgStatus,
      failoverAllowed: b.failoverAllowed,
      priority: b.priority,
      lsn: w ? (w.receiveLsn ?? w.replayLsn) : null,
    };
  });
  const lastPrimaryLsn = x.oldPrimary !== null ? s.backends[x.oldPrimary]!.lsn : null;
  const choice = chooseCandidate(inputs, { exclude: [...x.failed, ...x.unpromotable], maxLagBytes: x.maxLagBytes, lastPrimaryLsn });
  if (choice.id === null) return { action: 'no candidate', choice, reason: choice.summary };
  return { action: 'promote', id: choice.id, choice, reason: choice.summary };
}

export type AttachDecision =
  | { action: 'attach'; role: 'primary' | 'standby'; note: string | null; reason: string }
  /** A second primary: never written to; detach it when detach_false_primary is on. */
  | { action: 'refuse'; detach: boolean; reason: string };

/** node_up of one backend, given its fresh WAL state. */
export function decideAttach(s: EngineState, id: number, w: WalState, detachFalsePrimary: boolean): AttachDecision {
  const primary = routablePrimary(s);
  if (!w.inRecovery) {
    if (primary && primary.id !== id) {
      return { action: 'refuse', detach: s.backends[id]!.status !== 'down' && detachFalsePrimary, reason: `backend ${id} is a primary while backend ${primary.id} is the primary: not attached (a second primary is never written to)` };
    }
    return { action: 'attach', role: 'primary', note: null, reason: `backend ${id} is a primary and there is no other` };
  }
  if (primary && !streamsFrom(w, primary)) {
    return { action: 'attach', role: 'standby', note: `backend ${id} does not stream from the primary ${primary.id} (wal receiver: ${w.walReceiverStatus ?? 'none'}); attaching anyway, as asked`, reason: 'a standby' };
  }
  return { action: 'attach', role: 'standby', note: null, reason: primary ? `a standby streaming from the primary ${primary.id}` : 'a standby (no primary known)' };
}

export function streamsFrom(w: WalState, primary: { host: string; port: number }): boolean {
  return w.inRecovery && w.walReceiverStatus === 'streaming' && w.senderPort === primary.port && sameHost(w.senderHost, primary.host);
}

export interface Maintenance {
  /** Requests to queue. */
  requests: FailoverRequest[];
  /** Detached standbys to read the server state of (decideFailback says what follows). */
  failbackChecks: number[];
  /** No primary, and reachability changed since the last choice found no candidate: choose
   * again (queued after what the failback checks bring). */
  chooseAgain: FailoverRequest | null;
  /** Why nothing is done for each other backend (logged at debug, every cycle). */
  idle: { id: number; reason: string }[];
}

/** The periodic look at every backend: attach nodes still waiting, detach a false primary,
 * find detached standbys that may come back, and while there is no primary, choose again
 * when reachability changes. */
export function decideMaintenance(s: EngineState, opts: { detachFalsePrimary: boolean }): Maintenance {
  const out: Maintenance = { requests: [], failbackChecks: [], chooseAgain: null, idle: [] };
  const primary = routablePrimary(s);
  for (const b of s.backends) {
    if (b.status === 'waiting' && b.pgStatus === 'up') out.requests.push({ kind: 'node_up', ids: [b.id], reason: 'first health check succeeded', source: 'health' });
    else if (b.status === 'waiting' && b.pgStatus === 'down') out.requests.push({ kind: 'node_down', ids: [b.id], reason: 'first health check failed', source: 'health' });
    else if (b.status === 'waiting') out.idle.push({ id: b.id, reason: 'waiting for its first health check' });
    else if (b.status === 'up' && b.pgStatus === 'up' && b.pgRole === 'primary' && primary && primary.id !== b.id) {
      if (opts.detachFalsePrimary) out.requests.push({ kind: 'node_down', ids: [b.id], reason: `false primary: backend ${b.id} reports itself primary while backend ${primary.id} is the primary`, source: 'health' });
      else out.idle.push({ id: b.id, reason: `reports itself primary beside backend ${primary.id}; detach_false_primary is off` });
    } else if (b.status === 'up' && b.pgStatus === 'down') {
      // The health checker reports a failure once, when its view changes: after a detection
      // dropped as stale, a server that then really fails would otherwise stay routable.
      out.requests.push({ kind: 'node_down', ids: [b.id], reason: `health check says unreachable while attached (${b.role})`, source: 'health', observed: [{ id: b.id, status: b.status, role: b.role }] });
    } else if (b.status === 'up') out.idle.push({ id: b.id, reason: `attached ${b.role}, health check ${b.pgStatus}` });
    else if (b.status !== 'down') out.idle.push({ id: b.id, reason: `status ${b.status}` });
    else if (s.adminDetached.has(b.id)) out.idle.push({ id: b.id, reason: 'detached by an operator: stays detached' });
    else if (b.pgStatus !== 'up') out.idle.push({ id: b.id, reason: `detached, health check ${b.pgStatus}` });
    else if (b.pgRole !== 'standby') out.idle.push({ id: b.id, reason: `detached, answers as ${b.pgRole}${b.pgRole === 'primary' && primary ? ` beside the primary ${primary.id}: stays fenced` : ''}` });
    else out.failbackChecks.push(b.id);
  }
  if (!primary && s.lastPrimary !== null && s.noCandidate) {
    const now = reachability(s);
    if (now !== s.noCandidate.reachability) {
      out.chooseAgain = { kind: 'node_down', ids: [s.lastPrimary], reason: `no primary: choosing again, reachability changed (${changes(s.noCandidate.reachability, now)})`, source: 'health' };
    } else out.idle.push({ id: s.lastPrimary, reason: 'no primary; reachability unchanged since the last choice found no candidate' });
  }
  return out;
}

function changes(before: string, now: string): string {
  const a = before.split(' ');
  return now
    .split(' ')
    .map((x, i) => (x === a[i] ? null : `${a[i] ?? '?'} → ${x.slice(x.indexOf(':') + 1)}`))
    .filter((x) => x !== null)
    .join(', ');
}

/** A detached standby that answers (not one an operator detached), given its server state:
 * with no primary it is a candidate again; with one it is attached again when its server ran
 * through the detach (a false detection: a stall, not a crash) or auto_failback is on — at
 * once if it streams from the primary, else (builtin promotion) after following it, as the
 * failover would have had it been attached. */
export function decideFailback(s: EngineState, id: number, w: ServerState, opts: { autoFailback: boolean; builtinFollow: boolean }): { request: FailoverRequest | null; reason: string } {
  const primary = routablePrimary(s);
  const b = s.backends[id]!;
  if (!w.inRecovery) return { request: null, reason: 'is not in recovery' };
  if (!primary) {
    const reason = `backend ${id} answers again (in recovery) while there is no primary: attached again as a promotion candidate`;
    return { request: { kind: 'node_up', ids: [id], reason, source: 'health' }, reason };
  }
  const falselyDetached = w.startedAt.getTime() < b.lastStatusChange.getTime();
  if (!falselyDetached && !opts.autoFailback) return { request: null, reason: `restarted since its detach (server start ${w.startedAt.toISOString()}); auto_failback is off` };
  const why = falselyDetached ? `backend ${id} was falsely detached (its server runs since ${w.startedAt.toISOString()}, before the detach at ${b.lastStatusChange.toISOString()})` : `auto_failback: backend ${id}`;
  if (streamsFrom(w, primary)) {
    const reason = `${why}: it streams from the primary ${primary.id}${falselyDetached ? ', attached again' : ' again'}`;
    return { request: { kind: 'node_up', ids: [id], reason, source: 'health' }, reason };
  }
  if (!opts.builtinFollow) return { request: null, reason: `does not stream from the primary ${primary.id} (wal receiver: ${w.walReceiverStatus ?? 'none'}); promote: command, so following it is left to follow_primary_command or the operator` };
  const reason = `${why}: it does not stream from the primary ${primary.id} (wal receiver: ${w.walReceiverStatus ?? 'none'}, sender port ${w.senderPort ?? 'none'}): it follows it and is attached again`;
  return { request: { kind: 'node_up', ids: [id], reason, source: 'health', follow: true }, reason };
}

export interface StartupRoles {
  primary: number | null;
  /** Decided status/role per reachable backend. */
  changes: { id: number; status: 'up' | 'down'; role: BackendRole; reason: string }[];
  /** Unreachable backends: left waiting for the health check. */
  unreachable: number[];
  /** Set when several backends are primaries: how the true one was chosen. */
  tieBreak: string | null;
}

/** pgpool's find_primary_node, given every reachable backend's WAL state. */
export function decideStartupRoles(s: EngineState, wal: ReadonlyMap<number, WalState | null>, why: string, detachFalsePrimary: boolean): StartupRoles {
  const primaries = [...wal.entries()].filter(([, w]) => w && !w.inRecovery).map(([id]) => id);
  let primary: number | null = null;
  let tieBreak: string | null = null;
  if (primaries.length === 1) primary = primaries[0]!;
  else if (primaries.length > 1) {
    // The true primary is the one the standbys stream from; ties go to the lowest id.
    const followers = (pid: number) => [...wal.values()].filter((w) => w && w.inRecovery && w.senderPort === s.backends[pid]!.port && sameHost(w.senderHost, s.backends[pid]!.host)).length;
    primary = [...primaries].sort((a, b) => followers(b) - followers(a) || a - b)[0]!;
    tieBreak = `${primaries.length} backends are primaries; backend ${primary} has the most standbys streaming from it`;
  }
  const out: StartupRoles = { primary, changes: [], unreachable: [], tieBreak };
  for (const [id, w] of wal) {
    if (w === null) out.unreachable.push(id);
    else if (!w.inRecovery && id === primary) out.changes.push({ id, status: 'up', role: 'primary', reason: `${why}: primary found (not in recovery)` });
    else if (!w.inRecovery) {
      if (detachFalsePrimary) out.changes.push({ id, status: 'down', role: 'unknown', reason: `${why}: false primary (backend ${primary} is the primary)` });
      else out.changes.push({ id, status: 'up', role: 'unknown', reason: `${why}: a second primary; detach_false_primary is off, so it stays attached but gets no traffic` });
    } else out.changes.push({ id, status: 'up', role: 'standby', reason: `${why}: standby (in recovery)` });
  }
  return out;
}
