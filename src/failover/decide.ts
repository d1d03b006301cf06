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
import { sameHost } from './pgops.js';
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
}

export interface EngineState {
  backends: readonly BackendView[];
  /** The last routable primary, whoever set it: a later node_down of it means promotion. */
  lastPrimary: number | null;
  /** Backends an operator detached (auto re-attachment leaves them alone). */
  adminDetached: ReadonlySet<number>;
}

export type Plan =
  | { action: 'nothing'; reason: string }
  | { action: 'refuse'; reason: string }
  /** Detach `ids`; the primary stays (or there was none to replace). */
  | { action: 'detach'; ids: number[]; primaryFailed: boolean; reason: string }
  /** Detach `ids`, among them the primary, and find or promote a new one. */
  | { action: 'replace primary'; ids: number[]; oldPrimary: number; reason: string }
  | { action: 'attach'; ids: number[]; reason: string }
  | { action: 'promote'; id: number; switchover: boolean; reason: string }
  | { action: 'close idle'; ids: number[]; reason: string };

function routablePrimary(s: EngineState): BackendView | undefined {
  return s.backends.find((b) => b.status === 'up' && b.role === 'primary');
}

/** What a queued request means now. */
export function decideRequest(s: EngineState, req: FailoverRequest): Plan {
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
      const primaryBefore = routablePrimary(s)?.id ?? s.lastPrimary;
      const primaryFailed = primaryBefore !== null && req.ids.includes(primaryBefore);
      const remaining = s.backends.find((b) => b.status === 'up' && b.role === 'primary' && !req.ids.includes(b.id));
      if (primaryFailed && !remaining) return { action: 'replace primary', ids: req.ids, oldPrimary: primaryBefore, reason: `primary ${primaryBefore} failed: ${req.reason}` };
      return { action: 'detach', ids: req.ids, primaryFailed, reason: req.reason };
    }
  }
}

export type Replacement =
  /** A server already left recovery (an earlier, interrupted run promoted it): it is the primary. */
  | { action: 'adopt'; id: number; reason: string }
  | { action: 'promote'; id: number; choice: CandidateChoice | null; reason: string }
  | { action: 'no candidate'; choice: CandidateChoice; reason: string };

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
}

/** Which server becomes the primary when the old one is gone. */
export function decideReplacement(s: EngineState, x: ReplacementInput): Replacement {
  const already = [...x.wal.entries()].find(([id, w]) => w !== null && !w.inRecovery && s.backends[id]!.status !== 'down' && id !== x.oldPrimary);
  if (already) return { action: 'adopt', id: already[0], reason: `backend ${already[0]} is already out of recovery: adopting it as the primary` };
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
  /** Detached standbys to read the WAL state of: re-attached if they stream from the primary. */
  failbackChecks: number[];
  /** Why nothing is done for each other backend (logged at debug, every cycle). */
  idle: { id: number; reason: string }[];
}

/** The periodic look at every backend: attach nodes still waiting, detach a false primary,
 * find standbys that may fail back. */
export function decideMaintenance(s: EngineState, opts: { detachFalsePrimary: boolean; autoFailback: boolean }): Maintenance {
  const out: Maintenance = { requests: [], failbackChecks: [], idle: [] };
  const primary = routablePrimary(s);
  for (const b of s.backends) {
    if (b.status === 'waiting' && b.pgStatus === 'up') out.requests.push({ kind: 'node_up', ids: [b.id], reason: 'first health check succeeded', source: 'health' });
    else if (b.status === 'waiting' && b.pgStatus === 'down') out.requests.push({ kind: 'node_down', ids: [b.id], reason: 'first health check failed', source: 'health' });
    else if (b.status === 'waiting') out.idle.push({ id: b.id, reason: 'waiting for its first health check' });
    else if (b.status === 'up' && b.pgStatus === 'up' && b.pgRole === 'primary' && primary && primary.id !== b.id) {
      if (opts.detachFalsePrimary) out.requests.push({ kind: 'node_down', ids: [b.id], reason: `false primary: backend ${b.id} reports itself primary while backend ${primary.id} is the primary`, source: 'health' });
      else out.idle.push({ id: b.id, reason: `reports itself primary beside backend ${primary.id}; detach_false_primary is off` });
    } else if (b.status === 'up') out.idle.push({ id: b.id, reason: `attached ${b.role}, health check ${b.pgStatus}` });
    else if (b.status !== 'down') out.idle.push({ id: b.id, reason: `status ${b.status}` });
    else if (b.pgStatus !== 'up') out.idle.push({ id: b.id, reason: `detached, health check ${b.pgStatus}` });
    else if (b.pgRole !== 'standby') out.idle.push({ id: b.id, reason: `detached, answers as ${b.pgRole}` });
    else if (!opts.autoFailback) out.idle.push({ id: b.id, reason: 'detached standby answers; auto_failback is off' });
    else if (!primary) out.idle.push({ id: b.id, reason: 'detached standby answers; no primary to stream from' });
    else if (s.adminDetached.has(b.id)) out.idle.push({ id: b.id, reason: 'detached by an operator: stays detached' });
    else out.failbackChecks.push(b.id);
  }
  return out;
}

/** auto_failback of a detached standby, given its fresh WAL state. */
export function decideFailback(s: EngineState, id: number, w: WalState): { request: FailoverRequest | null; reason: string } {
  const primary = routablePrimary(s);
  if (!primary) return { request: null, reason: 'no primary to stream from' };
  if (!streamsFrom(w, primary)) return { request: null, reason: `does not stream from the primary ${primary.id} (wal receiver: ${w.walReceiverStatus ?? 'none'})` };
  const reason = `auto_failback: backend ${id} streams from the primary ${primary.id} again`;
  return { request: { kind: 'node_up', ids: [id], reason, source: 'health' }, reason };
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
