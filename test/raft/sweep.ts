// Randomized simulation sweep: every seed must keep every safety invariant at every step and
// converge after the faults stop. A failure prints the replay command. One file per cluster
// size, so the test runner runs the sizes in parallel.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runSweep, percentile } from '../../src/raft/sim/run-seed.js';

export function sweepTest(nodes: number, seeds = 2000): void {
  describe(`raft simulation sweep, ${nodes} nodes`, () => {
    it(`${seeds} seeds pass`, () => {
      const s = runSweep({}, 1, seeds, [nodes]);
      const p99 = percentile(s.failover, 99);
      console.log(
        `sweep ${nodes} nodes: ${s.seeds} runs, ${s.steps} steps in ${s.elapsedMs} ms; leader crash -> new leader median ${percentile(s.failover, 50).toFixed(2)} p99 ${p99.toFixed(2)} ticks`,
      );
      assert.deepEqual(s.failures.map((f) => f.message), []);
      assert.equal(s.seeds, seeds);
    });
  });
}
