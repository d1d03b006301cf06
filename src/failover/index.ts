// The failover engine: a serial queue of requests (node down, node up / failback, promote
// with or without switchover, close idle) that DECIDES what a request means (which standby
// to promote, who follows) and EXECUTES it (builtin promotion or failover_command,
// follow, failback_command), then keeps the registry (status, role) right so the proxy
// routes by it.
//
// Stages, so the watchdog can plug in (DESIGN.md "How a decision flows"):
//   DETECTION  HealthChecker 'down'/'up' events (this peer's local view).
//   DECISION   request(): in single-peer mode (no watchdog peers) detections feed it
//              directly; with a watchdog, consensus calls request() on the coordinator
//              only (construct with autoRequest: false, call maintain() there too).
//   EXECUTION  inside request(); every step is idempotent (promote an already promoted
//              server: no-op; point a standby at the primary it follows: no-op), so a new
//              coordinator can re-run an unfinished failover. The Raft term reaches the
//              commands as %T.
import { EventEmitter } from 'node:events';
import type { Config, HealthCheckConfig } from '../config/index.js';
import { healthCheckFor } from '../config/index.js';
import type { Logger } from '../log.js';
import type { BackendRegistry, BackendState, BackendStatus } from '../backends/registry.js';
import type { HealthChecker, HealthDownEvent, HealthUpEvent } from '../backends/health.js';
import { chooseCandidate, type CandidateChoice, type CandidateInput } from './candidate.js';
import { formatLsn } from '../backends/lsn.js';
import { expandCommand, runCommand, validateTemplate, type PlaceholderValues } from './commands.js';
import { cleanShutdown, follow, promote as pgPromote, sameHost, setSyncNames, syncState, waitStreamingFrom, walState, type Target } from './pgops.js';
import type { WalState } from '../backends/replication.js';
import { readStatusFile, writeStatusFile, type StatusFileContent } from './status-file.js';
import { decideSync } from './sync.js';

import type { FailoverKind } from './decisions.js';
export type { Decision, Decisions, FailoverKind } from './decisions.js';

export interface FailoverRequest {
  kind: FailoverKind;
  ids: number[];
  /** promote only: shut the current primary down cleanly first, so no write is lost. */
  switchover?: boolean;
  reason: string;
  /** Raft term of the coordinator deciding this (%T); 0 without a watchdog. */
  term?: number;
  /** When the failure was detected (for the timings in the status). */
  detectedAt?: Date;
  /** Who asked: "health", "admin", "watchdog", … (auto_failback respects admin detaches). */
  source?: string;
}

export interface FailoverStep {
  name: string;
  backend?: number;
  ok: boolean;
  ms: number;
  detail: string;
}

export interface FailoverResult {
  seq: number;
  kind: FailoverKind;
  ids: number[];
  reason: string;
  term: number;
  switchover: boolean;
  ok: boolean;
  summary: string;
  oldPrimary: number | null;
  newPrimary: number | null;
  candidate: CandidateChoice | null;
  steps: FailoverStep[];
  detectedAt: string | null;
  queuedAt: string;
  startedAt: string;
  /** When the registry named the new primary (new sessions route there from this instant). */
  newPrimaryAt: string | null;
  finishedAt: string;
  /** detectedAt (or queuedAt) → newPrimaryAt, when a primary was found or promoted. */
  toNewPrimaryMs: number | null;
  durationMs: number;
}

export interface FailoverStatus {
  active: { seq: number; kind: FailoverKind; ids: number[]; reason: string; startedAt: string } | null;
  queue: { seq: number; kind: FailoverKind; ids: number[]; reason: string; queuedAt: string }[];
  history: FailoverResult[];
  /** The last time a primary failed and no standby qualified: why. */
  noCandidate: { at: string; failed: number[]; summary: string; rejected: CandidateChoice['rejected'] } | null;
  primary: number | null;
  synchronous: { mode: 'auto' | 'off'; savedStandbyNames: string | null; last: string | null };
}

interface QueueItem {
  seq: number;
  req: FailoverRequest;
  queuedAt: Date;
}

class Ctx {
  readonly steps: FailoverStep[] = [];
  oldPrimary: number | null = null;
  newPrimary: number | null = null;
  newPrimaryAt: Date | null = null;
  candidate: CandidateChoice | null = null;
  constructor(
    readonly seq: number,
    readonly req: FailoverRequest,
    readonly log: Logger,
  ) {}

