// Replication monitor: the role, WAL positions and lag of every backend, for routing
// (no reads on a standby over max_lag_bytes) and SHOW POOL_NODES. One persistent
// connection per backend, sampled on that backend's health-check period with one cheap
// query; a primary is also asked for pg_stat_replication (replication_state, sync_state,
// replay lag in time). Each backend has its own loop, so a hung backend never delays the
// others. Observations only: it never decides status or role.
//
// Causal reads (src/proxy/causal.ts) read two more things from each sample: the primary's WAL
// insert position and the instant the sample's query was sent (`sampledAt`, mono-clock.ts). A
// commit a session saw complete before that instant is covered by that insert position. While
// a session waits on such a sample, the proxy asks for one of that backend sooner (hurry): it
// is then sampled at most every proxy.causal_sample_ms instead of every period_ms, with a
// lighter query (WAL positions only; LSN_SQL) that refreshes the last full sample.
import pg from 'pg';
import type { Config, HealthCheckConfig } from '../config/index.js';
import { healthCheckFor } from '../config/index.js';
import type { Logger } from '../log.js';
import type { BackendRegistry } from './registry.js';
import { parseLsn } from './lsn.js';
import { sameHost } from './hosts.js';
import { monotonicMs } from './mono-clock.js';

/** What one backend says of its WAL and where it streams from. */
export interface WalState {
  inRecovery: boolean;
  /** Primary: current WAL write position (pg_current_wal_lsn). */
  currentLsn: bigint | null;
  receiveLsn: bigint | null;
  replayLsn: bigint | null;
  /** Standby: pg_stat_wal_receiver.status ("streaming", …), null when no WAL receiver runs. */
  walReceiverStatus: string | null;
  /** Standby: the server it streams from. */
  senderHost: string | null;
  senderPort: number | null;
}

export interface ReplicationSample extends WalState {
  id: number;
  at: Date;
  /** When the query was sent (mono-clock.ts): the server ran it after this instant. */
  sentAt: number;
  /** Primary: current WAL insert position (pg_current_wal_insert_lsn), at or past every commit
   * record already written to WAL buffers, even one not yet written out (synchronous_commit off). */
  insertLsn: bigint | null;
  /** Standby: the application_name its walsender shows on the primary. */
  applicationName: string;
}

export interface ReplicationRow {
  applicationName: string;
  state: string;
  syncState: string;
  replayLagMs: number | null;
  replayLsn: bigint | null;
}

const SAMPLE_SQL = `SELECT pg_is_in_recovery() AS rec,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS cur,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text END AS ins,
  pg_last_wal_receive_lsn()::text AS recv,
  pg_last_wal_replay_lsn()::text AS replay,
  w.status AS wr_status, w.sender_host, w.sender_port, w.conninfo AS wr_conninfo,
  current_setting('cluster_name') AS cluster_name
FROM (SELECT 1) one LEFT JOIN (SELECT * FROM pg_stat_wal_receiver LIMIT 1) w ON true`;

/** A hurried sample: the WAL positions alone (the rest of the last full sample stands). */
const LSN_SQL = `SELECT pg_is_in_recovery() AS rec,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS cur,
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text END AS ins,
  pg_last_wal_receive_lsn()::text AS recv,
  pg_last_wal_replay_lsn()::text AS replay`;

const REPLICATION_SQL = `SELECT application_name, state, sync_state,
  (extract(epoch FROM replay_lag) * 1000)::float8 AS replay_lag_ms, replay_lsn::text AS replay_lsn
FROM pg_stat_replication`;

/** The application_name a standby's walsender shows: from its primary_conninfo, else its
 * cluster_name, else PostgreSQL's default "walreceiver". */
export function walReceiverApplicationName(conninfo: string | null, clusterName: string | null): string {
  const m = conninfo ? /(?:^|\s)application_name=('(?:[^'\\]|\\.)*'|\S+)/.exec(conninfo) : null;
  if (m) {
    const v = m[1]!;
    return v.startsWith("'") ? v.slice(1, -1).replace(/\\(.)/g, '$1') : v;
  }
  return clusterName ? clusterName : 'walreceiver';
}

interface Slot {
  id: number;
  hc: HealthCheckConfig;
  client: pg.Client | null;
  sample: ReplicationSample | null;
  rows: ReplicationRow[] | null;
  wake: (() => void) | null;
  /** hurry() came while this slot was sampling: sample again without sleeping. */
  hurried: boolean;
  /** The next round is a hurried one (LSN_SQL). */
  light: boolean;
  /** When the last hurried round was asked for (mono-clock.ts ms), and the timer of the next. */
  lastHurry: number;
  hurryTimer: NodeJS.Timeout | undefined;
  loop: Promise<void> | null;
}

