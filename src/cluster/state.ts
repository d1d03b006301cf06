// The replicated cluster state: the Raft state machine every peer applies, in log order,
// so all peers route by the same history (DESIGN.md "How a decision flows", step 4).
// Pure: `apply` returns a new state (or the same one and why nothing changed) from the
// state, the command and the entry's (index, term); it reads no clock, the proposer
// stamps `at`. The state is small JSON, so a snapshot is the state itself.
//
// Two facts of the Raft log make the fencing here simple. An entry of term T was
// appended by the one leader of T, and terms never decrease along the log; so once an
// entry of term T' commits, no entry of an older term can follow it. A failover record
// therefore names its runner and the term it runs under, and a resume in a later term
// takes the record over for good.
import { z } from 'zod';
import type { Config } from '../config/index.js';
import type { BackendRole, BackendStatus } from '../backends/registry.js';
import type { Decision, FailoverKind, FailoverStepName, FailoverStepRecord } from '../failover/decisions.js';

/** Finished failover records kept for display; unfinished ones are never dropped. */
export const FINISHED_RECORDS_KEPT = 50;

const BACKEND_STATUSES = ['up', 'down', 'quarantine', 'waiting', 'unused'] as const satisfies readonly BackendStatus[];
const BACKEND_ROLES = ['primary', 'standby', 'unknown'] as const satisfies readonly BackendRole[];
const FAILOVER_KINDS = ['node_down', 'node_up', 'promote', 'close_idle'] as const satisfies readonly FailoverKind[];
const STEP_NAMES = ['promote', 'follow', 'failover_command', 'follow_primary_command', 'failback_command'] as const satisfies readonly FailoverStepName[];

const peerName = z.string().min(1).max(128);
const text = z.string().max(4096);
const id = z.number().int().min(0).max(4095);
const ms = z.number().int().min(0);

/** Where in the log a change happened, when (the proposer's clock) and why. */
const changeSchema = z.object({ index: z.number().int().min(0), term: z.number().int().min(0), at: ms, reason: text }).strict();
export type Change = z.output<typeof changeSchema>;

const backendRecordSchema = z
  .object({
    id,
    status: z.enum(BACKEND_STATUSES),
    role: z.enum(BACKEND_ROLES),
    weight: z.number().min(0),
    /** Who detached it: an operator's detach ('admin') is one auto re-attachment respects. */
    detachedBy: z.enum(['admin', 'failover']).optional(),
    lastChange: changeSchema,
  })
  .strict();
export type BackendRecord = z.output<typeof backendRecordSchema>;

const stepRecordSchema = z
  .object({
    step: z.enum(STEP_NAMES),
    backend: id,
    phase: z.enum(['begun', 'done']),
    ok: z.boolean().nullable(),
    result: text,
    peer: peerName,
    term: z.number().int().min(0),
    runs: z.number().int().min(1),
    /** The proposer's clock when its last run began and when it ended, for the duration the
     * admin API shows. doneAt null: no end yet. begunAt null on a done step: not begun in the
     * term it was done in (a resumer treated another's run as done), or from before times
     * were kept. */
    begunAt: ms.nullable().default(null),
    doneAt: ms.nullable().default(null),
  })
  .strict();
export type StepRecord = z.output<typeof stepRecordSchema>;

const failoverRecordSchema = z
  .object({
    /** Cluster-unique: the log index of the entry that started it. */
    seq: z.number().int().min(1),
    /** The seq the starting peer's failover engine gave it (for its logs; not unique). */
    engineSeq: z.number().int().min(0),
    kind: z.enum(FAILOVER_KINDS),
    ids: z.array(id),
    reason: text,
    /** The term it runs under now: the fencing token (%T). Raised by a resume. */
    term: z.number().int().min(0),
    /** The peer running it now (the coordinator that started or last resumed it). */
    runner: peerName,
    started: changeSchema,
    /** How many times a later coordinator took it over, and the last time. */
    resumes: z.number().int().min(0),
    resumed: changeSchema.nullable(),
    /** The primary it replaces (node_down of the primary, promote), null otherwise. */
    replaces: id.nullable().default(null),
    /** Its steps, in the order they first began (a snapshot from before steps were kept has none). */
    steps: z.array(stepRecordSchema).default([]),
    finished: z
      .object({ index: z.number().int().min(1), at: ms, ok: z.boolean(), summary: text, newPrimary: id.nullable() })
      .strict()
      .nullable(),
  })
  .strict();
export type FailoverRecord = z.output<typeof failoverRecordSchema>;

const holderSchema = z.object({ peer: peerName, term: z.number().int().min(0), since: changeSchema }).strict();
export type Holder = z.output<typeof holderSchema>;

