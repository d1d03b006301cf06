// The simulator's checks must catch real bugs, or a green sweep means nothing. Each test
// breaks one rule through a test-only hook and requires the checker to flag it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runSeed, runSweep, SimFailure } from '../../src/raft/sim/run-seed.js';
import { InvariantChecker, SafetyViolation } from '../../src/raft/sim/invariants.js';
import { SimCluster } from '../../src/raft/sim/cluster.js';

describe('raft simulator checks', () => {
  it('catches a node that votes twice in a term (election safety)', () => {
    const s = runSweep({ unsafeTestFaults: { voteTwice: true } }, 1, 100, [3, 5], { stopOnFailure: true });
    assert.ok(s.failures.length > 0, 'double voting went unnoticed over 200 runs');
    assert.match(s.failures[0].message, /election safety: two leaders in term/);
  });

  it('catches a node whose ticksUntilDue promises quiet ticks that are not (a sleeping runtime would miss their work)', () => {
    const s = runSweep({ unsafeTestFaults: { lateDeadline: true } }, 1, 20, [3], { stopOnFailure: true });
    assert.ok(s.failures.length > 0, 'a late deadline went unnoticed');
    assert.match(s.failures[0].message, /tick deadline: .* before its announced deadline/);
  });

  it('catches a node that forgets its vote on restart', () => {
    const s = runSweep({ unsafeTestFaults: { forgetVoteOnRestart: true } }, 1, 400, [3, 5], { stopOnFailure: true });
    assert.ok(s.failures.length > 0, 'lost votes went unnoticed');
    assert.match(s.failures[0].message, /election safety|leader completeness|log matching|state machine/);
  });

  for (const broken of [false, true]) {
    it(`${broken ? 'catches two simultaneous lease holders when followers vote during a lease' : 'a candidate cut off from a healthy leader cannot win'}`, () => {
      // C cannot hear the leader L, but V can. C keeps campaigning; V must refuse while it
      // hears from L. The moment anyone else wins, L is cut off completely: its lease runs on.
      const run = (): void => {
        const c = new SimCluster({ seed: 3, nodes: 3, unsafeTestFaults: broken ? { grantVotesDuringLease: true } : undefined });
        assert.ok(c.runUntilTrue(() => c.leader()?.hasLease() === true, 60));
        const l = c.leader()!;
        const [cand] = c.ids.filter((id) => id !== l.id);
        c.net.block(l.id, cand);
        c.onLeader = (id) => {
          if (id !== l.id) c.net.partition([[l.id]]);
        };
        c.runTicks(60);
        assert.equal(c.leader()?.id, l.id, 'the leader was replaced while it had a majority');
      };
      if (broken) assert.throws(run, (e: unknown) => e instanceof SafetyViolation && /lease safety/.test(e.message));
      else run();
    });
  }

  it('a failing seed prints itself and replays bit for bit', () => {
    // (the sweep stops at the first failing seed)
    const s = runSweep({ unsafeTestFaults: { voteTwice: true } }, 1, 500, [3], { stopOnFailure: true });
    const f = s.failures[0];
    assert.ok(f instanceof SimFailure);
    assert.match(f.message, new RegExp(`npm run sim -- --seed ${f.seed} --nodes 3`));
    const again = (): string => {
      try {
        runSeed({ seed: f.seed, nodes: 3, unsafeTestFaults: { voteTwice: true } });
        return 'passed';
      } catch (e) {
        return (e as Error).message;
      }
    };
    assert.equal(again(), f.message);
    assert.equal(again(), f.message);
  });

  it('correct runs replay identically', () => {
    const a = runSeed({ seed: 77, nodes: 5 });
    const b = runSeed({ seed: 77, nodes: 5 });
    assert.deepEqual(a, b);
    assert.notDeepEqual(runSeed({ seed: 78, nodes: 5 }), a);
  });

  it('flags divergent state machines and committed entries that change', () => {
    const c = new InvariantChecker();
    c.onApply('a', { index: 1, hash: 111 });
    c.onApply('b', { index: 1, hash: 111 });
    assert.throws(() => c.onApply('c', { index: 1, hash: 222 }), SafetyViolation);
  });
});
