// The failover engine's EXECUTION: carries out a Plan (decide.ts) — detach, find or promote a
// new primary, point the other standbys at it, attach, switch over — and runs the commands
// (failover_command, follow_primary_command, failback_command). The builtin steps are
// idempotent (promote an already promoted server: no-op; point a standby at the primary it
// follows: no-op). Each promotion, follow and command is recorded as a step of the event,
// `begun` before it runs and `done` after (once()), so a coordinator that resumes an event
// another one left open skips what is done and decides what was cut off (resume.ts).
//
// It writes nothing itself: every state change goes through the Decisions sink. When the
// sink refuses (under the watchdog: this peer lost its leadership) the request is abandoned
// at once: no further step or command runs (Abandoned).
import type { Config, HealthCheckConfig } from '../config/index.js';
import { healthCheckFor } from '../config/index.js';
import type { Logger } from '../log.js';
import type { BackendRegistry } from '../backends/registry.js';
import type { WalState } from '../backends/replication.js';
import { formatLsn } from '../backends/lsn.js';
import type { CandidateChoice } from './candidate.js';
import { expandCommand, runCommand, type PlaceholderValues } from './commands.js';
import { decideAttach, decideReplacement, reachability, streamsFrom, type EngineState, type Fresh, type Plan } from './decide.js';
import type { Decision, Decisions, FailoverStepName } from './decisions.js';
import { cleanShutdown, follow, promote as pgPromote, waitStreamingFrom, walState, type Target } from './pgops.js';
import { decideStep, promotedBefore, REPEATABLE, type Observation, type ResumeOf } from './resume.js';
import type { SyncCheck } from './sync-check.js';
import type { FailoverRequest, FailoverStatus, FailoverStep } from './types.js';

/** The sink refused a decision: the request stops here. */
export class Abandoned extends Error {}

/** What the engine remembers between requests (and the execution updates). */
export interface EngineMemory {
  lastPrimary: number | null;
  adminDetached: Set<number>;
  noCandidate: (NonNullable<FailoverStatus['noCandidate']> & { reachability: string }) | null;
}

/** One request's run: its steps (for the result) and what it found. */
export class RunContext {
  readonly steps: FailoverStep[] = [];
  oldPrimary: number | null = null;
  newPrimary: number | null = null;
  newPrimaryAt: Date | null = null;
  candidate: CandidateChoice | null = null;
  /** The open record this run takes over, with the steps earlier runs recorded. */
  readonly resume: ResumeOf | null;
  constructor(
    readonly seq: number,
    readonly req: FailoverRequest,
    /** %T: the request's term, else the sink's when the request started. */
    readonly term: number,
    readonly log: Logger,
  ) {
    this.resume = req.resume ?? null;
  }

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

export class Execution {
  constructor(
    private readonly config: Config,
    private readonly registry: BackendRegistry,
    private readonly decisions: Decisions,
    private readonly mem: EngineMemory,
    private readonly sync: SyncCheck,
    private readonly logger: Logger,
  ) {}

  hc(id: number): HealthCheckConfig {
    return healthCheckFor(this.config, id);
  }

  target(id: number): Target {
    const b = this.registry.get(id);
    return { id, host: b.host, port: b.port };
  }

  state(): EngineState {
    return { backends: this.registry.list(), lastPrimary: this.mem.lastPrimary, adminDetached: this.mem.adminDetached, noCandidate: this.mem.noCandidate };
  }

  /** Records one decision; a refusal abandons the request. */
  async record(d: Decision): Promise<void> {
    try {
      await this.decisions.record(d);
    } catch (err) {
      const what =
        d.type === 'backend'
          ? `backend ${d.id}: ${d.reason}`
          : d.type === 'failoverStep'
            ? `failover ${d.seq}: ${d.step} of backend ${d.backend} ${d.phase}`
            : `failover ${d.seq} ${d.type === 'failoverStarted' ? 'started' : 'finished'}`;
      throw new Abandoned(`the decision could not be recorded (${what}): ${(err as Error).message}`, { cause: err });
    }
  }

