// The watchdog simulator's checks must catch real bugs, or a green sweep means nothing.
// Each test breaks one rule through a test-only hook and requires the checker to flag it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runWatchdogSeed, runWatchdogSweep } from '../../src/cluster/sim/run-seed.js';
import { WatchdogChecker, SafetyViolation } from '../../src/cluster/sim/invariants.js';
import { SimFailure } from '../../src/raft/sim/run-seed.js';

describe('watchdog simulator checks', () => {
  const broken: { name: string; faults: Parameters<typeof runWatchdogSeed>[0]['faults']; extra?: object; expect: RegExp }[] = [
    { name: 'a VIP taken on the leader role alone, without the lease', faults: { vipWithoutLease: true }, expect: /VIP safety: .* are all eligible to hold the VIP/ },
    { name: 'a deposed coordinator that keeps running its failover', faults: { deposedRunnerContinues: true }, extra: { execSteps: 4, stepTicks: 4 }, expect: /failover executed once/ },
    { name: 'a new coordinator that never resumes an open failover', faults: { neverResume: true }, expect: /failover finished once: failover \d+ never finished/ },
    { name: 'a failover on one peer\'s word', faults: { ignoreConsensus: true }, expect: /failover consensus: p\d fails backend \d over, but only 1 of/ },
    { name: 'a resumed run that re-runs a command cut off after it completed', faults: { rerunBegunCommands: true }, extra: { execSteps: 4 }, expect: /step completed once: \w+ of backend \d of failover \d+, not safe to repeat, completed 2 times/ },
  ];
  for (const b of broken) {
    it(`catches ${b.name}`, () => {
      const s = runWatchdogSweep({ faults: b.faults, ...b.extra }, 1, 100, [3, 5], { stopOnFailure: true });
      assert.ok(s.failures.length > 0, `${b.name} went unnoticed over ${s.runs} runs`);
      assert.match(s.failures[0].message, b.expect);
    });
  }

  it('a failing seed prints its replay command and replays bit for bit', () => {
    const s = runWatchdogSweep({ faults: { vipWithoutLease: true } }, 1, 50, [3], { stopOnFailure: true });
    const f = s.failures[0];
    assert.ok(f instanceof SimFailure);
    assert.match(f.message, new RegExp(`npm run sim -- --watchdog --seed ${f.seed} --nodes 3`));
    const again = (): string => {
      try {
        runWatchdogSeed({ seed: f.seed, peers: 3, faults: { vipWithoutLease: true } });
        return 'passed';
      } catch (e) {
        return (e as Error).message;
      }
    };
    assert.equal(again(), f.message);
  });

  it('correct runs replay identically, and different seeds differ', () => {
    const a = runWatchdogSeed({ seed: 11, peers: 3 });
    assert.deepEqual(runWatchdogSeed({ seed: 11, peers: 3 }), a);
    assert.notDeepEqual(runWatchdogSeed({ seed: 12, peers: 3 }), a);
  });

  it('flags divergent cluster states, a second finish and a step after the finish', () => {
    const c = new WatchdogChecker();
    c.onApply('a', 5, '{"x":1}');
    assert.throws(() => c.onApply('b', 5, '{"x":2}'), SafetyViolation);
    c.onFinished(7, 9);
    assert.throws(() => c.onFinished(7, 12), /finished at entry 9 and again at 12/);
    assert.throws(() => c.execStart(7, 'a', 1, 100, 200), /runs a step of failover 7, which finished/);
    c.onEffect(8, 'follow of backend 1', true, 'a');
    c.onEffect(8, 'follow of backend 1', true, 'b');
    c.onEffect(8, 'failover_command of backend 0', false, 'a');
    assert.throws(() => c.onEffect(8, 'failover_command of backend 0', false, 'b'), /failover_command of backend 0 of failover 8, not safe to repeat, completed 2 times \(a, b\)/);
  });
});
