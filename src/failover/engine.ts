// The failover engine's QUEUE: a serial queue of requests (node down, node up / failback,
// promote with or without switchover, close idle), its status and history. Each request is
// decided by a pure function (decide.ts: what to do and why) and carried out by the
// execution (execute.ts); every state change goes through the Decisions sink.
//
// Stages, so the watchdog can plug in (DESIGN.md "How a decision flows"):
//   DETECTION  HealthChecker 'down'/'up' events (this peer's local view).
//   DECISION   request(): in single-peer mode (no watchdog peers) detections feed it
//              directly and a timer runs maintain(); with a watchdog the engine is built
//              with autoRequest: false and a Raft-backed sink, and only the coordinator calls
//              request(), maintain() and findPrimary(); the other peers apply the committed
//              decisions (registry-decisions.ts applyDecision) and run no request.
//   EXECUTION  inside request(); the Raft term reaches the commands as %T.
import { EventEmitter } from 'node:events';
import type { Config } from '../config/index.js';
import { healthCheckFor } from '../config/index.js';
import type { Logger } from '../log.js';
import type { BackendRegistry, BackendState } from '../backends/registry.js';
import type { HealthChecker, HealthDownEvent } from '../backends/health.js';
import { validateTemplate } from './commands.js';
import { decideFailback, decideMaintenance, decideRequest, decideStartupRoles, type Fresh } from './decide.js';
import type { Decisions } from './decisions.js';
import { Abandoned, Execution, RunContext, type EngineMemory } from './execute.js';
import { walState } from './pgops.js';
import { RegistryDecisions } from './registry-decisions.js';
import { planResume } from './resume.js';
import { readStatusFile, writeStatusFile, type StatusFileContent } from './status-file.js';
import { SyncCheck } from './sync-check.js';
import type { FailoverRequest, FailoverResult, FailoverStatus } from './types.js';

interface QueueItem {
  seq: number;
  req: FailoverRequest;
  queuedAt: Date;
}

const HISTORY = 50;

export class FailoverEngine extends EventEmitter<{ result: [FailoverResult]; closeIdle: [number[]] }> {
  private readonly config: Config;
  private readonly registry: BackendRegistry;
  private readonly logger: Logger;
  private readonly health: HealthChecker;
  private readonly decisions: Decisions;
  private readonly autoRequest: boolean;
  private readonly mem: EngineMemory = { lastPrimary: null, adminDetached: new Set(), noCandidate: null };
  private readonly sync: SyncCheck;
  private readonly exec: Execution;
  private tail: Promise<void> = Promise.resolve();
  private readonly queue: QueueItem[] = [];
  private active: (QueueItem & { startedAt: Date }) | null = null;
  private readonly history: FailoverResult[] = [];
  private timer: NodeJS.Timeout | null = null;
  private maintaining = false;
  private started = false;
  private readonly onDown = (ev: HealthDownEvent) => this.handleDown(ev);
  private readonly onUp = () => void this.maintain();
  private readonly onChange = (ch: { id: number; before: Readonly<BackendState>; after: Readonly<BackendState> }) => {
    // Whoever set it (this engine, an operator, the watchdog's replicated state), remember
    // the last routable primary: a later node_down of it means promotion.
    if (ch.after.status === 'up' && ch.after.role === 'primary') {
      this.mem.lastPrimary = ch.id;
      this.mem.noCandidate = null;
    }
    if (ch.before.status !== ch.after.status) this.saveStatus();
  };

  constructor(opts: { config: Config; registry: BackendRegistry; logger: Logger; health: HealthChecker; decisions?: Decisions; autoRequest?: boolean }) {
    super();
    this.config = opts.config;
    this.registry = opts.registry;
    this.logger = opts.logger.child({ component: 'failover' });
    this.health = opts.health;
    this.decisions = opts.decisions ?? new RegistryDecisions(opts.registry, opts.config.watchdog.interlock_timeout_ms);
    this.autoRequest = opts.autoRequest ?? opts.config.watchdog.peers.length === 0;
    this.sync = new SyncCheck(this.config, this.registry, this.logger, () => this.saveStatus());
    this.exec = new Execution(this.config, this.registry, this.decisions, this.mem, this.sync, this.logger);
    this.registry.on('change', this.onChange);
    const f = opts.config.failover;
    for (const [key, tpl] of [['failover_command', f.failover_command], ['follow_primary_command', f.follow_primary_command], ['failback_command', f.failback_command]] as const) {
      const problems = validateTemplate(tpl);
      if (problems.length) throw new Error(`failover.${key}: ${problems.join('; ')}`);
    }
  }

