// Health checker: DETECTION. Every backend is checked on its own timer (a slow or
// black-holed backend never delays another's check): `SELECT pg_is_in_recovery()` bounded by
// timeout_ms (a connect alone also by connect_timeout_ms), over a connection kept open
// between checks (check-link.ts). Every fresh_login_every-th check, and every check of a
// round that checkNow started, logs in over a new connection first: a kept connection cannot
// see a server that refuses new ones. A kept connection that breaks while idle starts a
// round at once (checkNow), so a killed server is not noticed later than with a connection
// per check. A failed check is retried max_retries times, retry_delay_ms apart;
// only when every attempt fails is the backend declared down in this peer's local view.
// So a backend is declared down at most
//   timeout_ms × (max_retries + 1) + max_retries × retry_delay_ms
// after its round starts. checkNow() starts a round at once (the proxy calls it when a
// backend connection breaks or a connect is refused), so detection does not wait for the
// next period; the round's own retries still have to confirm it.
//
// The checker only writes observations (pgStatus, pgRole) to the registry and emits
// 'down'/'up' when its confirmed view changes; what a down backend means is decided
// elsewhere (the failover engine, or the watchdog's consensus first).
import { EventEmitter } from 'node:events';
import type { Config, HealthCheckConfig } from '../config/index.js';
import { healthCheckFor } from '../config/index.js';
import type { Logger } from '../log.js';
import type { BackendRegistry } from './registry.js';
import { CheckLink, type ProbeResult } from './check-link.js';
import type { Observation } from './wal-sample.js';

export interface HealthDownEvent {
  id: number;
  /** The last attempt's error. */
  error: string;
  at: Date;
  /** Attempts made in the confirming round (1 + retries). */
  attempts: number;
  /** Why the confirming round ran: "period" or a checkNow reason. */
  trigger: string;
}

export interface HealthUpEvent {
  id: number;
  inRecovery: boolean;
  at: Date;
}

export type { ProbeResult } from './check-link.js';

/** This peer's confirmed view of one backend. */
export interface LocalView {
  id: number;
  state: 'up' | 'down' | 'unknown';
  since: Date;
  inRecovery: boolean | null;
  lastError: string | null;
  lastCheckAt: Date | null;
  lastCheckMs: number | null;
  checks: number;
  failures: number;
}

/** One check over a new connection, closed after it (outside the schedule: no kept connection). */
export async function probeBackend(host: string, port: number, hc: HealthCheckConfig): Promise<ProbeResult> {
  const link = new CheckLink(host, port);
  try {
    return await link.check(hc, true);
  } finally {
    link.close();
  }
}

interface Slot {
  id: number;
  hc: HealthCheckConfig;
  /** The kept connection the checks run over. */
  link: CheckLink;
  /** Checks answered over the kept connection since its login (0: the next check logs in). */
  reused: number;
  view: LocalView;
  running: boolean;
  /** A checkNow arrived while a round ran: run another as soon as it ends. */
  pending: string | null;
  wake: (() => void) | null;
  loop: Promise<void> | null;
}

export class HealthChecker extends EventEmitter<{ down: [HealthDownEvent]; up: [HealthUpEvent]; observed: [number, Observation] }> {
  private readonly registry: BackendRegistry;
  private readonly logger: Logger;
  private readonly slots: Slot[];
  private started = false;
  private stopping = false;

  constructor(opts: { config: Config; registry: BackendRegistry; logger: Logger }) {
    super();
    this.registry = opts.registry;
    this.logger = opts.logger.child({ component: 'health' });
    this.slots = opts.config.backends.map((b, id) => ({
      id,
      hc: healthCheckFor(opts.config, id),
      // A kept connection that breaks while idle is the fastest sign of a dead server.
      link: new CheckLink(b.host, b.port, (err) => this.checkNow(id, `health-check connection lost: ${err.message}`)),
      reused: 0,
      view: { id, state: 'unknown', since: new Date(), inRecovery: null, lastError: null, lastCheckAt: null, lastCheckMs: null, checks: 0, failures: 0 },
      running: false,
      pending: null,
      wake: null,
      loop: null,
    }));
  }