  /** Carries out a plan that changes something; resolves with the request's summary. */
  run(ctx: RunContext, plan: Exclude<Plan, { action: 'nothing' | 'refuse' | 'close idle' }>): Promise<string> {
    switch (plan.action) {
      case 'detach':
        return this.detachStandbys(ctx, plan.ids, plan.primaryFailed);
      case 'replace primary':
        return this.detach(ctx, plan.ids).then(() => {
          ctx.oldPrimary = plan.oldPrimary;
          return this.replacePrimary(ctx, plan.ids, plan.forced ?? null);
        });
      case 'attach':
        return this.attach(ctx, plan.ids);
      case 'promote':
        return this.promote(ctx, plan.id, plan.switchover);
    }
  }

  // ---- node down ---------------------------------------------------------------------

  private async detach(ctx: RunContext, ids: readonly number[]): Promise<void> {
    const byAdmin = ctx.req.source === 'admin';
    for (const id of ids) {
      if (byAdmin) this.mem.adminDetached.add(id);
      const b = this.registry.get(id);
      if (b.status === 'down') ctx.note('detach', id, true, `backend ${id} already down`);
      else {
        await this.record({ type: 'backend', id, status: 'down', detachedBy: byAdmin ? 'admin' : 'failover', reason: ctx.req.reason });
        ctx.note('detach', id, true, `backend ${id} (${b.role}) detached: ${ctx.req.reason}`);
      }
    }
  }

  private async detachStandbys(ctx: RunContext, ids: readonly number[], primaryFailed: boolean): Promise<string> {
    await this.detach(ctx, ids);
    ctx.newPrimary = this.registry.primary()?.id ?? null;
    // A standby went: pgpool runs failover_command for it too (its sample script drops the
    // standby's replication slot); under `promote: builtin` it is a notification.
    // Unblock writes first: the command below may take up to command_timeout_ms.
    await this.sync.run('after a standby went down');
    for (const id of ids) await this.hook(ctx, 'failover_command', this.config.failover.failover_command, this.placeholders(ctx, id, ctx.newPrimary), () => this.primaryObserved(ids));
    return `backend(s) ${ids.join(',')} detached${primaryFailed ? '' : '; primary unchanged'}`;
  }