  /** Applies the status file; in single-peer mode also finds the primary (pgpool's
   * find_primary_node) and then follows the health checker. Under the watchdog the
   * coordinator calls findPrimary() and maintain() itself. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.applyStatusFile();
    if (this.autoRequest) await this.findPrimary('startup');
    this.saveStatus();
    if (this.autoRequest) {
      this.health.on('down', this.onDown);
      this.health.on('up', this.onUp);
      const period = Math.min(...this.config.backends.map((_, i) => healthCheckFor(this.config, i).period_ms));
      this.timer = setInterval(() => void this.maintain(), Math.max(200, period));
      this.timer.unref();
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.health.off('down', this.onDown);
    this.health.off('up', this.onUp);
    // Let a failover in progress finish: stopping half-way through a promotion is worse.
    await this.tail;
    this.started = false;
  }

  // ---- the queue ---------------------------------------------------------------------

  /** Queues a request; resolves with its result once it and everything before it ran. */
  request(req: FailoverRequest): Promise<FailoverResult> {
    try {
      for (const id of req.ids) this.registry.get(id); // RangeError for an unknown id, before queuing
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (req.ids.length === 0 && req.kind !== 'close_idle') return Promise.reject(new Error(`${req.kind}: no backend ids given`));
    const item: QueueItem = { seq: this.decisions.nextSeq(), req, queuedAt: new Date() };
    this.queue.push(item);
    this.logger.info({ seq: item.seq, kind: req.kind, backends: req.ids, reason: req.reason, term: req.term ?? this.decisions.term() }, 'failover request queued');
    const p = this.tail.then(() => this.run(item));
    this.tail = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }

  attach(id: number): Promise<FailoverResult> {
    return this.request({ kind: 'node_up', ids: [id], reason: 'attached by operator', source: 'admin' });
  }

  detach(id: number): Promise<FailoverResult> {
    return this.request({ kind: 'node_down', ids: [id], reason: 'detached by operator', source: 'admin' });
  }

  promote(id: number, opts: { switchover?: boolean } = {}): Promise<FailoverResult> {
    return this.request({ kind: 'promote', ids: [id], switchover: opts.switchover ?? false, reason: opts.switchover ? 'switchover requested by operator' : 'promotion requested by operator', source: 'admin' });
  }

  status(): FailoverStatus {
    return {
      active: this.active ? { seq: this.active.seq, kind: this.active.req.kind, ids: this.active.req.ids, reason: this.active.req.reason, startedAt: this.active.startedAt.toISOString() } : null,
      queue: this.queue.map((q) => ({ seq: q.seq, kind: q.req.kind, ids: q.req.ids, reason: q.req.reason, queuedAt: q.queuedAt.toISOString() })),
      history: [...this.history],
      noCandidate: this.mem.noCandidate && { at: this.mem.noCandidate.at, failed: this.mem.noCandidate.failed, summary: this.mem.noCandidate.summary, rejected: this.mem.noCandidate.rejected },
      primary: this.registry.primary()?.id ?? null,
      synchronous: { mode: this.config.failover.synchronous, savedStandbyNames: this.sync.savedNames, last: this.sync.last },
    };
  }

  private async run(item: QueueItem): Promise<FailoverResult> {
    const i = this.queue.indexOf(item);
    if (i >= 0) this.queue.splice(i, 1);
    const startedAt = new Date();
    this.active = { ...item, startedAt };
    const req = item.req;
    const term = req.term ?? this.decisions.term();
    const log = this.logger.child({ seq: item.seq, kind: req.kind, term });
    const ctx = new RunContext(item.seq, req, term, log);
    log.info({ backends: req.ids, reason: req.reason, waitedMs: startedAt.getTime() - item.queuedAt.getTime() }, `failover request started: ${req.kind} ${req.ids.join(',')}`);
    let ok = false;
    let summary: string;
    let abandoned = false;
    const plan = req.resume ? planResume(req.kind, req.ids, req.resume) : decideRequest(this.exec.state(), req, await this.freshEvidence(req, log));
    log.info({ action: plan.action, reason: plan.reason }, `decision: ${plan.action}: ${plan.reason}`);
    if (plan.action === 'nothing') {
      ok = true;
      summary = `nothing to do: ${plan.reason}`;
      // The health checker still holds the stale 'down' view: have it look again now.
      if (req.observed) for (const id of req.ids) this.health.checkNow(id, 'a stale detection was dropped');
    } else if (plan.action === 'refuse') {
      summary = `${req.kind} refused: ${plan.reason}`;
    } else {
      try {
        const replaces = plan.action === 'replace primary' ? plan.oldPrimary : plan.action === 'promote' ? (this.registry.primary()?.id ?? this.mem.lastPrimary) : null;
        await this.exec.record({ type: 'failoverStarted', seq: item.seq, kind: req.kind, ids: req.ids, term, reason: req.reason, replaces });
        if (plan.action === 'close idle') {
          this.emit('closeIdle', plan.ids);
          summary = plan.reason;
        } else summary = await this.exec.run(ctx, plan);
        ok = ctx.steps.every((s) => s.ok);
      } catch (err) {
        abandoned = err instanceof Abandoned;
        summary = abandoned ? `abandoned: ${(err as Error).message}` : `${req.kind} failed: ${(err as Error).message}`;
      }
      if (!abandoned) {
        await this.exec.record({ type: 'failoverFinished', seq: item.seq, ok, summary, newPrimary: ctx.newPrimary }).catch((err: Error) => {
          ok = false;
          summary = `${summary}; the end could not be recorded: ${err.message}`;
        });
      }
    }
    const finishedAt = new Date();
    const from = req.detectedAt ?? item.queuedAt;
    const result: FailoverResult = {
      seq: item.seq,
      kind: req.kind,
      ids: req.ids,
      reason: req.reason,
      term,
      switchover: req.switchover ?? false,
      ok,
      summary,
      oldPrimary: ctx.oldPrimary,
      newPrimary: ctx.newPrimary,
      candidate: ctx.candidate,
      steps: ctx.steps,
      detectedAt: req.detectedAt?.toISOString() ?? null,
      queuedAt: item.queuedAt.toISOString(),
      startedAt: startedAt.toISOString(),
      newPrimaryAt: ctx.newPrimaryAt?.toISOString() ?? null,
      finishedAt: finishedAt.toISOString(),
      toNewPrimaryMs: ctx.newPrimaryAt ? ctx.newPrimaryAt.getTime() - from.getTime() : null,
      durationMs: finishedAt.getTime() - startedAt.getTime(),
    };
    this.history.push(result);
    if (this.history.length > HISTORY) this.history.shift();
    this.active = null;
    log[ok ? 'info' : 'error']({ ok, summary, newPrimary: result.newPrimary, toNewPrimaryMs: result.toNewPrimaryMs, durationMs: result.durationMs }, `failover request finished: ${summary}`);
    this.emit('result', result);
    return result;
  }

  /** A detected request is decided on fresh evidence: each backend probed once more as it
   * starts (the detection may be seconds old, queued behind a failover). */
  private async freshEvidence(req: FailoverRequest, log: Logger): Promise<Map<number, Fresh>> {
    const out = new Map<number, Fresh>();
    if (!req.observed || req.kind !== 'node_down') return out;
    await Promise.all(
      req.ids.map(async (id) => {
        const p = await this.health.probe(id);
        out.set(id, { ok: p.ok, inRecovery: p.inRecovery, error: p.error });
        log.info({ backend: id, ok: p.ok, inRecovery: p.inRecovery, error: p.error, ms: p.ms }, `fresh probe of backend ${id}: ${p.ok ? `answers (${p.inRecovery ? 'in recovery' : 'primary'})` : `no answer: ${p.error}`}`);
      }),
    );
    return out;
  }

  // ---- detection → decision (single-peer mode) ------------------------------------------

  private handleDown(ev: HealthDownEvent): void {
    const b = this.registry.get(ev.id);
    if (b.status !== 'up' && b.status !== 'waiting') {
      this.logger.debug({ backend: ev.id, status: b.status }, `health check down: nothing to do, backend ${ev.id} is already ${b.status}`);
      return;
    }
    void this.request({
      kind: 'node_down',
      ids: [ev.id],
      reason: `health check: unreachable after ${ev.attempts} attempt(s) (${ev.trigger}): ${ev.error}`,
      detectedAt: ev.at,
      source: 'health',
      observed: [{ id: ev.id, status: b.status, role: b.role }],
    }).catch((err: Error) => this.logger.error({ backend: ev.id, err: err.message }, 'node_down request failed'));
  }

  /**
   * Periodic checks that turn observations into requests: attach nodes still waiting,
   * auto_failback, detach a false primary, synchronous replication. Single-peer mode runs it
   * on a timer (and on every health 'up'); with a watchdog the coordinator calls it.
   */
  async maintain(): Promise<void> {
    if (!this.started || this.maintaining) return;
    if (this.active || this.queue.length > 0) {
      this.logger.debug({ active: this.active?.seq ?? null, queued: this.queue.length }, 'maintenance: nothing to do while requests run');
      return;
    }
    this.maintaining = true;
    try {
      const f = this.config.failover;
      const m = decideMaintenance(this.exec.state(), { detachFalsePrimary: f.detach_false_primary });
      const queue = [...m.requests];
      for (const id of m.failbackChecks) {
        try {
          const w = await walState(this.exec.target(id), this.exec.hc(id), this.exec.hc(id).timeout_ms);
          const d = decideFailback(this.exec.state(), id, w, { autoFailback: f.auto_failback, builtinFollow: f.promote === 'builtin' });
          if (d.request) queue.push(d.request);
          else m.idle.push({ id, reason: `detached standby ${d.reason}` });
        } catch (err) {
          m.idle.push({ id, reason: `detached standby answers the health check but not a WAL state read: ${(err as Error).message}` });
        }
      }
      // After the re-attachments, so the standbys that came back are candidates.
      if (m.chooseAgain) queue.push(m.chooseAgain);
      for (const r of queue) {
        this.logger.info({ kind: r.kind, backends: r.ids, reason: r.reason }, `maintenance: ${r.reason}`);
        void this.queueFromMaintenance(r);
      }
      if (m.idle.length) this.logger.debug({ idle: m.idle }, `maintenance: nothing to do for ${m.idle.map((x) => `backend ${x.id} (${x.reason})`).join('; ')}`);
      await this.sync.run(null);
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'failover maintenance failed');
    } finally {
      this.maintaining = false;
    }
  }