export const clusterStateSchema = z
  .object({
    v: z.literal(1),
    /** Last applied entry. */
    index: z.number().int().min(0),
    term: z.number().int().min(0),
    backends: z.array(backendRecordSchema),
    /** The routable primary (up, role primary), or null while there is none. */
    primary: id.nullable(),
    failovers: z.array(failoverRecordSchema),
    /** The leader that claimed coordination, and for which term. */
    coordinator: holderSchema.nullable(),
    /** The peer whose claim to the VIP committed last, and in which term: it escalates only
     * once its claim is applied (vip.ts); safety rests on the lease, the record says who. */
    vipHolder: holderSchema.nullable(),
  })
  .strict();
export type ClusterState = z.output<typeof clusterStateSchema>;

// The failover engine's Decision, as a schema, so entries from the wire are checked. The
// type checks below fail to compile if decisions.ts and this schema drift apart.
const decisionSchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('backend'),
      id,
      status: z.enum(BACKEND_STATUSES).optional(),
      role: z.enum(BACKEND_ROLES).optional(),
      detachedBy: z.enum(['admin', 'failover']).optional(),
      reason: text,
    })
    .strict(),
  z
    .object({
      type: z.literal('failoverStarted'),
      seq: z.number().int().min(0),
      kind: z.enum(FAILOVER_KINDS),
      ids: z.array(id),
      term: z.number().int().min(0),
      reason: text,
      replaces: id.nullable().optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('failoverStep'),
      seq: z.number().int().min(0),
      step: z.enum(STEP_NAMES),
      backend: id,
      phase: z.enum(['begun', 'done']),
      ok: z.boolean().optional(),
      result: text.optional(),
    })
    .strict(),
  z.object({ type: z.literal('failoverFinished'), seq: z.number().int().min(0), ok: z.boolean(), summary: text, newPrimary: id.nullable() }).strict(),
]);
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
// Optional fields added on one side only pass plain assignability, so compare the keys too.
type Keys<U> = U extends unknown ? `${U extends { type: infer T extends string } ? T : ''}.${keyof U & string}` : never;
const decisionSchemaMatches: Same<z.output<typeof decisionSchema>, Decision> & Same<Keys<z.output<typeof decisionSchema>>, Keys<Decision>> = true;
void decisionSchemaMatches;
// The state keeps the step's times besides what the engine reads.
const stepRecordMatches: Same<Omit<StepRecord, 'begunAt' | 'doneAt'>, FailoverStepRecord> = true;
void stepRecordMatches;

/**
 * A Raft log entry's payload. `decision`: the failover engine's Decision as the coordinator
 * recorded it. Under the watchdog a failoverFinished's `seq` is the CLUSTER seq (the log
 * index its failoverStarted committed at, which propose() returned): the Decisions adapter
 * maps the engine's own seq to it. `failoverResumed`: a new coordinator takes over an
 * unfinished record (its engine's failoverStarted for the resumed run maps to this).
 * `coordinator`: a new leader claims coordination for its term. `vip`: a leader claims the
 * VIP before escalating (holding) or releases it after de-escalating.
 */
export const clusterCommandSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('decision'), peer: peerName, at: ms, decision: decisionSchema }).strict(),
  z.object({ type: z.literal('failoverResumed'), peer: peerName, at: ms, seq: z.number().int().min(1), reason: text }).strict(),
  z.object({ type: z.literal('coordinator'), peer: peerName, at: ms }).strict(),
  z.object({ type: z.literal('vip'), peer: peerName, at: ms, holding: z.boolean() }).strict(),
]);
export type ClusterCommand = z.output<typeof clusterCommandSchema>;

export interface EntryMeta {
  index: number;
  term: number;
}

export interface ApplyResult {
  state: ClusterState;
  /** What changed, or why nothing did (every branch says). */
  reason: string;
  changed: boolean;
}

/** The state before any entry: every configured backend waiting, role unknown. */
export function initialState(cfg: Pick<Config, 'backends'>): ClusterState {
  const none: Change = { index: 0, term: 0, at: 0, reason: 'configured' };
  return {
    v: 1,
    index: 0,
    term: 0,
    backends: cfg.backends.map((b, i) => ({ id: i, status: 'waiting', role: 'unknown', weight: b.weight, lastChange: none })),
    primary: null,
    failovers: [],
    coordinator: null,
    vipHolder: null,
  };
}

/**
 * A snapshot (from disk or a peer) as a state for this config: validated, and fitted to
 * the configured backends (weights from the config; backends added since are waiting,
 * removed ones dropped). Throws with the reason if the data is not a cluster state.
 */
