// Raft paper, Figure 8: a leader must not commit an entry of an earlier term by counting
// replicas. Scripted exactly, then randomized (many leader crashes, unreliable network).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SimCluster, type SimMessage } from '../../src/raft/sim/cluster.js';
import { SafetyViolation } from '../../src/raft/sim/invariants.js';
import { Prng } from '../../src/raft/sim/prng.js';
import { awaitConverged, committedValues } from './helpers.js';
import type { BrokenRules } from '../../src/raft/sim/broken-node.js';

/**
 * Drives five nodes through Figure 8. Elections happen only when the script calls
 * campaign() (election timeout far away; no check-quorum or pre-vote to keep it literal).
 * Returns the cluster at the end.
 */
function figure8(unsafeTestFaults?: BrokenRules): { c: SimCluster; commitAfterCounting: number } {
  const c = new SimCluster({
    seed: 8,
    nodes: 5,
    electionTicks: 1000,
    heartbeatTicks: 1,
    checkQuorum: false,
    preVote: false,
    maxEntriesPerMsg: 1,
    unsafeTestFaults,
  });
  const [s1, s2, s3, s4, s5] = c.ids;
  const lead = (id: string): void => {
    // A first attempt may lose only to learn a newer term; the next one runs in it.
    for (let attempt = 0; attempt < 3 && c.raft(id)?.role !== 'leader'; attempt++) {
      c.campaign(id);
      c.runUntilTrue(() => c.raft(id)?.role === 'leader', 5);
    }
    assert.equal(c.raft(id)?.role, 'leader', `${id} did not win`);
  };
  // term 1: S1 leads, its no-op (index 1) reaches everybody.
  lead(s1);
  c.runTicks(2);
  assert.equal(c.raft(s5)!.log.committed, 1);
  // (a) S1 replicates a term-1 entry at index 2 to S2 only.
  c.net.partition([[s1, s2]]);
  const a = c.propose(s1);
  assert.notEqual(a, null);
  c.runTicks(2);
  assert.equal(c.raft(s2)!.log.lastIndex(), 2);
  // (b) S1 crashes; S5 wins term 2 with S3 and S4 and writes its no-op at index 2 alone.
  c.crash(s1);
  c.net.partition([[s3, s4, s5]]);
  c.onLeader = (id) => {
    if (id === s5) c.net.partition([[s5]]);
  };
  lead(s5);
  c.onLeader = null;
  assert.equal(c.raft(s5)!.log.term(2), c.raft(s5)!.term);
  assert.equal(c.raft(s3)!.log.lastIndex(), 1);
  // (c) S5 crashes; S1 restarts and wins term 3 with S2 and S3, then copies index 2 (term 1)
  //     to S3 — a majority (S1, S2, S3) now holds it — while its index-3 entry is kept from S3.
  c.crash(s5);
  c.restart(s1);
  c.net.partition([[s1, s2, s3]]);
  c.dropIf = (m: SimMessage) => m.type === 'app' && m.to === s3 && m.entries.some((e) => e.index >= 3) && (c.raft(m.to)?.log.lastIndex() ?? 0) >= 2;
  lead(s1);
  c.runTicks(3);
  assert.equal(c.raft(s3)!.log.term(2), 1, 'S3 did not receive index 2');
  const commitAfterCounting = c.raft(s1)!.log.committed;
  // (d) S1 crashes; S5 restarts and, with the newest last term, wins with S2, S3, S4 and
  //     overwrites index 2. That is safe only if (a) was never committed.
  c.crash(s1);
  c.dropIf = null;
  c.net.heal();
  c.restart(s5);
  lead(s5);
  c.restart(s1);
  awaitConverged(c, 200);
  return { c, commitAfterCounting };
}

describe('raft figure 8', () => {
  it('never commits an older-term entry by counting (scripted)', () => {
    const { c, commitAfterCounting } = figure8();
    assert.equal(commitAfterCounting, 1, 'S1 committed the term-1 entry at index 2 by counting replicas');
    // Index 2 ended up as S5's term-2 no-op everywhere; the term-1 value is gone, consistently.
    for (const id of c.ids) {
      assert.equal(c.raft(id)!.log.term(2), 2, id);
      assert.deepEqual(committedValues(c.raft(id)!), [], id);
    }
  });

  it('the checker catches a leader that commits an older-term entry by counting', () => {
    assert.throws(
      () => figure8({ commitOldTermByCounting: true }),
      (e: unknown) => e instanceof SafetyViolation && /leader completeness|committed entry changed|state machine safety/.test(e.message),
    );
  });

  it('stays safe with many leader crashes on an unreliable network (figure 8 unreliable)', () => {
    for (const seed of [1, 2, 3, 4]) {
      const c = new SimCluster({
        seed,
        nodes: 5,
        maxEntriesPerMsg: 1 + (seed % 3),
        network: { drop: 0.1, duplicate: 0.05, minDelay: 5, maxDelay: 800 },
      });
      const rng = new Prng(seed * 31);
      const committed: number[] = [];
      for (let iter = 0; iter < 200; iter++) {
        const l = c.leader();
        if (l) c.propose(l.id);
        c.runTicks(rng.chance(0.3) ? rng.range(5, 20) : 1);
        const l2 = c.leader();
        if (l2 && rng.chance(0.3)) c.crash(l2.id, rng.pick(['now', 'afterPersist', 'afterSend'] as const));
        const up = c.ids.filter((id) => c.isUp(id));
        if (up.length < 3) {
          const down = c.ids.filter((id) => !c.isUp(id));
          c.restart(rng.pick(down));
        }
      }
      c.cancelPendingCrashes();
      c.setNetwork({ drop: 0, duplicate: 0, minDelay: 5, maxDelay: 60 });
      for (const id of c.ids) c.restart(id);
      awaitConverged(c, 300);
      const v = c.propose();
      assert.notEqual(v, null);
      awaitConverged(c, 50);
      committed.push(...committedValues(c.leader()!));
      assert.ok(committed.includes(v as number));
      assert.ok(c.checker.elections > 10, `only ${c.checker.elections} elections`);
    }
  });
});