  private queueFromMaintenance(r: FailoverRequest): Promise<void> {
    return this.request(r).then(
      () => undefined,
      (err: Error) => this.logger.error({ backends: r.ids, kind: r.kind, err: err.message }, 'maintenance request failed'),
    );
  }

  // ---- startup -----------------------------------------------------------------------

  private async applyStatusFile(): Promise<void> {
    const path = this.config.failover.status_file;
    if (!path) return;
    const loaded = readStatusFile(path, this.registry.list());
    if (loaded.kind === 'missing') {
      this.logger.info({ path }, 'no status file yet: every backend starts as waiting');
      return;
    }
    if (loaded.kind === 'ignored') {
      this.logger.warn({ path, reason: loaded.reason }, 'status file ignored');
      return;
    }
    this.sync.savedNames = loaded.content.savedSyncStandbyNames;
    for (const e of loaded.content.backends) {
      if (e.status === 'down' || e.status === 'unused') {
        if (e.detachedBy === 'admin') this.mem.adminDetached.add(e.id);
        await this.exec.record({ type: 'backend', id: e.id, status: e.status, ...(e.detachedBy ? { detachedBy: e.detachedBy } : {}), reason: `status file ${path} says ${e.status}` });
        this.logger.info({ backend: e.id, status: e.status, path }, `backend stays ${e.status} after restart (status file)`);
      }
    }
  }