  /**
   * The primary is gone (failed, detached or being switched over): find or promote a new
   * one, point the other standbys at it, run the commands. `forced` is the operator's
   * choice of standby (promote N), else the candidate rule decides.
   */
  private async replacePrimary(ctx: RunContext, failed: number[], forced: number | null): Promise<string> {
    const f = this.config.failover;
    const oldPrimary = ctx.oldPrimary;
    // A run cut off while promoting: promote the same server again (safe to repeat), never
    // another one, or two servers could end up out of recovery.
    const begun = promotedBefore(ctx.resume);
    if (begun && forced === null) {
      forced = begun.backend;
      ctx.note('choose candidate', begun.backend, true, `resumed failover: backend ${begun.backend} was ${begun.phase === 'done' ? 'promoted' : 'being promoted'} by ${begun.peer} in term ${begun.term}: it stays the candidate`);
    }
    // Fresh WAL positions of every attached standby (the monitor's may be a period old) and,
    // when health checks decided the failure, one more direct look at the old primary: a
    // stall that just ended must not cost a failover. Both at once, so a hung primary costs
    // one timeout, not two.
    // Not when an operator asked for it (promote N, detach of the primary): they want it replaced.
    const recheck = oldPrimary !== null && forced === null && ctx.req.source !== 'admin' && !this.mem.adminDetached.has(oldPrimary);
    const [wal, oldPrimaryCheck] = await Promise.all([this.walStates(failed), recheck ? this.check(oldPrimary) : Promise.resolve(null)]);
    if (oldPrimaryCheck) ctx.note('recheck old primary', oldPrimary!, true, oldPrimaryCheck.ok ? `old primary ${oldPrimary} answers (${oldPrimaryCheck.inRecovery ? 'in recovery' : 'as a primary'})` : `old primary ${oldPrimary} still does not answer: ${oldPrimaryCheck.error}`);
    const unpromotable: number[] = [];
    let chosen: number;
    let adopted = false;
    for (;;) {
      const r = decideReplacement(this.state(), { failed, oldPrimary, forced, wal, unpromotable, maxLagBytes: this.config.proxy.max_lag_bytes, oldPrimaryCheck });
      if (r.action === 'cancel') {
        ctx.note('cancel', r.id, true, r.reason);
        await this.setPrimary(ctx, r.id, null, 'failover cancelled');
        this.mem.noCandidate = null;
        return r.reason;
      }
      if (r.action === 'adopt') {
        ctx.note('find primary', r.id, true, r.reason);
        chosen = r.id;
        adopted = true;
        break;
      }
      if (r.choice) {
        ctx.candidate = r.choice;
        ctx.log.info({ candidate: r.choice.id, rejected: r.choice.rejected, referenceLsn: r.choice.referenceLsn !== null ? formatLsn(r.choice.referenceLsn) : null }, `promotion candidate: ${r.choice.summary}`);
      }
      if (r.action === 'no candidate') {
        // Not an end: maintain() chooses again when any backend's reachability changes.
        this.mem.noCandidate = { at: new Date().toISOString(), failed, summary: r.choice.summary, rejected: r.choice.rejected, reachability: reachability(this.state()) };
        ctx.log.error({ failed, rejected: r.choice.rejected }, `no promotion: ${r.choice.summary}`);
        if (f.promote === 'command') {
          // pgpool still runs failover_command, with %m = -1, so the script can alert.
          for (const id of failed) await this.hook(ctx, 'failover_command', f.failover_command, this.placeholders(ctx, id, null), () => this.primaryObserved(failed));
        }
        ctx.steps.push({ name: 'choose candidate', ok: false, ms: 0, detail: r.choice.summary });
        return `primary ${oldPrimary} down; no promotion: ${r.choice.summary}`;
      }
      chosen = r.id;
      if (f.promote !== 'builtin') break;
      try {
        const id = chosen;
        await this.once(ctx, 'promote', id, null, async () => ({
          ok: true,
          result: await ctx.step('promote', id, () => pgPromote(this.target(id), this.hc(id), f.command_timeout_ms), (o) => `pg_promote() on backend ${id}: ${o}`).then((o) => `pg_promote(): ${o}`),
        }));
        break;
      } catch (err) {
        if (forced !== null) throw err;
        unpromotable.push(chosen);
        ctx.log.warn({ backend: chosen, err: (err as Error).message }, `promotion of backend ${chosen} failed: trying the next candidate`);
      }
    }

    if (f.promote === 'builtin' || adopted) {
      await this.setPrimary(ctx, chosen, oldPrimary, adopted ? 'found already promoted' : 'promoted');
    } else {
      // promote: command — the failover_command promotes %m, then we look for the primary.
      for (const id of failed) await this.hook(ctx, 'failover_command', f.failover_command, this.placeholders(ctx, id, chosen), () => this.primaryObserved(failed));
      const found = await ctx.step('find primary', undefined, () => this.waitForPrimary(failed, f.command_timeout_ms), (id) => `backend ${id} left recovery`);
      if (found !== chosen) ctx.note('find primary', found, true, `failover_command promoted backend ${found}, not the candidate ${chosen}`);
      await this.setPrimary(ctx, found, oldPrimary, 'promoted by failover_command');
      chosen = found;
    }
    const newPrimary = chosen;
    this.mem.noCandidate = null;

    // Follow: builtin repoints every other attached standby; follow_primary_command (if
    // set) then runs once per remaining standby, as pgpool does.
    const followers = this.registry.list().filter((b) => b.id !== newPrimary && !failed.includes(b.id) && b.status === 'up' && b.role === 'standby');
    if (f.promote === 'builtin') {
      await Promise.all(followers.map((b) => this.builtinFollow(ctx, b.id, newPrimary)));
    }
    // A primary found already promoted runs no failover_command (someone else promoted it),
    // unless it was this event that promoted it, in a run that was cut off.
    if (f.promote === 'builtin' && f.failover_command && (!adopted || begun)) {
      for (const id of failed) await this.hook(ctx, 'failover_command', f.failover_command, this.placeholders(ctx, id, newPrimary), () => this.primaryObserved(failed));
    }
    if (f.follow_primary_command) {
      for (const b of followers) await this.hook(ctx, 'follow_primary_command', f.follow_primary_command, this.placeholders(ctx, b.id, newPrimary), () => this.followObserved(b.id, newPrimary));
    }
    await this.sync.run('after a new primary');
    return `backend ${newPrimary} is the new primary (old primary ${oldPrimary ?? 'unknown'})${followers.length ? `; ${followers.map((b) => b.id).join(',')} follow it` : ''}`;
  }