export class ReplicationMonitor {
  private readonly registry: BackendRegistry;
  private readonly logger: Logger;
  private readonly slots: Slot[];
  private stopping = false;
  private started = false;
  /** Causal reads: the shortest time between two hurried samples of a backend (ms). */
  private readonly hurryMs: number;

  private readonly onConnectionLost: ((id: number, err: Error) => void) | undefined;

  /** onConnectionLost: called when the monitor's idle connection to a backend breaks (its
   * server died or closed it); wire it to HealthChecker.checkNow so a dead primary is
   * confirmed at once even when no client traffic notices. */
  constructor(opts: { config: Config; registry: BackendRegistry; logger: Logger; onConnectionLost?: (id: number, err: Error) => void }) {
    this.onConnectionLost = opts.onConnectionLost;
    this.registry = opts.registry;
    this.logger = opts.logger.child({ component: 'replication' });
    this.slots = opts.config.backends.map((_, id) => ({ id, hc: healthCheckFor(opts.config, id), client: null, sample: null, rows: null, wake: null, hurried: false, light: false, lastHurry: -Infinity, hurryTimer: undefined, loop: null }));
    this.hurryMs = opts.config.proxy.causal_sample_ms;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.stopping = false;
    for (const s of this.slots) s.loop = this.runLoop(s);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const s of this.slots) {
      clearTimeout(s.hurryTimer);
      s.hurryTimer = undefined;
      s.wake?.();
    }
    await Promise.all(this.slots.map((s) => s.loop));
    await Promise.all(this.slots.map((s) => this.drop(s)));
    this.started = false;
  }

  /** The latest sample of backend `id` (null before the first, or after it went away). */
  sample(id: number): ReplicationSample | null {
    return this.slots[id]?.sample ?? null;
  }

  /** Samples every backend now (e.g. right after a failover) instead of at the next period. */
  refresh(): void {
    for (const s of this.slots) s.wake?.();
  }

  /**
   * A session waits on a fresh sample of backend `id` (causal reads: of the primary, sent after
   * its commit; of its standby, showing the commit replayed): sample it soon, coalescing calls
   * so that hurried samples start at most every proxy.causal_sample_ms. Cheap to call per read.
   */
  hurry(id: number): void {
    const s = this.slots[id];
    if (s === undefined || s.hurryTimer !== undefined || !this.started || this.stopping) return;
    const wait = s.lastHurry + this.hurryMs - monotonicMs();
    if (wait <= 0) return this.hurryNow(s);
    s.hurryTimer = setTimeout(() => {
      s.hurryTimer = undefined;
      this.hurryNow(s);
    }, wait);
    s.hurryTimer.unref();
  }

  private hurryNow(s: Slot): void {
    s.lastHurry = monotonicMs();
    s.light = true;
    if (s.wake) s.wake();
    else s.hurried = true;
  }

  private async runLoop(s: Slot): Promise<void> {
    while (!this.stopping) {
      // Only backends the health check currently reaches: no point queuing on a dead one.
      if (this.registry.get(s.id).pgStatus !== 'down') {
        const light = s.light ? s.sample : null;
        s.light = false;
        try {
          await (light ? this.sampleLsn(s, light) : this.sampleOnce(s));
        } catch (err) {
          this.logger.debug({ backend: s.id, err: (err as Error).message }, 'replication sample failed');
          s.sample = null;
          s.rows = null;
          await this.drop(s);
        }
      } else if (s.sample) {
        s.sample = null;
        s.rows = null;
        await this.drop(s);
      }
      if (s.hurried) {
        // A round was asked for while this sample ran (it may have been sent too early).
        s.hurried = false;
        continue;
      }
      await new Promise<void>((resolve) => {
        if (this.stopping) return resolve();
        const t = setTimeout(done, s.hc.period_ms);
        function done() {
          clearTimeout(t);
          s.wake = null;
          resolve();
        }
        s.wake = done;
      });
    }
  }

  private async drop(s: Slot): Promise<void> {
    const c = s.client;
    s.client = null;
    if (c) await Promise.race([c.end().catch(() => undefined), new Promise((r) => setTimeout(r, 200))]);
  }

  private async connect(s: Slot): Promise<pg.Client> {
    if (s.client) return s.client;
    const b = this.registry.get(s.id);
    const c = new pg.Client({
      host: b.host,
      port: b.port,
      user: s.hc.user,
      password: s.hc.password,
      database: s.hc.database,
      application_name: 'pgwatchdog replication monitor',
      connectionTimeoutMillis: Math.min(s.hc.connect_timeout_ms, s.hc.timeout_ms),
      query_timeout: s.hc.timeout_ms,
    });
    const lost = (err: Error) => {
      if (s.client !== c) return;
      s.client = null;
      if (!this.stopping) this.onConnectionLost?.(s.id, err);
    };
    c.on('error', lost);
    c.on('end', () => lost(new Error('connection closed by the server')));
    await c.connect();
    s.client = c;
    return c;
  }

  private async sampleOnce(s: Slot): Promise<void> {
    const c = await this.connect(s);
    const sentAt = monotonicMs();
    const r = await c.query<{
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
    }>(SAMPLE_SQL);
    const row = r.rows[0]!;
    s.sample = {
      id: s.id,
      at: new Date(),
      sentAt,
      inRecovery: row.rec,
      currentLsn: parseLsn(row.cur),
      insertLsn: parseLsn(row.ins),
      receiveLsn: parseLsn(row.recv),
      replayLsn: parseLsn(row.replay),
      walReceiverStatus: row.wr_status,
      senderHost: row.sender_host,
      senderPort: row.sender_port,
      applicationName: walReceiverApplicationName(row.wr_conninfo, row.cluster_name),
    };
    if (!row.rec) {
      const rr = await c.query<{ application_name: string; state: string; sync_state: string; replay_lag_ms: number | null; replay_lsn: string | null }>(REPLICATION_SQL);
      s.rows = rr.rows.map((x) => ({ applicationName: x.application_name, state: x.state, syncState: x.sync_state, replayLagMs: x.replay_lag_ms, replayLsn: parseLsn(x.replay_lsn) }));
    } else s.rows = null;
    this.publish();
  }

  /** A hurried sample: the WAL positions of `prev`, the last full sample, brought up to date. */
  private async sampleLsn(s: Slot, prev: ReplicationSample): Promise<void> {
    const c = await this.connect(s);
    const sentAt = monotonicMs();
    const row = (await c.query<{ rec: boolean; cur: string | null; ins: string | null; recv: string | null; replay: string | null }>(LSN_SQL)).rows[0]!;
    // Promoted (or demoted) since: the rest of the last sample is stale too.
    if (row.rec !== prev.inRecovery) return this.sampleOnce(s);
    s.sample = { ...prev, at: new Date(), sentAt, currentLsn: parseLsn(row.cur), insertLsn: parseLsn(row.ins), receiveLsn: parseLsn(row.recv), replayLsn: parseLsn(row.replay) };
    this.publish();
  }

  /** Recomputes every backend's WAL/lag fields from the latest samples. */
  private publish(): void {
    const primary = this.currentPrimary();
    const pSample = primary ? primary.sample : null;
    for (const s of this.slots) {
      const x = s.sample;
      if (!x) continue;
      if (!x.inRecovery) {
        this.registry.update(s.id, { lsn: x.currentLsn, receiveLsn: null, insertLsn: x.insertLsn, lagBytes: 0, lagMs: 0, replicationState: '', syncState: '' }, 'replication sample');
        this.registry.sampled(s.id, x.sentAt);
        continue;
      }
      let lagBytes: number | null = null;
      const pos = x.replayLsn ?? x.receiveLsn;
      if (pSample?.currentLsn != null && pos !== null) {
        const d = pSample.currentLsn - pos;
        lagBytes = d > 0n ? Number(d) : 0;
      }
      // Match the standby to its walsender by application_name; ambiguous names (several
      // standbys left at "walreceiver") are not matched rather than matched wrongly.
      const streamsFromPrimary = primary !== undefined && this.sendsTo(x, primary.id);
      const matches = streamsFromPrimary ? (primary!.rows ?? []).filter((r) => r.applicationName === x.applicationName) : [];
      const row = matches.length === 1 ? matches[0]! : undefined;
      const lagMs = row ? (row.replayLagMs ?? (lagBytes === 0 ? 0 : null)) : lagBytes === 0 ? 0 : null;
      this.registry.update(
        s.id,
        {
          lsn: x.replayLsn,
          receiveLsn: x.receiveLsn,
          insertLsn: null,
          lagBytes,
          lagMs: lagMs === null ? null : Math.round(lagMs),
          replicationState: row?.state ?? x.walReceiverStatus ?? '',
          syncState: row?.syncState ?? '',
        },
        'replication sample',
      );
      this.registry.sampled(s.id, x.sentAt);
    }
  }

  private sendsTo(x: ReplicationSample, primaryId: number): boolean {
    const p = this.registry.get(primaryId);
    if (x.senderHost === null) return false;
    return sameHost(x.senderHost, p.host) && x.senderPort === p.port;
  }

  /** The decided primary if it has a sample, else a reachable server that is not in recovery. */
  private currentPrimary(): Slot | undefined {
    const decided = this.registry.primary();
    if (decided) {
      const s = this.slots[decided.id]!;
      if (s.sample && !s.sample.inRecovery) return s;
    }
    return this.slots.find((s) => s.sample && !s.sample.inRecovery && this.registry.get(s.id).status === 'up');
  }
}

