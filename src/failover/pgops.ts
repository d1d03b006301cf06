// EXECUTION steps against PostgreSQL, each idempotent so a coordinator that takes over an
// unfinished failover can run them again: promoting a server that is already a primary is
// a no-op, pointing a standby at the primary it already follows changes nothing.
// They connect with the health-check credentials, which must be a superuser (pg_promote,
// ALTER SYSTEM, COPY TO PROGRAM for the switchover shutdown).
import pg from 'pg';
import type { HealthCheckConfig } from '../config/index.js';
import { parseLsn } from '../backends/lsn.js';
import { sameHost } from '../backends/hosts.js';
import type { WalState } from '../backends/replication.js';

export interface Target {
  id: number;
  host: string;
  port: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function withClient<T>(t: Target, hc: HealthCheckConfig, timeoutMs: number, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({
    host: t.host,
    port: t.port,
    user: hc.user,
    password: hc.password,
    database: hc.database,
    application_name: 'pgwatchdog failover',
    connectionTimeoutMillis: Math.min(hc.connect_timeout_ms, timeoutMs),
    query_timeout: timeoutMs,
  });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return await fn(c);
  } catch (err) {
    throw new Error(`backend ${t.id} (${t.host}:${t.port}): ${(err as Error).message}`, { cause: err });
  } finally {
    const conn = (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection;
    c.end().catch(() => undefined);
    setTimeout(() => conn?.stream?.destroy(), 200).unref();
  }
}

/** A backend's WAL state, and since when its server runs (a server running since before it was
 * detached was never down: the detach was a false detection). */
export interface ServerState extends WalState {
  startedAt: Date;
}

export async function walState(t: Target, hc: HealthCheckConfig, timeoutMs: number): Promise<ServerState> {
  return withClient(t, hc, timeoutMs, async (c) => {
    const r = await c.query<{ rec: boolean; cur: string | null; recv: string | null; replay: string | null; st: string | null; sh: string | null; sp: number | null; started: Date }>(
      `SELECT pg_is_in_recovery() AS rec, pg_postmaster_start_time() AS started,
        CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS cur,
        pg_last_wal_receive_lsn()::text AS recv, pg_last_wal_replay_lsn()::text AS replay,
        w.status AS st, w.sender_host AS sh, w.sender_port AS sp
       FROM (SELECT 1) one LEFT JOIN (SELECT * FROM pg_stat_wal_receiver LIMIT 1) w ON true`,
    );
    const x = r.rows[0]!;
    return {
      inRecovery: x.rec,
      currentLsn: parseLsn(x.cur),
      receiveLsn: parseLsn(x.recv),
      replayLsn: parseLsn(x.replay),
      walReceiverStatus: x.st,
      senderHost: x.sh,
      senderPort: x.sp,
      startedAt: x.started,
    };
  });
}

/** Promotes a standby and waits until it accepts writes. Already a primary: nothing to do. */
export async function promote(t: Target, hc: HealthCheckConfig, timeoutMs: number): Promise<'promoted' | 'already primary'> {
  return withClient(t, hc, timeoutMs, async (c) => {
    const [r] = (await c.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec')).rows;
    if (!r!.rec) return 'already primary';
    // wait => false and our own 10 ms poll: pg_promote's own wait polls every 100 ms.
    await c.query('SELECT pg_promote(false)');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [x] = (await c.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec')).rows;
      if (!x!.rec) return 'promoted';
      if (Date.now() > deadline) throw new Error(`still in recovery ${timeoutMs} ms after pg_promote()`);
      await sleep(10);
    }
  });
}

/** Splits a libpq key=value connection string (values may be single-quoted with \ escapes). */
export function parseConninfo(s: string): [string, string][] {
  const out: [string, string][] = [];
  const re = /\s*([A-Za-z_]+)\s*=\s*('((?:[^'\\]|\\.)*)'|[^\s']*)/gy;
  let m: RegExpExecArray | null;
  while (re.lastIndex < s.length && (m = re.exec(s)) !== null) {
    if (m[0].trim() === '') break;
    out.push([m[1]!, m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : m[2]!]);
  }
  return out;
}

export function formatConninfo(pairs: [string, string][]): string {
  return pairs.map(([k, v]) => `${k}=${/^[^\s'\\]+$/.test(v) ? v : `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`}`).join(' ');
}

/** The standby's primary_conninfo with host/port (and user/password when configured)
 * replaced; everything else (application_name, sslmode, …) is kept. */
export function rewriteConninfo(old: string, to: { host: string; port: number; user?: string; password?: string }): string {
  const pairs = parseConninfo(old).filter(([k]) => !['host', 'hostaddr', 'port'].includes(k) && !(to.user !== undefined && k === 'user') && !(to.password !== undefined && k === 'password'));
  const add: [string, string][] = [['host', to.host], ['port', String(to.port)]];
  if (to.user !== undefined) add.push(['user', to.user]);
  if (to.password !== undefined) add.push(['password', to.password]);
  return formatConninfo([...add, ...pairs]);
}

export type FollowOutcome = 'repointed' | 'already following';

