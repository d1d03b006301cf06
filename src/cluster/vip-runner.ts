// Runs the VIP commands as vip.ts's rules say: record the claim in the replicated state,
// escalate once it has committed while this peer may hold the VIP, de-escalate as soon as it
// may not (stepping down, check-quorum, no trusted server answers, shutdown); one command
// at a time. Only a peer shutting down records a release: a peer that may escalate again in
// the same term must not have a release of its own land in the log after it did. A starting peer first drops a VIP it may still hold
// from before a crash (dropIfHeld), so it never joins as a second holder.
// Placeholders: %V the address, %I the interface, %% a percent sign (shell-quoted).
import { spawn } from 'node:child_process';
import type { VipConfig } from '../config/index.js';
import { runCommand, shellQuote } from '../failover/commands.js';
import type { Logger } from '../log.js';
import { claimAtTermStart, vipDecision, type VipInput } from './vip.js';

/** Proposes the claim (holding) or release of the VIP to the Raft log; resolves once applied here. */
export type VipRecorder = (holding: boolean) => Promise<unknown>;

export function expandVipCommand(template: string, vip: Pick<VipConfig, 'address' | 'interface'>): string {
  return template.replace(/%([VI%])/g, (_, c: string) => (c === '%' ? '%' : shellQuote(c === 'V' ? vip.address : vip.interface)));
}

export class VipRunner {
  holding = false;
  /** Escalation and de-escalation commands run since start, for the admin view and metrics. */
  escalations = 0;
  deEscalations = 0;
  private running = false;
  private lastReason = '';
  private answering = 0;
  private probeTimer: NodeJS.Timeout | undefined;
  /** The term whose claim this peer proposed (one proposal per term; a lost one waits for the next). */
  private claimedTerm = -1;

  constructor(
    private readonly vip: VipConfig,
    private readonly trustedServers: readonly string[],
    private readonly log: Logger,
    private readonly record: VipRecorder,
  ) {
    this.answering = trustedServers.length; // until the first probe says otherwise
  }

  /** Before joining: run the de-escalation command unconditionally (a crash may have left the address here). */
  async dropIfHeld(): Promise<void> {
    await this.run('de-escalation at start (drop a VIP left from before)', this.vip.de_escalation_command);
    this.holding = false;
  }

  startProbing(periodMs = 3000): void {
    if (this.trustedServers.length === 0) return;
    const probe = async () => {
      const ok = await Promise.all(this.trustedServers.map((h) => ping(h)));
      const n = ok.filter(Boolean).length;
      if (n !== this.answering) this.log.info({ answering: n, of: this.trustedServers.length }, 'trusted servers answering changed');
      this.answering = n;
    };
    void probe();
    this.probeTimer = setInterval(() => void probe(), periodMs);
    this.probeTimer.unref();
  }

  stopProbing(): void {
    clearInterval(this.probeTimer);
  }

  /** Called as this peer becomes leader of `term`: may its first entry carry the claim (vip.ts claimAtTermStart)? If so the claim counts as proposed for the term. */
  claimInFirstEntry(term: number, shuttingDown: boolean): boolean {
    const c = claimAtTermStart({ trusted: { configured: this.trustedServers.length, answering: this.answering }, shuttingDown });
    if (c.eligible) this.claimedTerm = term;
    return c.eligible;
  }

  /** One step: what vip.ts says, carried out (unless a command is still running). */
  step(input: Omit<VipInput, 'holding' | 'trusted'>): void {
    const d = vipDecision({ ...input, holding: this.holding, trusted: { configured: this.trustedServers.length, answering: this.answering } });
    if (d.reason !== this.lastReason) this.log[d.action === 'hold' || d.action === 'nothing' ? 'debug' : 'info']({ vip: this.vip.address, action: d.action }, `VIP: ${d.reason}`);
    this.lastReason = d.reason;
    if (this.running) return;
    if (d.action === 'claim' && this.claimedTerm !== input.raft.term) {
      this.claimedTerm = input.raft.term;
      this.record(true).catch((err: Error) => this.log.warn({ vip: this.vip.address, err: err.message }, 'VIP claim not recorded'));
    } else if (d.action === 'escalate') void this.escalate();
    else if (d.action === 'de-escalate') void this.deEscalate(d.reason, false);
  }

  async escalate(): Promise<boolean> {
    this.running = true;
    try {
      const ok = await this.run('VIP escalation', this.vip.escalation_command);
      this.escalations++;
      this.holding = ok;
      return ok;
    } finally {
      this.running = false;
    }
  }

  /** Drops the VIP; `release` (shutdown only): then record that nobody holds it (only a leader can). */
  async deEscalate(why: string, release: boolean): Promise<void> {
    // Counted as dropped even if the command fails: trying again cannot make it safer, and
    // the next escalation script removes the address from every other peer first.
    this.holding = false;
    this.running = true;
    try {
      await this.run(`VIP de-escalation (${why})`, this.vip.de_escalation_command);
      this.deEscalations++;
    } finally {
      this.running = false;
    }
    if (release) await this.record(false).catch((err: Error) => this.log.debug({ vip: this.vip.address, err: err.message }, 'VIP release not recorded (the next claim replaces it)'));
  }

  private async run(what: string, template: string): Promise<boolean> {
    const r = await runCommand(expandVipCommand(template, this.vip), { timeoutMs: this.vip.command_timeout_ms, logger: this.log, what, context: { vip: this.vip.address, interface: this.vip.interface } });
    return r.ok;
  }
}

function ping(host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const p = spawn('ping', ['-c', '1', '-W', '1', host], { stdio: 'ignore' });
    p.on('error', () => resolve(false));
    p.on('exit', (code) => resolve(code === 0));
  });
}
