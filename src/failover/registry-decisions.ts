// The single-peer Decisions sink: a decision is in force as soon as the registry says so.
// applyDecision is also what a watchdog peer runs for each committed entry, so a decision
// means the same on the coordinator and on the peers that only apply.
import type { BackendPatch, BackendRegistry } from '../backends/registry.js';
import type { Decision, Decisions } from './decisions.js';

/** Puts one decision in force in this peer's registry (failover records change no routing). */
export function applyDecision(registry: BackendRegistry, d: Decision): void {
  if (d.type !== 'backend') return;
  const patch: BackendPatch = {};
  if (d.status !== undefined) patch.status = d.status;
  if (d.role !== undefined) patch.role = d.role;
  registry.update(d.id, patch, d.reason);
}

export class RegistryDecisions implements Decisions {
  private seq = 0;

  constructor(private readonly registry: BackendRegistry) {}

  record(d: Decision): Promise<void> {
    try {
      applyDecision(this.registry, d);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** One peer is the whole cluster: a local counter is unique. */
  nextSeq(): number {
    return ++this.seq;
  }

  term(): number {
    return 0;
  }
}