  private async setPrimary(ctx: RunContext, id: number, oldPrimary: number | null, how: string): Promise<void> {
    await this.record({ type: 'backend', id, status: 'up', role: 'primary', reason: `new primary (${how}): ${ctx.req.reason}` });
    if (oldPrimary !== null && oldPrimary !== id) await this.record({ type: 'backend', id: oldPrimary, role: 'unknown', reason: `replaced by backend ${id} as primary` });
    this.mem.lastPrimary = id;
    ctx.newPrimary = id;
    ctx.newPrimaryAt = new Date();
  }

  private async builtinFollow(ctx: RunContext, id: number, primary: number): Promise<void> {
    try {
      await this.once(ctx, 'follow', id, null, async () => {
        const streaming = await this.repoint(ctx, id, primary);
        return { ok: true, result: streaming ? `streams from backend ${primary}` : `repointed at backend ${primary}, not streaming yet` };
      });
    } catch {
      // Recorded in the step; a standby that cannot follow serves ever staler reads.
      await this.record({ type: 'backend', id, status: 'down', detachedBy: 'failover', reason: `could not follow new primary ${primary}` });
    }
  }

  /** Points standby `id` at `primary` and waits (10 s) until it streams from it; throws when
   * the change itself fails, false when it does not stream. */
  private async repoint(ctx: RunContext, id: number, primary: number): Promise<boolean> {
    const f = this.config.failover;
    await ctx.step(
      'follow',
      id,
      () => follow(this.target(id), this.target(primary), this.hc(id), f.command_timeout_ms, { user: f.replication_user, password: f.replication_password }),
      (r) => `backend ${id} ${r.outcome}: primary_conninfo = ${r.conninfo}`,
    );
    const streaming = await waitStreamingFrom(this.target(id), this.target(primary), this.hc(id), 10_000);
    if (streaming) ctx.note('follow check', id, true, `backend ${id} streams from backend ${primary}`);
    else ctx.note('follow check', id, false, `backend ${id} does not stream from backend ${primary} 10 s after the change (diverged timeline? a rewind may be needed); its reads may be stale`);
    return streaming;
  }

