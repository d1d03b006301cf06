// The bulk of a takeover: the state of each session and idle backend connection that moves
// (session.ts exportState / Session.adopt, pool.ts), its types, its checks and its packing on
// the wire. Pure.
//
// Checked by hand rather than with zod like the other messages: a restart decodes these in a
// process that has just started, where V8 still interprets zod's generic machinery. Parsing
// 1 000 sessions with zod took 150-370 ms there (load 10), most of the takeover's budget; these
// loops take a few. Each check names the field that is wrong.
import type { MovedStatement } from '../proxy/extended.js';

import type { RecordWire } from '../proxy/session-state.js';

/** One migrated backend connection: its descriptor's index in the message and what the proxy knows of it. */
export interface BackendState {
  fd: number;
  backendId: number;
  pid: number;
  secret: number;
  /** The server's ParameterStatus values. */
  params: Record<string, string>;
  /** Startup parameters the proxy SET on it (reset by the next session that differs). */
  applied: Record<string, string>;
  /** Something ran that may leave state behind: reset when the session gives it back. */
  dirty: boolean;
  /** Statement names closed by the client but still existing on this connection. */
  stale: string[];
}

/** A prepared statement: the Parse (base64) and which connection has it (the proxy's own shape). */
export type StatementState = MovedStatement;

/** One migrated client session, at a safe point. */
export interface SessionState {
  id: number;
  clientFd: number;
  user: string;
  database: string;
  startupParams: Record<string, string>;
  /** The BackendKeyData secret the client holds: cancels keep working after the move. */
  secret: number;
  primary: BackendState;
  standby: BackendState | null;
  primaryOnly: boolean;
  standbyDiverged: boolean;
  /** Causal reads (proxy/causal.ts CausalNeedWire); absent from a process without them. */
  causal?: { own: string; given: string; pendingSince: number | 'running' | null };
  answered: number;
  statements: StatementState[];
  /** What the session made of its connection (proxy/session-state.ts), to re-create it after a failover; absent from a process without it. */
  record?: RecordWire;
}

/** An idle pooled backend connection (no session holds it): it joins the successor's pool. */
export interface IdleConnState extends BackendState {
  user: string;
  database: string;
  /** The startup `options` (part of the pool key). */
  options: string;
}

class Bad extends Error {}

function obj(v: unknown, at: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Bad(`${at}: expected an object`);
  return v as Record<string, unknown>;
}
function int(o: Record<string, unknown>, k: string, at: string, min = -Infinity): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new Bad(`${at}.${k}: expected an integer${min > -Infinity ? ` ≥ ${min}` : ''}`);
  return v;
}
function str(o: Record<string, unknown>, k: string, at: string): string {
  const v = o[k];
  if (typeof v !== 'string') throw new Bad(`${at}.${k}: expected a string`);
  return v;
}
function bool(o: Record<string, unknown>, k: string, at: string): boolean {
  const v = o[k];
  if (typeof v !== 'boolean') throw new Bad(`${at}.${k}: expected a boolean`);
  return v;
}
function strings(o: Record<string, unknown>, k: string, at: string): Record<string, string> {
  const r = obj(o[k], `${at}.${k}`);
  for (const key in r) if (typeof r[key] !== 'string') throw new Bad(`${at}.${k}.${key}: expected a string`);
  return r as Record<string, string>;
}
function list<T>(o: Record<string, unknown>, k: string, at: string, each: (v: unknown, at: string) => T): T[] {
  const v = o[k];
  if (!Array.isArray(v)) throw new Bad(`${at}.${k}: expected an array`);
  for (let i = 0; i < v.length; i++) each(v[i], `${at}.${k}.${i}`);
  return v as T[];
}

function backend(v: unknown, at: string): BackendState {
  const o = obj(v, at);
  int(o, 'fd', at, 0);
  int(o, 'backendId', at, 0);
  int(o, 'pid', at);
  int(o, 'secret', at);
  strings(o, 'params', at);
  strings(o, 'applied', at);
  bool(o, 'dirty', at);
  list(o, 'stale', at, (x, a) => {
    if (typeof x !== 'string') throw new Bad(`${a}: expected a string`);
    return x;
  });
  return o as unknown as BackendState;
}

function statement(v: unknown, at: string): StatementState {
  const o = obj(v, at);
  str(o, 'name', at);
  str(o, 'parse', at);
  for (const k of ['primary', 'write', 'onPrimary', 'onStandby']) bool(o, k, at);
  return o as unknown as StatementState;
}

function pairs(o: Record<string, unknown>, k: string, at: string): void {
  list(o, k, at, (x, a) => {
    if (!Array.isArray(x) || x.length !== 2 || typeof x[0] !== 'string' || typeof x[1] !== 'string') throw new Bad(`${a}: expected a pair of strings`);
    return x;
  });
}

function record(v: unknown, at: string): RecordWire {
  const o = obj(v, at);
  for (const k of ['sets', 'listens', 'prepared']) pairs(o, k, at);
  list(o, 'holdCursors', at, (x, a) => {
    if (typeof x !== 'string') throw new Bad(`${a}: expected a string`);
    return x;
  });
  for (const k of ['temp', 'advisory', 'setConfig']) bool(o, k, at);
  return o as unknown as RecordWire;
}