  async step<T>(name: string, backend: number | undefined, fn: () => Promise<T>, describe: (v: T) => string): Promise<T> {
    const t0 = Date.now();
    try {
      const v = await fn();
      const detail = describe(v);
      this.steps.push({ name, backend, ok: true, ms: Date.now() - t0, detail });
      this.log.info({ step: name, backend, ms: Date.now() - t0, detail }, `failover step ${name} done`);
      return v;
    } catch (err) {
      const detail = (err as Error).message;
      this.steps.push({ name, backend, ok: false, ms: Date.now() - t0, detail });
      this.log.error({ step: name, backend, ms: Date.now() - t0, err: detail }, `failover step ${name} failed`);
      throw err;
    }
  }

  note(name: string, backend: number | undefined, ok: boolean, detail: string): void {
    this.steps.push({ name, backend, ok, ms: 0, detail });
    this.log[ok ? 'info' : 'warn']({ step: name, backend, detail }, detail);
  }
}

const HISTORY = 50;

export class FailoverEngine extends EventEmitter<{ result: [FailoverResult]; closeIdle: [number[]] }> {
  private readonly config: Config;
  private readonly registry: BackendRegistry;
  private readonly logger: Logger;
  private readonly health: HealthChecker;
  private readonly autoRequest: boolean;
  private seq = 0;
  private tail: Promise<void> = Promise.resolve();
  private readonly queue: QueueItem[] = [];
  private active: (QueueItem & { startedAt: Date }) | null = null;
  private readonly history: FailoverResult[] = [];
  private noCandidate: FailoverStatus['noCandidate'] = null;
  private lastPrimary: number | null = null;
  private readonly adminDetached = new Set<number>();
  private savedSyncNames: string | null = null;
  private lastSync: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private maintaining = false;
  private started = false;
  private readonly onDown = (ev: HealthDownEvent) => this.handleDown(ev);
  private readonly onUp = (ev: HealthUpEvent) => this.handleUp(ev);
  private readonly onChange = (ch: { id: number; before: Readonly<BackendState>; after: Readonly<BackendState> }) => {
    // Whoever set it (this engine, an operator, the watchdog's replicated state), remember
    // the last routable primary: a later node_down of it means promotion.
    if (ch.after.status === 'up' && ch.after.role === 'primary') this.lastPrimary = ch.id;
    if (ch.before.status !== ch.after.status) this.saveStatus();
  };

  constructor(opts: { config: Config; registry: BackendRegistry; logger: Logger; health: HealthChecker; autoRequest?: boolean }) {
    super();
    this.config = opts.config;
    this.registry = opts.registry;
    this.logger = opts.logger.child({ component: 'failover' });
    this.health = opts.health;
    this.autoRequest = opts.autoRequest ?? opts.config.watchdog.peers.length === 0;
    this.registry.on('change', this.onChange);
    const f = opts.config.failover;
    for (const [key, tpl] of [['failover_command', f.failover_command], ['follow_primary_command', f.follow_primary_command], ['failback_command', f.failback_command]] as const) {
      const problems = validateTemplate(tpl);
      if (problems.length) throw new Error(`failover.${key}: ${problems.join('; ')}`);
    }
  }

  private hc(id: number): HealthCheckConfig {
    return healthCheckFor(this.config, id);
  }

  private target(id: number): Target {
    const b = this.registry.get(id);
    return { id, host: b.host, port: b.port };
  }