export function restoreState(data: unknown, cfg: Pick<Config, 'backends'>): ClusterState {
  const parsed = clusterStateSchema.safeParse(data);
  if (!parsed.success) throw new Error(`cluster state snapshot is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const s = parsed.data;
  const fresh = initialState(cfg);
  const backends = fresh.backends.map((b) => {
    const old = s.backends.find((o) => o.id === b.id);
    return old ? { ...old, weight: b.weight } : b;
  });
  return { ...s, backends, primary: primaryOf(backends) };
}

/** The snapshot payload: the state itself (a deep copy, so later applies cannot alter it). */
export function snapshotState(s: ClusterState): ClusterState {
  return structuredClone(s);
}

/** Unfinished failover records, oldest first. */
export function openFailovers(s: ClusterState): FailoverRecord[] {
  return s.failovers.filter((f) => f.finished === null);
}

/** Applies one committed entry. `data === null` (Raft's no-op) only advances the index. */
export function apply(s: ClusterState, cmd: ClusterCommand | null, meta: EntryMeta): ApplyResult {
  if (meta.index <= s.index) return { state: s, changed: false, reason: `entry ${meta.index} already applied (state is at ${s.index})` };
  const base: ClusterState = { ...s, index: meta.index, term: meta.term };
  return cmd === null ? same(base, `no-op of term ${meta.term}`) : applyCommand(base, cmd, meta);
}

function applyCommand(s: ClusterState, cmd: ClusterCommand, meta: EntryMeta): ApplyResult {
  const change = (reason: string): Change => ({ index: meta.index, term: meta.term, at: cmd.at, reason });
  switch (cmd.type) {
    case 'coordinator': {
      if (s.coordinator && s.coordinator.peer === cmd.peer && s.coordinator.term === meta.term) {
        return same(s, `${cmd.peer} already coordinator for term ${meta.term}`);
      }
      const reason = `${cmd.peer} leads term ${meta.term}`;
      return done({ ...s, coordinator: { peer: cmd.peer, term: meta.term, since: change(reason) } }, `coordinator: ${reason}`);
    }
    case 'vip': {
      if (cmd.holding) {
        if (s.vipHolder?.peer === cmd.peer && s.vipHolder.term === meta.term) return same(s, `${cmd.peer} already claimed the VIP in term ${meta.term}`);
        return done({ ...s, vipHolder: { peer: cmd.peer, term: meta.term, since: change('claimed') } }, `VIP: ${cmd.peer} claims it in term ${meta.term}${s.vipHolder ? ` (was ${s.vipHolder.peer}, term ${s.vipHolder.term})` : ''}`);
      }
      if (s.vipHolder?.peer !== cmd.peer) return same(s, `${cmd.peer} de-escalated but the VIP holder on record is ${s.vipHolder?.peer ?? 'nobody'}`);
      return done({ ...s, vipHolder: null }, `VIP: ${cmd.peer} released it`);
    }
    case 'failoverResumed': {
      const f = s.failovers.find((r) => r.seq === cmd.seq);
      if (!f) return same(s, `no failover record ${cmd.seq} to resume`);
      if (f.finished) return same(s, `failover ${cmd.seq} already finished (entry ${f.finished.index}); nothing to resume`);
      if (f.runner === cmd.peer && f.term === meta.term) return same(s, `failover ${cmd.seq} already runs under ${cmd.peer} in term ${meta.term}`);
      const rec: FailoverRecord = { ...f, runner: cmd.peer, term: meta.term, resumes: f.resumes + 1, resumed: change(cmd.reason) };
      return done(withRecord(s, rec), `failover ${cmd.seq} resumed by ${cmd.peer} in term ${meta.term} (was ${f.runner}, term ${f.term}): ${cmd.reason}`);
    }
    case 'decision':
      return applyDecision(s, cmd.decision, cmd.peer, cmd.at, change, meta);
  }
}

function applyDecision(s: ClusterState, d: Decision, peer: string, at: number, change: (reason: string) => Change, meta: EntryMeta): ApplyResult {
  switch (d.type) {
    case 'backend': {
      const b = s.backends[d.id];
      if (!b) return same(s, `no backend ${d.id} (have ${s.backends.length}): decision ignored`);
      const status = d.status ?? b.status;
      const role = d.role ?? b.role;
      // Who detached it stays on record while it is down; attaching clears it.
      const detachedBy = status === 'down' ? (d.detachedBy ?? b.detachedBy) : undefined;
      if (status === b.status && role === b.role && detachedBy === b.detachedBy) return same(s, `backend ${d.id} already ${status}/${role}`);
      const next: BackendRecord = { ...b, status, role, lastChange: change(d.reason) };
      if (detachedBy === undefined) delete next.detachedBy;
      else next.detachedBy = detachedBy;
      const backends = s.backends.map((x) => (x.id === d.id ? next : x));
      return done({ ...s, backends, primary: primaryOf(backends) }, `backend ${d.id}: ${b.status}/${b.role} -> ${status}/${role} (${d.reason})`);
    }
    case 'failoverStarted': {
      const bad = d.ids.find((i) => !s.backends[i]);
      if (bad !== undefined) return same(s, `failover of unknown backend ${bad} (have ${s.backends.length}): not started`);
      const rec: FailoverRecord = {
        seq: meta.index,
        engineSeq: d.seq,
        kind: d.kind,
        ids: [...d.ids],
        reason: d.reason,
        term: meta.term,
        runner: peer,
        started: change(d.reason),
        resumes: 0,
        resumed: null,
        replaces: d.replaces ?? null,
        steps: [],
        finished: null,
      };
      return done({ ...s, failovers: trim([...s.failovers, rec]) }, `failover ${rec.seq} (${d.kind} of ${d.ids.join(',')}) started by ${peer} in term ${meta.term}`);
    }
    case 'failoverStep': {
      const f = s.failovers.find((r) => r.seq === d.seq);
      const what = `${d.step} of backend ${d.backend}`;
      if (!f) return same(s, `no failover record ${d.seq}: step ${what} ignored`);
      if (f.finished) return same(s, `failover ${d.seq} already finished at entry ${f.finished.index}: step ${what} ignored`);
      if (f.runner !== peer || f.term !== meta.term) return same(s, `failover ${d.seq} is run by ${f.runner} in term ${f.term}, not ${peer} in term ${meta.term}: step ${what} ignored`);
      const prev = f.steps.find((x) => x.step === d.step && x.backend === d.backend);
      const next: StepRecord =
        d.phase === 'begun'
          ? { step: d.step, backend: d.backend, phase: 'begun', ok: null, result: '', peer, term: meta.term, runs: (prev?.runs ?? 0) + 1, begunAt: at, doneAt: null }
          : { step: d.step, backend: d.backend, phase: 'done', ok: d.ok ?? true, result: d.result ?? '', peer, term: meta.term, runs: prev?.runs ?? 1, begunAt: prev?.phase === 'begun' && prev.term === meta.term ? prev.begunAt : null, doneAt: at };
      const steps = prev ? f.steps.map((x) => (x === prev ? next : x)) : [...f.steps, next];
      return done(withRecord(s, { ...f, steps }), `failover ${d.seq}: step ${what} ${d.phase}${d.phase === 'done' ? ` (${next.ok ? 'ok' : 'FAILED'}${next.result ? `: ${next.result}` : ''})` : ''} by ${peer} in term ${meta.term}`);
    }
    case 'failoverFinished': {
      const f = s.failovers.find((r) => r.seq === d.seq);
      if (!f) return same(s, `no failover record ${d.seq} to finish`);
      if (f.finished) return same(s, `failover ${d.seq} already finished at entry ${f.finished.index}`);
      if (f.runner !== peer) return same(s, `failover ${d.seq} is run by ${f.runner}, not ${peer}: finish ignored`);
      const rec: FailoverRecord = { ...f, finished: { index: meta.index, at, ok: d.ok, summary: d.summary, newPrimary: d.newPrimary } };
      const next = withRecord(s, rec);
      return done({ ...next, failovers: trim(next.failovers) }, `failover ${d.seq} finished ${d.ok ? 'ok' : 'FAILED'}: ${d.summary}`);
    }
  }
}

function primaryOf(backends: readonly BackendRecord[]): number | null {
  return backends.find((b) => b.status === 'up' && b.role === 'primary')?.id ?? null;
}

function withRecord(s: ClusterState, rec: FailoverRecord): ClusterState {
  return { ...s, failovers: s.failovers.map((r) => (r.seq === rec.seq ? rec : r)) };
}

/** Keeps every unfinished record and the newest FINISHED_RECORDS_KEPT finished ones. */
function trim(list: FailoverRecord[]): FailoverRecord[] {
  let finished = list.filter((r) => r.finished !== null).length;
  if (finished <= FINISHED_RECORDS_KEPT) return list;
  return list.filter((r) => r.finished === null || finished-- <= FINISHED_RECORDS_KEPT);
}

function same(state: ClusterState, reason: string): ApplyResult {
  return { state, changed: false, reason };
}

function done(state: ClusterState, reason: string): ApplyResult {
  return { state, changed: true, reason };
}