  private saveStatus(): void {
    const path = this.config.failover.status_file;
    // Not before start() has read the file, not after stop().
    if (!path || !this.started) return;
    const content: StatusFileContent = {
      version: 1,
      savedAt: new Date().toISOString(),
      backends: this.registry.list().map((b) => ({
        id: b.id,
        host: b.host,
        port: b.port,
        status: b.status,
        ...(b.status === 'down' ? { detachedBy: this.mem.adminDetached.has(b.id) ? ('admin' as const) : ('failover' as const) } : {}),
      })),
      savedSyncStandbyNames: this.sync.savedNames,
    };
    try {
      writeStatusFile(path, content);
    } catch (err) {
      this.logger.error({ path, err: (err as Error).message }, 'cannot write the status file');
    }
  }

  /** pgpool's find_primary_node: ask every backend not down whether it is in recovery, and
   * record each one's role. Single-peer start() calls it; under the watchdog, the coordinator. */
  async findPrimary(why: string): Promise<void> {
    const wal = await this.exec.walStates(this.registry.list().filter((b) => b.status === 'down' || b.status === 'unused').map((b) => b.id));
    const d = decideStartupRoles(this.exec.state(), wal, why, this.config.failover.detach_false_primary);
    if (d.tieBreak) this.logger.warn({ chosen: d.primary, why }, d.tieBreak);
    for (const id of d.unreachable) this.logger.warn({ backend: id, why }, 'backend unreachable: waiting for the health check');
    for (const c of d.changes) {
      await this.exec.record({ type: 'backend', id: c.id, status: c.status, role: c.role, reason: c.reason });
      if (c.role === 'primary') this.mem.lastPrimary = c.id;
    }
    if (d.primary === null) this.logger.error({ why }, 'no primary found among the reachable backends');
    else this.logger.info({ backend: d.primary, why }, `primary is backend ${d.primary}`);
  }
}