  /** Applies the status file, finds the primary (pgpool's find_primary_node) and sets every
   * backend's status and role; then, in single-peer mode, follows the health checker. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.applyStatusFile();
    await this.findPrimary('startup');
    this.saveStatus();
    if (this.autoRequest) {
      this.health.on('down', this.onDown);
      this.health.on('up', this.onUp);
      const period = Math.min(...this.config.backends.map((_, i) => this.hc(i).period_ms));
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
    const item: QueueItem = { seq: ++this.seq, req, queuedAt: new Date() };
    this.queue.push(item);
    this.logger.info({ seq: item.seq, kind: req.kind, backends: req.ids, reason: req.reason, term: req.term ?? 0 }, 'failover request queued');
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
      noCandidate: this.noCandidate,
      primary: this.registry.primary()?.id ?? null,
      synchronous: { mode: this.config.failover.synchronous, savedStandbyNames: this.savedSyncNames, last: this.lastSync },
    };
  }

  private async run(item: QueueItem): Promise<FailoverResult> {
    const i = this.queue.indexOf(item);
    if (i >= 0) this.queue.splice(i, 1);
    const startedAt = new Date();
    this.active = { ...item, startedAt };
    const req = item.req;
    const log = this.logger.child({ seq: item.seq, kind: req.kind, term: req.term ?? 0 });
    const ctx = new Ctx(item.seq, req, log);
    log.info({ backends: req.ids, reason: req.reason, waitedMs: startedAt.getTime() - item.queuedAt.getTime() }, `failover request started: ${req.kind} ${req.ids.join(',')}`);
    let ok = false;
    let summary: string;
    try {
      switch (req.kind) {
        case 'node_down':
          summary = await this.nodeDown(ctx);
          break;
        case 'node_up':
          summary = await this.nodeUp(ctx);
          break;
        case 'promote':
          summary = await this.promoteRequest(ctx);
          break;
        case 'close_idle':
          this.emit('closeIdle', req.ids);
          summary = `close idle connections of ${req.ids.length ? `backend(s) ${req.ids.join(',')}` : 'every backend'}`;
          break;
      }
      ok = ctx.steps.every((s) => s.ok);
    } catch (err) {
      summary = `${req.kind} failed: ${(err as Error).message}`;
    }
    const finishedAt = new Date();
    const from = req.detectedAt ?? item.queuedAt;
    const result: FailoverResult = {
      seq: item.seq,
      kind: req.kind,
      ids: req.ids,
      reason: req.reason,
      term: req.term ?? 0,
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

  // ---- node down ---------------------------------------------------------------------

  private async nodeDown(ctx: Ctx): Promise<string> {
    const { req } = ctx;
    const primaryBefore = this.registry.primary()?.id ?? this.lastPrimary;
    for (const id of req.ids) {
      if (req.source === 'admin') this.adminDetached.add(id);
      const b = this.registry.get(id);
      if (b.status === 'down') ctx.note('detach', id, true, `backend ${id} already down`);
      else {
        this.registry.update(id, { status: 'down' }, req.reason);
        ctx.note('detach', id, true, `backend ${id} (${b.role}) detached: ${req.reason}`);
      }
    }
    const primaryFailed = primaryBefore !== null && req.ids.includes(primaryBefore);
    if (primaryFailed && !this.registry.primary()) {
      ctx.oldPrimary = primaryBefore;
      return this.replacePrimary(ctx, req.ids, null);
    }
    ctx.newPrimary = this.registry.primary()?.id ?? null;
    // A standby went: pgpool runs failover_command for it too (its sample script drops the
    // standby's replication slot); under `promote: builtin` it is a notification.
    // Unblock writes first: the command below may take up to command_timeout_ms.
    await this.syncCheck('after a standby went down');
    for (const id of req.ids) await this.runHook(ctx, 'failover_command', this.config.failover.failover_command, this.placeholders(ctx, id, ctx.newPrimary));
    return `backend(s) ${req.ids.join(',')} detached${primaryFailed ? '' : '; primary unchanged'}`;
  }

  /**
   * The primary is gone (failed, detached or being switched over): find or promote a new
   * one, point the other standbys at it, run the commands. `forced` is the operator's
   * choice of standby (promote N), else the candidate rule decides.
   */
  private async replacePrimary(ctx: Ctx, failed: number[], forced: number | null): Promise<string> {
    const f = this.config.failover;
    const oldPrimary = ctx.oldPrimary;
    // Fresh WAL positions of every attached standby: the monitor's may be a period old.
    const wal = await this.walStates(failed);
    // Resume: a server that already left recovery (an earlier, interrupted run promoted it)
    // is the new primary; promoting again would be wrong, and it is a no-op anyway.
    const already = [...wal.entries()].find(([id, w]) => w !== null && !w.inRecovery && this.registry.get(id).status !== 'down' && id !== oldPrimary);
    let chosen: number | null = already ? already[0] : forced;
    if (already) ctx.note('find primary', already[0], true, `backend ${already[0]} is already out of recovery: adopting it as the primary`);
    // Standbys whose promotion failed in this request: the next best is tried instead.
    const unpromotable: number[] = [];
    for (;;) {
      if (chosen === null) {
        const inputs: CandidateInput[] = this.registry.list().map((b) => {
          const w = wal.get(b.id) ?? null;
          return {
            id: b.id,
            status: b.status,
            role: b.role,
            pgStatus: w ? 'up' : b.status === 'up' && wal.has(b.id) ? 'down' : b.pgStatus,
            failoverAllowed: b.failoverAllowed,
            priority: b.priority,
            lsn: w ? (w.receiveLsn ?? w.replayLsn) : null,
          };
        });
        const lastPrimaryLsn = oldPrimary !== null ? this.registry.get(oldPrimary).lsn : null;
        const choice = chooseCandidate(inputs, { exclude: [...failed, ...unpromotable], maxLagBytes: this.config.proxy.max_lag_bytes, lastPrimaryLsn });
        ctx.candidate = choice;
        ctx.log.info({ candidate: choice.id, rejected: choice.rejected, referenceLsn: choice.referenceLsn !== null ? formatLsn(choice.referenceLsn) : null }, `promotion candidate: ${choice.summary}`);
        chosen = choice.id;
        if (chosen === null) {
          this.noCandidate = { at: new Date().toISOString(), failed, summary: choice.summary, rejected: choice.rejected };
          ctx.log.error({ failed, rejected: choice.rejected }, `no promotion: ${choice.summary}`);
          if (f.promote === 'command') {
            // pgpool still runs failover_command, with %m = -1, so the script can alert.
            for (const id of failed) await this.runHook(ctx, 'failover_command', f.failover_command, this.placeholders(ctx, id, null));
          }
          ctx.steps.push({ name: 'choose candidate', ok: false, ms: 0, detail: choice.summary });
          return `primary ${oldPrimary} down; no promotion: ${choice.summary}`;
        }
      }

      if (f.promote === 'builtin' && !already) {
        try {
          await ctx.step('promote', chosen, () => pgPromote(this.target(chosen!), this.hc(chosen!), f.command_timeout_ms), (o) => `pg_promote() on backend ${chosen}: ${o}`);
        } catch (err) {
          if (forced !== null) throw err;
          unpromotable.push(chosen!);
          ctx.log.warn({ backend: chosen, err: (err as Error).message }, `promotion of backend ${chosen} failed: trying the next candidate`);
          chosen = null;
          continue;
        }
      }
      break;
    }

    if (f.promote === 'builtin' || already) {
      this.setPrimary(ctx, chosen!, oldPrimary, already ? 'found already promoted' : 'promoted');
    } else {
      // promote: command — the failover_command promotes %m, then we look for the primary.
      for (const id of failed) await this.runHook(ctx, 'failover_command', f.failover_command, this.placeholders(ctx, id, chosen));
      const found = await ctx.step('find primary', undefined, () => this.waitForPrimary(failed, f.command_timeout_ms), (id) => `backend ${id} left recovery`);
      if (found !== chosen) ctx.note('find primary', found, true, `failover_command promoted backend ${found}, not the candidate ${chosen}`);
      this.setPrimary(ctx, found, oldPrimary, 'promoted by failover_command');
      chosen = found;
    }
    const newPrimary = chosen!;
    this.noCandidate = null;

    // Follow: builtin repoints every other attached standby; follow_primary_command (if
    // set) then runs once per remaining standby, as pgpool does.
    const followers = this.registry.list().filter((b) => b.id !== newPrimary && !failed.includes(b.id) && b.status === 'up' && b.role === 'standby');
    if (f.promote === 'builtin') {
      await Promise.all(followers.map((b) => this.builtinFollow(ctx, b.id, newPrimary)));
    }
    if (f.promote === 'builtin' && f.failover_command && !already) {
      for (const id of failed) await this.runHook(ctx, 'failover_command', f.failover_command, this.placeholders(ctx, id, newPrimary));
    }
    if (f.follow_primary_command) {
      for (const b of followers) await this.runHook(ctx, 'follow_primary_command', f.follow_primary_command, this.placeholders(ctx, b.id, newPrimary));
    }
    await this.syncCheck('after a new primary');
    return `backend ${newPrimary} is the new primary (old primary ${oldPrimary ?? 'unknown'})${followers.length ? `; ${followers.map((b) => b.id).join(',')} follow it` : ''}`;
  }

