// What one round trip tells of a backend's WAL and replication: the SQL and the row types,
// shared by the health check (which runs CHECK_SQL every period on its kept connection and
// hands the result on) and the replication monitor (which reads it, and samples on its own
// connection only when asked to hurry or refresh).
import type pg from 'pg';

export const SAMPLE_SQL = `SELECT pg_is_in_recovery() AS rec,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS cur,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text END AS ins,
  pg_last_wal_receive_lsn()::text AS recv,
  pg_last_wal_replay_lsn()::text AS replay,
  w.status AS wr_status, w.sender_host, w.sender_port, w.conninfo AS wr_conninfo,
  current_setting('cluster_name') AS cluster_name
FROM (SELECT 1) one LEFT JOIN (SELECT * FROM pg_stat_wal_receiver LIMIT 1) w ON true`;

export const REPLICATION_SQL = `SELECT application_name, state, sync_state,
  (extract(epoch FROM replay_lag) * 1000)::float8 AS replay_lag_ms, replay_lsn::text AS replay_lsn
FROM pg_stat_replication`;

/** A hurried sample: the WAL positions alone (the rest of the last full sample stands). */
export const LSN_SQL = `SELECT pg_is_in_recovery() AS rec,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS cur,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text END AS ins,
  pg_last_wal_receive_lsn()::text AS recv,
  pg_last_wal_replay_lsn()::text AS replay`;

/** The sample and the server's walsenders in one round trip (a standby's pg_stat_replication
 * is empty unless it feeds a cascading standby). Its first column is the health check's answer. */
export const OBSERVE_SQL = `${SAMPLE_SQL};\n${REPLICATION_SQL}`;

export interface SampleRow {
  rec: boolean;
  cur: string | null;
  ins: string | null;
  recv: string | null;
  replay: string | null;
  wr_status: string | null;
  sender_host: string | null;
  sender_port: number | null;
  wr_conninfo: string | null;
  cluster_name: string | null;
}

export interface WalSenderRow {
  application_name: string;
  state: string;
  sync_state: string;
  replay_lag_ms: number | null;
  replay_lsn: string | null;
}

/** One OBSERVE_SQL answer. */
export interface Observation {
  /** When the query was sent (mono-clock.ts): the server ran it after this instant. */
  sentAt: number;
  row: SampleRow;
  walSenders: WalSenderRow[];
}

/** Runs OBSERVE_SQL on `c`. */
export async function observe(c: pg.Client, sentAt: number): Promise<Observation> {
  // Two statements in one simple Query: the driver answers with one result per statement.
  const [sample, senders] = (await c.query(OBSERVE_SQL)) as unknown as [pg.QueryResult<SampleRow>, pg.QueryResult<WalSenderRow>];
  return { sentAt, row: sample.rows[0]!, walSenders: senders.rows };
}