  /** One direct check of a backend (no retries): does it answer, and as what. */
  async check(id: number): Promise<Fresh> {
    try {
      const w = await walState(this.target(id), this.hc(id), this.hc(id).timeout_ms);
      return { ok: true, inRecovery: w.inRecovery };
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  }

  /** WAL state of every attached standby (and waiting node) not failed; null = unreachable
   * after the health check's own retries (a standby slow for one moment must not be skipped
   * as a candidate: that could mean no promotion at all). */
  async walStates(exclude: readonly number[]): Promise<Map<number, WalState | null>> {
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

  private async attach(ctx: RunContext, ids: readonly number[]): Promise<string> {
    const done: string[] = [];
    for (const id of ids) {
      if (ctx.req.source === 'admin') this.mem.adminDetached.delete(id);
      const w = await ctx.step('probe', id, () => walState(this.target(id), this.hc(id), this.hc(id).timeout_ms), (x) => `backend ${id} is reachable, ${x.inRecovery ? 'in recovery' : 'a primary'}`);
      const d = decideAttach(this.state(), id, w, this.config.failover.detach_false_primary);
      if (d.action === 'refuse') {
        ctx.note('attach', id, false, d.reason);
        if (d.detach) await this.record({ type: 'backend', id, status: 'down', role: 'unknown', detachedBy: 'failover', reason: 'false primary' });
        continue;
      }
      const primary = this.registry.primary();
      if (d.note && ctx.req.follow && primary && d.role === 'standby') {
        // It missed a promotion while detached: follow first, attach only once it streams.
        if (!(await this.repoint(ctx, id, primary.id).catch(() => false))) {
          ctx.note('attach', id, false, `backend ${id} stays detached: it does not stream from the primary ${primary.id} after following it`);
          continue;
        }
      } else if (d.note) ctx.note('attach', id, true, d.note);
      await this.record({ type: 'backend', id, status: 'up', role: d.role, reason: ctx.req.reason });
      if (d.role === 'primary') {
        this.mem.lastPrimary = id;
        ctx.newPrimary = id;
        ctx.newPrimaryAt = new Date();
      } else ctx.newPrimary = this.registry.primary()?.id ?? null;
      done.push(String(id));
      ctx.note('attach', id, true, `backend ${id} attached: ${ctx.req.reason}`);
      await this.hook(ctx, 'failback_command', this.config.failover.failback_command, this.placeholders(ctx, id, this.registry.primary()?.id ?? null), () => this.attachedObserved(id));
    }
    await this.sync.run('after a failback');
    return done.length ? `backend(s) ${done.join(',')} attached` : 'nothing attached';
  }

  // ---- promote / switchover ----------------------------------------------------------

  private async promote(ctx: RunContext, id: number, switchover: boolean): Promise<string> {
    await ctx.step('probe', id, () => walState(this.target(id), this.hc(id), this.hc(id).timeout_ms), (w) => `backend ${id} reachable, ${w.inRecovery ? 'in recovery' : 'NOT in recovery'}`);
    const old = this.registry.primary();
    ctx.oldPrimary = old?.id ?? this.mem.lastPrimary;
    const failed = ctx.oldPrimary !== null ? [ctx.oldPrimary] : [];
    if (old) {
      // Detach first: the proxy ends the primary's sessions, so no new write starts there.
      await this.record({ type: 'backend', id: old.id, status: 'down', detachedBy: 'failover', reason: ctx.req.reason });
      ctx.note('detach', old.id, true, `primary ${old.id} detached: ${ctx.req.reason}`);
      if (switchover) {
        try {
          await ctx.step('shutdown old primary', old.id, () => cleanShutdown(this.target(old.id), this.hc(old.id), this.config.failover.command_timeout_ms), () => `backend ${old.id} shut down cleanly (fast mode): its WAL is on the streaming standbys`);
        } catch (err) {
          // Nothing was promoted: give the writes their primary back rather than none.
          await this.record({ type: 'backend', id: old.id, status: 'up', reason: `switchover aborted: ${(err as Error).message}` });
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

  private placeholders(ctx: RunContext, failedId: number, newMain: number | null): PlaceholderValues {
    const b = this.registry.get(failedId);
    const m = newMain !== null ? this.registry.get(newMain) : null;
    const op = ctx.oldPrimary ?? this.registry.primary()?.id ?? this.mem.lastPrimary;
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
      term: ctx.term,
    };
  }

  /**
   * One recorded step of the event: `begun` is committed before it runs and `done` (with its
   * outcome) after. In a resumed run the record decides first (resume.ts decideStep): skip a
   * step recorded done, run a repeatable one again, and for a command cut off between begun
   * and done, ask the servers (`observe`) whether its effect is there. Resolves with the
   * step's outcome; a step that throws is recorded done and failed, and the error goes on.
   */
  private async once(ctx: RunContext, step: FailoverStepName, backend: number, observe: (() => Promise<Observation>) | null, run: () => Promise<{ ok: boolean; result: string }>): Promise<boolean> {
    const prior = ctx.resume?.steps.find((s) => s.step === step && s.backend === backend);
    const observed = prior?.phase === 'begun' && !REPEATABLE[step] && observe ? await observe() : null;
    const v = decideStep({ step, backend, prior, observed, term: ctx.term });
    const rec = (phase: 'begun' | 'done', ok?: boolean, result?: string) =>
      this.record({ type: 'failoverStep', seq: ctx.seq, step, backend, phase, ...(phase === 'done' ? { ok, result: (result ?? '').slice(0, 1000) } : {}) });
    if (v.action === 'skip') {
      ctx.note(step, backend, prior?.ok !== false, `resume: ${v.reason}`);
      return prior?.ok !== false;
    }
    if (v.action === 'treat as done') {
      await rec('done', true, `treated as done by a resumed run: ${observed?.reason ?? ''}`);
      ctx.note(step, backend, true, `resume: ${v.reason}`);
      return true;
    }
    ctx.log[ctx.resume ? 'info' : 'debug']({ step, backend }, `${ctx.resume ? 'resume' : 'step'}: ${v.reason}`);
    await rec('begun');
    let r: { ok: boolean; result: string };
    try {
      r = await run();
    } catch (err) {
      if (err instanceof Abandoned) throw err;
      await rec('done', false, (err as Error).message);
      throw err;
    }
    if (REPEATABLE[step]) {
      // Not waited for: the next decision (a promotion's new primary) is proposed behind it in
      // the same round, and a lost end costs nothing but a repetition that is safe.
      rec('done', r.ok, r.result).catch((err: Error) => ctx.log.warn({ step, backend, err: err.message }, `the end of step ${step} was not recorded (a resumed run repeats it, which is safe)`));
    } else await rec('done', r.ok, r.result);
    return r.ok;
  }

  /** An operator's command as a recorded step (once()); `observe` says whether its effect is there. */
  private hook(ctx: RunContext, key: 'failover_command' | 'follow_primary_command' | 'failback_command', template: string, values: PlaceholderValues, observe: () => Promise<Observation>): Promise<boolean> {
    if (!template) return Promise.resolve(true);
    return this.once(ctx, key, values.failedId, observe, async () => {
      const ok = await this.runHook(ctx, key, template, values);
      return { ok, result: ctx.steps.at(-1)?.detail ?? '' };
    });
  }

  /** failover_command's effect: a server other than the failed ones is out of recovery. */
  private async primaryObserved(failed: readonly number[]): Promise<Observation> {
    const wal = await this.walStates(failed);
    const p = [...wal.entries()].find(([, w]) => w !== null && !w.inRecovery);
    return p ? { done: true, reason: `backend ${p[0]} is a primary now` } : { done: false, reason: `no backend other than ${failed.join(',')} is out of recovery` };
  }

  /** follow_primary_command's effect: the standby streams from the new primary. */
  private async followObserved(id: number, primary: number): Promise<Observation> {
    try {
      const w = await walState(this.target(id), this.hc(id), this.hc(id).timeout_ms);
      return streamsFrom(w, this.target(primary)) ? { done: true, reason: `backend ${id} streams from the primary ${primary}` } : { done: false, reason: `backend ${id} does not stream from the primary ${primary}` };
    } catch (err) {
      return { done: false, reason: `backend ${id} does not answer: ${(err as Error).message}` };
    }
  }

  /** failback_command's effect (a notification): the attach it announces is recorded. */
  private attachedObserved(id: number): Promise<Observation> {
    const up = this.registry.get(id).status === 'up';
    return Promise.resolve(up ? { done: true, reason: `backend ${id} is recorded attached, which the command announces` } : { done: false, reason: `backend ${id} is not recorded attached` });
  }

  private async runHook(ctx: RunContext, key: string, template: string, values: PlaceholderValues): Promise<boolean> {
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
}