  private setPrimary(ctx: Ctx, id: number, oldPrimary: number | null, how: string): void {
    this.registry.update(id, { status: 'up', role: 'primary' }, `new primary (${how}): ${ctx.req.reason}`);
    if (oldPrimary !== null && oldPrimary !== id) this.registry.update(oldPrimary, { role: 'unknown' }, `replaced by backend ${id} as primary`);
    this.lastPrimary = id;
    ctx.newPrimary = id;
    ctx.newPrimaryAt = new Date();
  }

  private async builtinFollow(ctx: Ctx, id: number, primary: number): Promise<void> {
    const f = this.config.failover;
    try {
      await ctx.step(
        'follow',
        id,
        () => follow(this.target(id), this.target(primary), this.hc(id), f.command_timeout_ms, { user: f.replication_user, password: f.replication_password }),
        (r) => `backend ${id} ${r.outcome}: primary_conninfo = ${r.conninfo}`,
      );
      const streaming = await waitStreamingFrom(this.target(id), this.target(primary), this.hc(id), 10_000);
      if (streaming) ctx.note('follow check', id, true, `backend ${id} streams from backend ${primary}`);
      else ctx.note('follow check', id, false, `backend ${id} does not stream from backend ${primary} 10 s after the change (diverged timeline? a rewind may be needed); its reads may be stale`);
    } catch {
      // Recorded in the step; a standby that cannot follow serves ever staler reads.
      this.registry.update(id, { status: 'down' }, `could not follow new primary ${primary}`);
    }
  }

