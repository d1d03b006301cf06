// Shared helpers for the Raft scenario tests.
import assert from 'node:assert/strict';
import { SimCluster, type ClusterOptions, type SimRaft } from '../../src/raft/sim/cluster.js';
import type { Entry } from '../../src/raft/core/types.js';

export function cluster(nodes: number, extra: Partial<ClusterOptions> = {}): SimCluster {
  return new SimCluster({ seed: 42, nodes, ...extra });
}

/** Run until exactly one live leader exists that every connected live node follows; return it. */
export function awaitLeader(c: SimCluster, maxTicks = 60): SimRaft {
  const ok = c.runUntilTrue(() => {
    const l = c.leader();
    return l !== null && l.log.term(l.log.committed) === l.term;
  }, maxTicks);
  assert.ok(ok, `no leader within ${maxTicks} ticks`);
  return c.leader() as SimRaft;
}

export function awaitConverged(c: SimCluster, maxTicks = 200): void {
  assert.ok(c.runUntilTrue(() => c.converged(), maxTicks), `cluster did not converge within ${maxTicks} ticks`);
}

/** Values (non-no-op payloads) of the committed log of a node, in order (from its own log; compacted prefix excluded). */
export function committedValues(r: SimRaft): number[] {
  const out: number[] = [];
  for (let i = r.log.firstIndex(); i <= r.log.committed; i++) {
    const e = r.log.entry(i) as Entry<number>;
    if (e.data !== null) out.push(e.data);
  }
  return out;
}

export function others(c: SimCluster, id: string): string[] {
  return c.ids.filter((x) => x !== id);
}

/** Propose through the leader and wait until it is committed on the leader; returns the value. */
export function proposeCommitted(c: SimCluster, maxTicks = 30): number {
  const l = awaitLeader(c);
  const v = c.propose(l.id);
  assert.notEqual(v, null, 'leader refused a proposal');
  const idx = l.log.lastIndex();
  assert.ok(
    c.runUntilTrue(() => l.log.committed >= idx, maxTicks),
    `value ${v} not committed within ${maxTicks} ticks`,
  );
  return v as number;
}
