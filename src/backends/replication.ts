// Replication monitor: the role, WAL positions and lag of every backend, for routing
// (no reads on a standby over max_lag_bytes) and SHOW POOL_NODES. Its periodic samples come
// from the health checks (follow()): each check's one round trip also reads the WAL positions,
// the WAL receiver and, on a primary, pg_stat_replication (replication_state, sync_state,
// replay lag in time) — wal-sample.ts. So an idle peer runs one query per backend per
// period, not one for the check and more for the sample. The monitor's own connection (one
// per backend, opened when first needed) serves samples asked for between checks: refresh()
// (e.g. right after a failover) and hurried ones. Each backend has its own loop, so a hung
// backend never delays the others. Observations only: it never decides status or role.
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
import { LSN_SQL, observe, type Observation } from './wal-sample.js';
import type { HealthChecker } from './health.js';

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
    for (const s of this.slots) {
      if (s.wake) s.wake();
      else s.hurried = true;
    }
  }

  /** Takes the samples `health`'s checks bring (every period), and forgets a backend it declares down. */
  follow(health: HealthChecker): void {
    health.on('observed', (id, o) => {
      const s = this.slots[id];
      if (s && this.started && !this.stopping) this.record(s, o);
    });
    health.on('down', (e) => {
      const s = this.slots[e.id];
      if (!s) return;
      s.sample = null;
      s.rows = null;
      void this.drop(s);
    });
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

  /** Samples on the monitor's own connection, when asked (hurry, refresh); the periodic ones come with the health checks. */
  private async runLoop(s: Slot): Promise<void> {
    while (!this.stopping) {
      if (!s.hurried) {
        await new Promise<void>((resolve) => {
          if (this.stopping) return resolve();
          s.wake = () => {
            s.wake = null;
            resolve();
          };
        });
        if (this.stopping) break;
      }
      s.hurried = false;
      // Only backends the health check currently reaches: no point queuing on a dead one.
      if (this.registry.get(s.id).pgStatus === 'down') continue;
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
    this.record(s, await observe(c, monotonicMs()));
  }

  /** A full sample (from a health check or the monitor's own query) becomes the backend's latest. */
  private record(s: Slot, o: Observation): void {
    // Two connections sample a backend (the health check's and this monitor's): an answer that
    // arrives after a later-sent one is stale. Sample times only move forward, so an insert
    // position is never paired with a send time later than its own (causal reads rely on it).
    if (s.sample && o.sentAt <= s.sample.sentAt) return;
    const row = o.row;
    s.sample = {
      id: s.id,
      at: new Date(),
      sentAt: o.sentAt,
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
    s.rows = row.rec ? null : o.walSenders.map((x) => ({ applicationName: x.application_name, state: x.state, syncState: x.sync_state, replayLagMs: x.replay_lag_ms, replayLsn: parseLsn(x.replay_lsn) }));
    this.publish();
  }

  /** A hurried sample: the WAL positions of `prev`, the last full sample, brought up to date. */
  private async sampleLsn(s: Slot, prev: ReplicationSample): Promise<void> {
    const c = await this.connect(s);
    const sentAt = monotonicMs();
    const row = (await c.query<{ rec: boolean; cur: string | null; ins: string | null; recv: string | null; replay: string | null }>(LSN_SQL)).rows[0]!;
    // Promoted (or demoted) since: the rest of the last sample is stale too.
    if (row.rec !== prev.inRecovery) return this.sampleOnce(s);
    // Onto the latest full sample; none (forgotten: declared down) or one sent later (a health
    // check's, answered first): this one has nothing to add.
    const base = s.sample;
    if (!base || sentAt <= base.sentAt) return;
    s.sample = { ...base, at: new Date(), sentAt, currentLsn: parseLsn(row.cur), insertLsn: parseLsn(row.ins), receiveLsn: parseLsn(row.recv), replayLsn: parseLsn(row.replay) };
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

