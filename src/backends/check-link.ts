// The health checker's connection to one backend. A check is one round trip, bounded by
// timeout_ms: `pg_is_in_recovery()` with the replication monitor's sample (wal-sample.ts,
// OBSERVE_SQL), so that one query per period serves both. It runs over a connection kept open between checks, so a check costs
// one round trip instead of a new connection, a backend process and a SCRAM login; `fresh`
// asks for a new login first (health.ts says when). A connection that failed a check, or
// whose check ran out of time, is dropped, never reused: the next check logs in again.
//
// A kept connection also notices a dead server between checks: PostgreSQL ends its backends
// when the postmaster dies (kill -9 included), so the socket closes and `onLost` fires at
// once, while the connection is idle. What it cannot notice is a server that refuses *new*
// connections while old ones keep working (max_connections reached, a smart shutdown, a
// pg_hba.conf or ALLOW_CONNECTIONS change): the fresh logins exist for that.
import pg from 'pg';
import type { HealthCheckConfig } from '../config/index.js';
import { monotonicMs } from './mono-clock.js';
import { observe, type Observation } from './wal-sample.js';

export interface ProbeResult {
  ok: boolean;
  inRecovery?: boolean;
  error?: string;
  /** Error code when there is one: ECONNREFUSED, 57P03 (starting up), "timeout" … */
  code?: string;
  ms: number;
  /** The check logged in over a new connection (else it reused the kept one). */
  fresh: boolean;
  /** The WAL sample the check's query also returned (when it succeeded). */
  observation?: Observation;
}

export class CheckLink {
  private client: pg.Client | null = null;
  /** A check is running: a connection lost now is that check's failure, not news to report. */
  private busy = false;

  /** onLost: the kept connection broke while idle (its server died or closed it). */
  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly onLost?: (err: Error) => void,
  ) {}

  /** One check; never throws, never takes longer than timeout_ms (plus a few ms to notice). */
  async check(hc: HealthCheckConfig, fresh: boolean): Promise<ProbeResult> {
    const t0 = Date.now();
    if (fresh) this.close();
    const reused = this.client !== null;
    const connectMs = Math.min(hc.connect_timeout_ms, hc.timeout_ms);
    this.busy = true;
    let guard: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      guard = setTimeout(() => reject(Object.assign(new Error(`no answer within timeout_ms ${hc.timeout_ms}`), { code: 'timeout' })), hc.timeout_ms);
    });
    try {
      const work = (async () => {
        const c = this.client ?? (await this.open(hc, connectMs));
        return observe(c, monotonicMs());
      })();
      work.catch(() => undefined);
      const observation = await Promise.race([work, deadline]);
      return { ok: true, inRecovery: observation.row.rec, ms: Date.now() - t0, fresh: !reused, observation };
    } catch (err) {
      this.close();
      const e = err as Error & { code?: string };
      const timedOut = e.message === 'timeout expired';
      const msg = timedOut ? `connect not completed within ${connectMs} ms` : e.message;
      return { ok: false, error: reused ? `${msg} (on the kept connection)` : msg, code: e.code ?? (timedOut ? 'timeout' : undefined), ms: Date.now() - t0, fresh: !reused };
    } finally {
      clearTimeout(guard);
      this.busy = false;
    }
  }

  /** Drops the kept connection (a goodbye is sent, but not waited for). */
  close(): void {
    const c = this.client;
    this.client = null;
    if (!c) return;
    // Do not wait for a goodbye from a server that may never answer.
    const conn = (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection;
    c.end().catch(() => undefined);
    setTimeout(() => conn?.stream?.destroy(), 100).unref();
  }

  private async open(hc: HealthCheckConfig, connectMs: number): Promise<pg.Client> {
    const c = new pg.Client({
      host: this.host,
      port: this.port,
      user: hc.user,
      password: hc.password,
      database: hc.database,
      application_name: 'pgwatchdog health check',
      connectionTimeoutMillis: connectMs,
      keepAlive: false,
    });
    // Held before connecting, so a check that runs out of time closes a connect in progress.
    this.client = c;
    const lost = (err: Error): void => {
      if (this.client !== c) return;
      this.client = null;
      if (!this.busy) this.onLost?.(err);
    };
    c.on('error', lost);
    c.on('end', () => lost(new Error('connection closed by the server')));
    await c.connect();
    return c;
  }
}