/** Points a standby at a new primary: ALTER SYSTEM SET primary_conninfo + pg_reload_conf()
 * (PostgreSQL ≥ 13 restarts the WAL receiver on reload; with recovery_target_timeline
 * 'latest' it follows the new timeline). */
export async function follow(
  t: Target,
  primary: Target,
  hc: HealthCheckConfig,
  timeoutMs: number,
  repl: { user?: string; password?: string },
): Promise<{ outcome: FollowOutcome; conninfo: string }> {
  return withClient(t, hc, timeoutMs, async (c) => {
    const [r] = (
      await c.query<{ rec: boolean; ci: string; slot: string }>(`SELECT pg_is_in_recovery() AS rec, current_setting('primary_conninfo') AS ci, current_setting('primary_slot_name') AS slot`)
    ).rows;
    if (!r!.rec) throw new Error('is not in recovery (a primary cannot follow another primary without a rewind)');
    // A standby that streams through a slot needs that slot on its new primary (a promoted
    // standby has none), else it is refused and never catches up.
    if (r!.slot) await ensureSlot(primary, hc, timeoutMs, r!.slot);
    const next = rewriteConninfo(r!.ci, { host: primary.host, port: primary.port, user: repl.user, password: repl.password });
    if (next === r!.ci) return { outcome: 'already following', conninfo: redact(next) };
    await c.query(`ALTER SYSTEM SET primary_conninfo = ${c.escapeLiteral(next)}`);
    await c.query('SELECT pg_reload_conf()');
    return { outcome: 'repointed', conninfo: redact(next) };
  });
}

/** Creates a physical replication slot on `t` unless it exists (idempotent). */
export async function ensureSlot(t: Target, hc: HealthCheckConfig, timeoutMs: number, slot: string): Promise<void> {
  await withClient(t, hc, timeoutMs, (c) =>
    c.query(`SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, [slot]),
  );
}

/** Waits until the standby streams from `primary`; false on timeout. */
export async function waitStreamingFrom(t: Target, primary: Target, hc: HealthCheckConfig, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const w = await walState(t, hc, Math.min(2000, timeoutMs));
      if (w.walReceiverStatus === 'streaming' && w.senderPort === primary.port && sameHost(w.senderHost, primary.host)) return true;
    } catch {
      // not reachable right now; keep waiting
    }
    await sleep(100);
  }
  return false;
}

export function redact(conninfo: string): string {
  return formatConninfo(parseConninfo(conninfo).map(([k, v]) => [k, k === 'password' ? '********' : v]));
}

/** Fast shutdown of a primary from SQL: COPY … TO PROGRAM sends SIGINT to its postmaster
 * (the server host needs no ssh). A fast shutdown makes the WAL senders ship everything,
 * the shutdown checkpoint included, to connected standbys before the server exits. */
export async function cleanShutdown(t: Target, hc: HealthCheckConfig, timeoutMs: number): Promise<void> {
  try {
    await withClient(t, hc, timeoutMs, async (c) => {
      const [r] = (await c.query<{ dir: string }>(`SELECT current_setting('data_directory') AS dir`)).rows;
      const pidFile = `${r!.dir}/postmaster.pid`;
      const cmd = `kill -INT $(head -1 '${pidFile.replace(/'/g, `'\\''`)}')`;
      await c.query(`COPY (SELECT 1) TO PROGRAM ${c.escapeLiteral(cmd)}`);
    });
  } catch (err) {
    // The shutdown ends our own session too: that error is the expected one.
    const msg = (err as Error).message;
    // So is "program ... failed": the shell running kill is hit by the shutdown as well.
    if (!/terminat|shutdown|shutting down|Connection terminated|57P01|ECONNRESET|program ".*" failed/i.test(msg)) throw err;
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      await withClient(t, hc, 1000, (c) => c.query('SELECT 1'));
    } catch (err) {
      // Refused: the postmaster has exited (while it shuts down it answers 57P03 instead).
      if (/ECONNREFUSED|ENOENT/.test((err as Error).message)) return;
    }
    await sleep(50);
  }
  throw new Error(`backend ${t.id} (${t.host}:${t.port}) still accepts connections ${timeoutMs} ms after the shutdown request`);
}

export async function setSyncNames(t: Target, hc: HealthCheckConfig, timeoutMs: number, value: string): Promise<void> {
  await withClient(t, hc, timeoutMs, async (c) => {
    await c.query(`ALTER SYSTEM SET synchronous_standby_names = ${c.escapeLiteral(value)}`);
    await c.query('SELECT pg_reload_conf()');
  });
}

export async function syncState(t: Target, hc: HealthCheckConfig, timeoutMs: number): Promise<{ names: string; streaming: string[] }> {
  return withClient(t, hc, timeoutMs, async (c) => {
    const [r] = (
      await c.query<{ s: string; a: string[] }>(
        `SELECT current_setting('synchronous_standby_names') AS s,
          ARRAY(SELECT application_name FROM pg_stat_replication WHERE state = 'streaming')::text[] AS a`,
      )
    ).rows;
    return { names: r!.s, streaming: r!.a };
  });
}
