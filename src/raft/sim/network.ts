// The simulated network: per message it decides whether and when (possibly twice) the
// message arrives. Random delays reorder; partitions cut every link between groups.
import type { NodeId } from '../core/types.js';
import type { Prng } from './prng.js';

export interface NetworkConditions {
  /** Probability that a message is lost. */
  drop: number;
  /** Probability that a message is delivered twice. */
  duplicate: number;
  /** Delay range in time units (1 tick = 1000 units at the nominal rate). */
  minDelay: number;
  maxDelay: number;
}

export const RELIABLE: NetworkConditions = { drop: 0, duplicate: 0, minDelay: 5, maxDelay: 60 };

export class Network {
  conditions: NetworkConditions;
  private group = new Map<NodeId, number>();
  private blocked = new Set<string>();
  sent = 0;
  dropped = 0;

  constructor(
    private readonly rng: Prng,
    conditions: NetworkConditions = RELIABLE,
  ) {
    this.conditions = { ...conditions };
  }

  /** Split nodes into groups that cannot talk to each other; nodes not listed form one more group. */
  partition(groups: NodeId[][]): void {
    this.group.clear();
    groups.forEach((g, i) => g.forEach((id) => this.group.set(id, i + 1)));
  }

  heal(): void {
    this.group.clear();
    this.blocked.clear();
  }

  /** Cut one direction of one link. */
  block(from: NodeId, to: NodeId): void {
    this.blocked.add(`${from}>${to}`);
  }

  unblock(from: NodeId, to: NodeId): void {
    this.blocked.delete(`${from}>${to}`);
  }

  connected(a: NodeId, b: NodeId): boolean {
    if ((this.group.get(a) ?? 0) !== (this.group.get(b) ?? 0)) return false;
    return this.blocked.size === 0 || !this.blocked.has(`${a}>${b}`);
  }

  /** Delays (relative) at which a message from a to b arrives: none, one or two. */
  route(a: NodeId, b: NodeId): number[] {
    this.sent++;
    const c = this.conditions;
    if (!this.connected(a, b) || (c.drop > 0 && this.rng.chance(c.drop))) {
      this.dropped++;
      return [];
    }
    const d = (): number => this.rng.range(c.minDelay, c.maxDelay);
    if (c.duplicate > 0 && this.rng.chance(c.duplicate)) return [d(), d()];
    return [d()];
  }
}