  /** Takes the health-check settings of a reloaded config: each backend's next check uses them. */
  reconfigure(config: Config): void {
    for (const s of this.slots) {
      s.hc = healthCheckFor(config, s.id);
      // Perhaps another user, password or database: the next check logs in with them.
      s.reused = 0;
    }
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.stopping = false;
    for (const s of this.slots) s.loop = this.runLoop(s);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const s of this.slots) s.wake?.();
    await Promise.all(this.slots.map((s) => s.loop));
    for (const s of this.slots) s.link.close();
    this.started = false;
  }

  /** Starts a check round for backend `id` now (coalesced with one already running). */
  checkNow(id: number, reason: string): void {
    const s = this.slots[id];
    if (!s || !this.started || this.stopping) return;
    if (s.running) {
      if (s.pending === null) this.logger.debug({ backend: id, reason }, 'recheck requested during a round: another round follows it');
      s.pending ??= reason;
      return;
    }
    if (s.pending !== null) return; // a round is already about to start
    this.logger.info({ backend: id, reason }, 'immediate health check requested');
    s.pending = reason;
    s.wake?.();
  }

  /** This peer's confirmed view of every backend (for the watchdog's gossip and the admin API). */
  views(): LocalView[] {
    return this.slots.map((s) => ({ ...s.view }));
  }

  view(id: number): LocalView {
    const s = this.slots[id];
    if (!s) throw new RangeError(`no backend ${id}`);
    return { ...s.view };
  }

  /** One check of backend `id` with its own settings, outside the schedule (no retries). */
  probe(id: number): Promise<ProbeResult> {
    const s = this.slots[id];
    if (!s) throw new RangeError(`no backend ${id}`);
    const b = this.registry.get(id);
    return probeBackend(b.host, b.port, s.hc);
  }

  private async runLoop(s: Slot): Promise<void> {
    while (!this.stopping) {
      const trigger = s.pending ?? 'period';
      s.pending = null;
      s.running = true;
      try {
        await this.round(s, trigger);
      } catch (err) {
        this.logger.error({ backend: s.id, err }, 'health check round failed unexpectedly');
      } finally {
        s.running = false;
      }
      if (s.pending !== null) continue;
      await this.sleep(s, s.hc.period_ms);
    }
  }

  private sleep(s: Slot, ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        s.wake = null;
        resolve();
      }
      s.wake = done;
    });
  }

  private async round(s: Slot, trigger: string): Promise<void> {
    let last: ProbeResult | undefined;
    const attempts = s.hc.max_retries + 1;
    for (let attempt = 1; attempt <= attempts && !this.stopping; attempt++) {
      // A fresh login every fresh_login_every checks, and in every round a checkNow started
      // (something saw the backend fail: check it as a new client would); a retry is fresh
      // anyway (a failed check drops the connection).
      const fresh = trigger !== 'period' || s.reused === 0 || s.reused >= s.hc.fresh_login_every;
      last = await s.link.check(s.hc, fresh);
      s.reused = last.ok ? (last.fresh ? 1 : s.reused + 1) : 0;
      s.view.checks++;
      s.view.lastCheckAt = new Date();
      s.view.lastCheckMs = last.ms;
      if (last.ok) {
        this.markUp(s, last.inRecovery!);
        // The same answer carries a WAL sample: the replication monitor takes it (follow()).
        if (last.observation) this.emit('observed', s.id, last.observation);
        return;
      }
      s.view.failures++;
      s.view.lastError = last.error ?? 'unknown error';
      if (attempt < attempts) {
        this.logger[s.view.state === 'up' ? 'warn' : 'debug'](
          { backend: s.id, attempt, of: attempts, error: last.error, code: last.code, ms: last.ms, trigger },
          `health check failed, retrying in ${s.hc.retry_delay_ms} ms`,
        );
        // A checkNow during the retry delay must not cut it short: the retries are the confirmation.
        await new Promise((r) => setTimeout(r, s.hc.retry_delay_ms));
      }
    }
    if (last && !last.ok && !this.stopping) this.markDown(s, last, attempts, trigger);
  }

  private markUp(s: Slot, inRecovery: boolean): void {
    const role = inRecovery ? 'standby' : 'primary';
    const was = s.view.state;
    const roleChanged = s.view.inRecovery !== inRecovery;
    s.view.inRecovery = inRecovery;
    s.view.lastError = null;
    this.registry.update(s.id, { pgStatus: 'up', pgRole: role }, 'health check succeeded');
    if (was !== 'up' || roleChanged) {
      const at = new Date();
      if (was !== 'up') {
        s.view.state = 'up';
        s.view.since = at;
      }
      this.logger.info({ backend: s.id, was, role }, was === 'up' ? `backend now reports itself ${role}` : `backend is reachable (${role})`);
      this.emit('up', { id: s.id, inRecovery, at });
    }
  }

  private markDown(s: Slot, last: ProbeResult, attempts: number, trigger: string): void {
    this.registry.update(s.id, { pgStatus: 'down' }, `health check failed ${attempts} time(s): ${last.error}`);
    if (s.view.state === 'down') return;
    const at = new Date();
    const was = s.view.state;
    s.view.state = 'down';
    s.view.since = at;
    this.logger.warn({ backend: s.id, was, attempts, error: last.error, code: last.code, trigger }, 'backend unreachable after all health-check retries');
    this.emit('down', { id: s.id, error: last.error ?? 'unknown error', at, attempts, trigger });
  }
}