  /** WAL state of every attached standby (and waiting node) not failed; null = unreachable
   * after the health check's own retries (a standby slow for one moment must not be skipped
   * as a candidate: that could mean no promotion at all). */
  private async walStates(exclude: number[]): Promise<Map<number, WalState | null>> {
    const ids = this.registry.list().filter((b) => !exclude.includes(b.id) && (b.status === 'up' || b.status === 'waiting')).map((b) => b.id);
    const out = new Map<number, WalState | null>();
    await Promise.all(
      ids.map(async (id) => {
        const hc = this.hc(id);
        for (let attempt = 0; attempt <= hc.max_retries; attempt++) {
          try {
            out.set(id, await walState(this.target(id), hc, hc.timeout_ms));
            return;
          } catch (err) {
            this.logger.warn({ backend: id, attempt: attempt + 1, err: (err as Error).message }, 'cannot read WAL state');
            if (attempt < hc.max_retries) await new Promise((r) => setTimeout(r, hc.retry_delay_ms));
          }
        }
        out.set(id, null);
      }),
    );
    return out;
  }

  private async waitForPrimary(exclude: number[], timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const wal = await this.walStates(exclude);
      const p = [...wal.entries()].filter(([, w]) => w && !w.inRecovery).map(([id]) => id);
      if (p.length > 0) return Math.min(...p);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no backend left recovery within ${timeoutMs} ms after failover_command`);
  }

  // ---- node up (failback / attach) --------------------------------------------------

  private async nodeUp(ctx: Ctx): Promise<string> {
    const done: string[] = [];
    for (const id of ctx.req.ids) {
      if (ctx.req.source === 'admin') this.adminDetached.delete(id);
      const w = await ctx.step('probe', id, () => walState(this.target(id), this.hc(id), this.hc(id).timeout_ms), (x) => `backend ${id} is reachable, ${x.inRecovery ? 'in recovery' : 'a primary'}`);
      const primary = this.registry.primary();
      if (!w.inRecovery) {
        if (primary && primary.id !== id) {
          const msg = `backend ${id} is a primary while backend ${primary.id} is the primary: not attached (a second primary is never written to)`;
          ctx.note('attach', id, false, msg);
          if (this.registry.get(id).status !== 'down' && this.config.failover.detach_false_primary) this.registry.update(id, { status: 'down', role: 'unknown' }, 'false primary');
          continue;
        }
        this.registry.update(id, { status: 'up', role: 'primary' }, ctx.req.reason);
        this.lastPrimary = id;
        ctx.newPrimary = id;
        ctx.newPrimaryAt = new Date();
      } else {
        if (primary && !(w.senderPort === primary.port && sameHost(w.senderHost, primary.host) && w.walReceiverStatus === 'streaming')) {
          ctx.note('attach', id, true, `backend ${id} does not stream from the primary ${primary.id} (wal receiver: ${w.walReceiverStatus ?? 'none'}); attaching anyway, as asked`);
        }
        this.registry.update(id, { status: 'up', role: 'standby' }, ctx.req.reason);
        ctx.newPrimary = primary?.id ?? null;
      }
      done.push(String(id));
      ctx.note('attach', id, true, `backend ${id} attached: ${ctx.req.reason}`);
      await this.runHook(ctx, 'failback_command', this.config.failover.failback_command, this.placeholders(ctx, id, this.registry.primary()?.id ?? null));
    }
    await this.syncCheck('after a failback');
    return done.length ? `backend(s) ${done.join(',')} attached` : 'nothing attached';
  }

  // ---- promote / switchover ----------------------------------------------------------

  private async promoteRequest(ctx: Ctx): Promise<string> {
    const [id] = ctx.req.ids as [number];
    const b = this.registry.get(id);
    if (!b.failoverAllowed) throw new Error(`backend ${id} is marked failover: disallow`);
    if (b.status !== 'up' || b.role !== 'standby') throw new Error(`backend ${id} is not an attached standby (status ${b.status}, role ${b.role})`);
    await ctx.step('probe', id, () => walState(this.target(id), this.hc(id), this.hc(id).timeout_ms), (w) => `backend ${id} reachable, ${w.inRecovery ? 'in recovery' : 'NOT in recovery'}`);
    const old = this.registry.primary();
    ctx.oldPrimary = old?.id ?? this.lastPrimary;
    const failed = ctx.oldPrimary !== null ? [ctx.oldPrimary] : [];
    if (old) {
      // Detach first: the proxy ends the primary's sessions, so no new write starts there.
      this.registry.update(old.id, { status: 'down' }, ctx.req.reason);
      ctx.note('detach', old.id, true, `primary ${old.id} detached: ${ctx.req.reason}`);
      if (ctx.req.switchover) {
        try {
          await ctx.step('shutdown old primary', old.id, () => cleanShutdown(this.target(old.id), this.hc(old.id), this.config.failover.command_timeout_ms), () => `backend ${old.id} shut down cleanly (fast mode): its WAL is on the streaming standbys`);
        } catch (err) {
          // Nothing was promoted: give the writes their primary back rather than none.
          this.registry.update(old.id, { status: 'up' }, `switchover aborted: ${(err as Error).message}`);
          throw new Error(`switchover aborted, backend ${old.id} stays the primary: ${(err as Error).message}`, { cause: err });
        }
        await ctx.step(
          'wait replay',
          id,
          async () => {
            const deadline = Date.now() + this.config.failover.command_timeout_ms;
            for (;;) {
              const w = await walState(this.target(id), this.hc(id), this.hc(id).timeout_ms);
              if (w.receiveLsn !== null && w.replayLsn !== null && w.replayLsn >= w.receiveLsn) return w;
              if (Date.now() > deadline) throw new Error('replay did not catch up with the received WAL');
              await new Promise((r) => setTimeout(r, 20));
            }
          },
          (w) => `backend ${id} replayed all received WAL (${formatLsn(w.replayLsn!)})`,
        );
      }
    }
    return this.replacePrimary(ctx, failed, id);
  }

  // ---- commands ----------------------------------------------------------------------

  private placeholders(ctx: Ctx, failedId: number, newMain: number | null): PlaceholderValues {
    const b = this.registry.get(failedId);
    const m = newMain !== null ? this.registry.get(newMain) : null;
    const op = ctx.oldPrimary ?? this.registry.primary()?.id ?? this.lastPrimary;
    const o = op !== null ? this.registry.get(op) : null;
    return {
      failedId,
      failedHost: b.host,
      failedPort: b.port,
      failedDataDir: b.dataDir,
      newMainId: m ? m.id : -1,
      newMainHost: m ? m.host : '',
      newMainPort: m ? m.port : null,
      newMainDataDir: m ? m.dataDir : '',
      oldMainId: o ? o.id : -1,
      oldPrimaryId: o ? o.id : -1,
      oldPrimaryHost: o ? o.host : '',
      oldPrimaryPort: o ? o.port : null,
      term: ctx.req.term ?? 0,
    };
  }

  private async runHook(ctx: Ctx, key: string, template: string, values: PlaceholderValues): Promise<boolean> {
    if (!template) return true;
    const command = expandCommand(template, values);
    const r = await runCommand(command, {
      timeoutMs: this.config.failover.command_timeout_ms,
      logger: ctx.log,
      what: key,
      context: { backend: values.failedId, newMain: values.newMainId },
    });
    ctx.steps.push({
      name: key,
      backend: values.failedId,
      ok: r.ok,
      ms: r.durationMs,
      detail: `${r.timedOut ? 'timed out' : `exit ${r.exitCode ?? r.signal}`}${r.output.trim() ? `: ${r.output.trim().slice(0, 500)}` : ''}`,
    });
    return r.ok;
  }

  // ---- detection → decision (single-peer mode) ------------------------------------------

  private handleDown(ev: HealthDownEvent): void {
    const b = this.registry.get(ev.id);
    if (b.status !== 'up' && b.status !== 'waiting') return;
    void this.request({
      kind: 'node_down',
      ids: [ev.id],
      reason: `health check: unreachable after ${ev.attempts} attempt(s) (${ev.trigger}): ${ev.error}`,
      detectedAt: ev.at,
      source: 'health',
    }).catch((err: Error) => this.logger.error({ backend: ev.id, err: err.message }, 'node_down request failed'));
  }

  private handleUp(ev: HealthUpEvent): void {
    void ev;
    // Waiting nodes, auto_failback and false primaries are handled by maintain(), which
    // runs right away and then every period.
    void this.maintain();
  }

  /**
   * Periodic checks that turn observations into requests or act on the primary: attach
   * nodes still waiting, auto_failback, detach a false primary, synchronous replication.
   * Single-peer mode runs it on a timer; with a watchdog the coordinator calls it.
   */
  async maintain(): Promise<void> {
    if (!this.started || this.maintaining || this.active || this.queue.length > 0) return;
    this.maintaining = true;
    try {
      const primary = this.registry.primary();
      for (const b of this.registry.list()) {
        if (b.status === 'waiting' && b.pgStatus === 'up') {
          void this.request({ kind: 'node_up', ids: [b.id], reason: 'first health check succeeded', source: 'health' });
        } else if (b.status === 'waiting' && b.pgStatus === 'down') {
          void this.request({ kind: 'node_down', ids: [b.id], reason: 'first health check failed', source: 'health' });
        } else if (b.status === 'up' && b.pgStatus === 'up' && b.pgRole === 'primary' && primary && primary.id !== b.id && this.config.failover.detach_false_primary) {
          void this.request({ kind: 'node_down', ids: [b.id], reason: `false primary: backend ${b.id} reports itself primary while backend ${primary.id} is the primary`, source: 'health' });
        } else if (b.status === 'down' && b.pgStatus === 'up' && b.pgRole === 'standby' && this.config.failover.auto_failback && primary && !this.adminDetached.has(b.id)) {
          try {
            const w = await walState(this.target(b.id), this.hc(b.id), this.hc(b.id).timeout_ms);
            if (w.inRecovery && w.walReceiverStatus === 'streaming' && w.senderPort === primary.port && sameHost(w.senderHost, primary.host)) {
              void this.request({ kind: 'node_up', ids: [b.id], reason: `auto_failback: backend ${b.id} streams from the primary ${primary.id} again`, source: 'health' });
            }
          } catch {
            // not reachable right now
          }
        }
      }
      await this.syncCheck(null);
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'failover maintenance failed');
    } finally {
      this.maintaining = false;
    }
  }

  /** failover.synchronous: auto — clear synchronous_standby_names on the primary when too
   * few synchronous standbys stream (writes would block), restore it when they do again. */
  private async syncCheck(why: string | null): Promise<void> {
    if (this.config.failover.synchronous !== 'auto') return;
    const p = this.registry.primary();
    if (!p) return;
    const t = this.target(p.id);
    const hc = this.hc(p.id);
    try {
      const s = await syncState(t, hc, hc.timeout_ms);
      if (s.names.trim() !== '' && this.savedSyncNames !== null && s.names !== this.savedSyncNames) this.savedSyncNames = null; // the operator set a new value
      const d = decideSync(s.names, this.savedSyncNames, s.streaming);
      if (d.action === 'clear') {
        await setSyncNames(t, hc, hc.timeout_ms, '');
        this.savedSyncNames = d.saved;
        this.lastSync = `${new Date().toISOString()} cleared "${d.saved}": ${d.reason}`;
        this.logger.warn({ backend: p.id, saved: d.saved, reason: d.reason, why }, 'synchronous replication turned off on the primary so writes stop blocking');
        this.saveStatus();
      } else if (d.action === 'restore') {
        await setSyncNames(t, hc, hc.timeout_ms, d.value);
        this.savedSyncNames = null;
        this.lastSync = `${new Date().toISOString()} restored "${d.value}": ${d.reason}`;
        this.logger.info({ backend: p.id, value: d.value, reason: d.reason, why }, 'synchronous replication restored on the primary');
        this.saveStatus();
      }
    } catch (err) {
      this.logger.warn({ backend: p.id, err: (err as Error).message }, 'synchronous replication check failed');
    }
  }

  // ---- startup -----------------------------------------------------------------------

  private applyStatusFile(): void {
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
    this.savedSyncNames = loaded.content.savedSyncStandbyNames;
    for (const e of loaded.content.backends) {
      if (e.status === 'down' || e.status === 'unused') {
        this.registry.update(e.id, { status: e.status }, `status file ${path} says ${e.status}`);
        if (e.detachedBy === 'admin') this.adminDetached.add(e.id);
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
        ...(b.status === 'down' ? { detachedBy: this.adminDetached.has(b.id) ? ('admin' as const) : ('failover' as const) } : {}),
      })),
      savedSyncStandbyNames: this.savedSyncNames,
    };
    try {
      writeStatusFile(path, content);
    } catch (err) {
      this.logger.error({ path, err: (err as Error).message }, 'cannot write the status file');
    }
  }

  /** pgpool's find_primary_node: ask every backend not down whether it is in recovery. */
  private async findPrimary(why: string): Promise<void> {
    const wal = await this.walStates(this.registry.list().filter((b) => b.status === 'down' || b.status === 'unused').map((b) => b.id));
    const primaries = [...wal.entries()].filter(([, w]) => w && !w.inRecovery).map(([id]) => id);
    let primary: number | null = null;
    if (primaries.length === 1) primary = primaries[0]!;
    else if (primaries.length > 1) {
      // The true primary is the one the standbys stream from; ties go to the lowest id.
      const followers = (pid: number) => [...wal.values()].filter((w) => w && w.inRecovery && w.senderPort === this.registry.get(pid).port && sameHost(w.senderHost, this.registry.get(pid).host)).length;
      primary = [...primaries].sort((a, b) => followers(b) - followers(a) || a - b)[0]!;
      this.logger.warn({ primaries, chosen: primary, why }, `${primaries.length} backends are primaries; backend ${primary} has the most standbys streaming from it`);
    }
    for (const [id, w] of wal) {
      if (w === null) {
        this.logger.warn({ backend: id, why }, 'backend unreachable: waiting for the health check');
        continue;
      }
      if (!w.inRecovery && id === primary) {
        this.registry.update(id, { status: 'up', role: 'primary' }, `${why}: primary found (not in recovery)`);
        this.lastPrimary = id;
      } else if (!w.inRecovery) {
        if (this.config.failover.detach_false_primary) this.registry.update(id, { status: 'down', role: 'unknown' }, `${why}: false primary (backend ${primary} is the primary)`);
        else this.registry.update(id, { status: 'up', role: 'unknown' }, `${why}: a second primary; detach_false_primary is off, so it stays attached but gets no traffic`);
      } else this.registry.update(id, { status: 'up', role: 'standby' }, `${why}: standby (in recovery)`);
    }
    if (primary === null) this.logger.error({ why }, 'no primary found among the reachable backends');
    else this.logger.info({ backend: primary, why }, `primary is backend ${primary}`);
  }
}

export type { CandidateChoice } from './candidate.js';
export type { BackendStatus };
