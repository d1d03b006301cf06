// The single-peer Decisions sink: a decision is in force as soon as the registry says so.
// applyDecision is also what a watchdog peer runs for each committed entry, so a decision
// means the same on the coordinator and on the peers that only apply.
//
// With one peer this sink also holds routing while a failover runs (the watchdog's interlock
// does it from the replicated state in cluster mode): from FailoverStarted until
// FailoverFinished, bounded by holdMs, statements that need the backends it concerns wait
// instead of failing (registry RoutingGates, proxy/gates.ts).
import type { BackendPatch, BackendRegistry, RoutingGates } from '../backends/registry.js';
import type { Decision, Decisions } from './decisions.js';

/** Puts one decision in force in this peer's registry (failover records change no routing). */
export function applyDecision(registry: BackendRegistry, d: Decision): void {
  if (d.type !== 'backend') return;
  const patch: BackendPatch = {};
  if (d.status !== undefined) patch.status = d.status;
  if (d.role !== undefined) patch.role = d.role;
  registry.update(d.id, patch, d.reason);
}

/**
 * The backends a failover event holds: those it acts on (a failed node, the node to attach),
 * and the current primary when the primary may change (node_down of it, promote). `close_idle`
 * changes no routing and holds nothing.
 */
export function heldBy(d: Extract<Decision, { type: 'failoverStarted' }>, primary: number | undefined): number[] {
  if (d.kind === 'close_idle' || d.kind === 'node_up') return [];
  const ids = new Set(d.ids);
  if (d.kind === 'promote' && primary !== undefined) ids.add(primary);
  return [...ids];
}

export class RegistryDecisions implements Decisions {
  private seq = 0;

  /** `holdMs`: the longest a failover holds routing (watchdog.interlock_timeout_ms). */
  constructor(
    private readonly registry: BackendRegistry,
    private readonly holdMs = 60_000,
  ) {}

  record(d: Decision): Promise<void> {
    try {
      if (d.type === 'failoverStarted') this.hold(d);
      applyDecision(this.registry, d);
      if (d.type === 'failoverFinished') this.release(d.seq);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  private hold(d: Extract<Decision, { type: 'failoverStarted' }>): void {
    const ids = heldBy(d, this.registry.primary()?.id);
    if (ids.length === 0) return;
    const g = this.registry.gates();
    const untilMs = Date.now() + this.holdMs;
    const reason = failoverReason(d.seq);
    const held = [...g.held.filter((h) => !ids.includes(h.id)), ...ids.map((id) => ({ id, reason, untilMs }))];
    this.registry.setGates({ held, refuseWrites: g.refuseWrites }, `${reason} started (${d.kind} of ${d.ids.join(', ')}): holding routing to backends ${ids.join(', ')} for at most ${this.holdMs} ms`);
  }

  private release(seq: number): void {
    const g = this.registry.gates();
    const reason = failoverReason(seq);
    if (!g.held.some((h) => h.reason === reason)) return;
    const next: RoutingGates = { held: g.held.filter((h) => h.reason !== reason), refuseWrites: g.refuseWrites };
    this.registry.setGates(next, `${reason} finished: routing follows the registry again`);
  }

  /** One peer is the whole cluster: a local counter is unique. */
  nextSeq(): number {
    return ++this.seq;
  }

  term(): number {
    return 0;
  }
}

function failoverReason(seq: number): string {
  return `failover ${seq}`;
}