const DIGITS = /^\d+$/;

function session(v: unknown, at: string): SessionState {
  const o = obj(v, at);
  int(o, 'id', at);
  int(o, 'clientFd', at, 0);
  str(o, 'user', at);
  str(o, 'database', at);
  strings(o, 'startupParams', at);
  int(o, 'secret', at);
  backend(o.primary, `${at}.primary`);
  if (o.standby !== null) backend(o.standby, `${at}.standby`);
  bool(o, 'primaryOnly', at);
  bool(o, 'standbyDiverged', at);
  if (o.causal !== undefined) {
    const c = obj(o.causal, `${at}.causal`);
    for (const k of ['own', 'given']) if (!DIGITS.test(str(c, k, `${at}.causal`))) throw new Bad(`${at}.causal.${k}: expected decimal digits`);
    const p = c.pendingSince;
    if (p !== null && p !== 'running' && typeof p !== 'number') throw new Bad(`${at}.causal.pendingSince: expected a number, 'running' or null`);
  }
  int(o, 'answered', at);
  list(o, 'statements', at, statement);
  if (o.record !== undefined) record(o.record, `${at}.record`);
  return o as unknown as SessionState;
}

function idleConn(v: unknown, at: string): IdleConnState {
  const b = backend(v, at) as unknown as Record<string, unknown>;
  str(b, 'user', at);
  str(b, 'database', at);
  str(b, 'options', at);
  return b as unknown as IdleConnState;
}

/** Checks a list (decoded JSON) as `what`; throws an Error naming the first bad field. */
function checkList<T>(v: unknown, what: string, each: (v: unknown, at: string) => T): T[] {
  if (!Array.isArray(v)) throw new Error(`${what}: expected an array`);
  try {
    for (let i = 0; i < v.length; i++) each(v[i], `${what}.${i}`);
  } catch (err) {
    if (err instanceof Bad) throw new Error(err.message);
    throw err;
  }
  return v as T[];
}

export function checkSessions(v: unknown): SessionState[] {
  return checkList(v, 'sessions', session);
}

export function checkIdleConns(v: unknown): IdleConnState[] {
  return checkList(v, 'conns', idleConn);
}

// ---- packing: the servers' ParameterStatus values, once per message ------------------------
//
// Every connection to one server reports nearly the same dozen parameters: sent once per
// message and referred to by index, a batch of sessions is half the size. That matters more
// than the bytes: the old process's batches in flight then fit in the socket's buffer, so it
// never waits for the successor to read while the successor adopts the previous batch.

type Legs = { params: Record<string, string> | number }[];

function legsOf(m: { type: string; sessions?: unknown; conns?: unknown }): Legs {
  if (m.type === 'sessions' && Array.isArray(m.sessions)) {
    const out: Legs = [];
    for (const s of m.sessions as { primary?: unknown; standby?: unknown }[]) {
      for (const l of [s?.primary, s?.standby]) if (typeof l === 'object' && l !== null) out.push(l as Legs[number]);
    }
    return out;
  }
  if (m.type === 'pool' && Array.isArray(m.conns)) return (m.conns as unknown[]).filter((c) => typeof c === 'object' && c !== null) as Legs;
  return [];
}

/** A copy of `m` for the wire with each leg's `params` an index into `paramSets`. */
export function packParams<M extends { type: string }>(m: M): M | (M & { paramSets: Record<string, string>[] }) {
  if (m.type !== 'sessions' && m.type !== 'pool') return m;
  const sets: Record<string, string>[] = [];
  const index = new Map<string, number>();
  const pack = (l: BackendState): Omit<BackendState, 'params'> & { params: number } => {
    const key = JSON.stringify(l.params);
    let i = index.get(key);
    if (i === undefined) index.set(key, (i = sets.push(l.params) - 1));
    return { ...l, params: i };
  };
  if (m.type === 'sessions') {
    const sessions = (m as unknown as { sessions: SessionState[] }).sessions.map((s) => ({ ...s, primary: pack(s.primary), standby: s.standby && pack(s.standby) }));
    return { ...m, sessions, paramSets: sets };
  }
  return { ...m, conns: (m as unknown as { conns: IdleConnState[] }).conns.map(pack), paramSets: sets };
}

/** Undoes packParams on a decoded message, in place (before its check); a bad index is an error that names it. */
export function unpackParams(raw: { type: string; paramSets?: unknown; sessions?: unknown; conns?: unknown }): void {
  const sets = raw.paramSets;
  if (sets === undefined) return;
  delete raw.paramSets;
  if (!Array.isArray(sets)) throw new Error('paramSets: expected an array');
  for (const l of legsOf(raw)) {
    const i = l.params;
    if (typeof i !== 'number') continue;
    const set: unknown = sets[i];
    if (set === undefined) throw new Error(`params: index ${i} is not in paramSets (${sets.length} sets)`);
    l.params = set as Record<string, string>;
  }
}
