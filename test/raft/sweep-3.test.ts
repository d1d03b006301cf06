// Randomized simulation sweep, 3 nodes: every seed must keep every safety invariant at
// every step and converge after the faults stop. A failure prints the replay command.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runSweep, percentile } from '../../src/raft/sim/run-seed.js';

const SEEDS = 2000;

describe('raft simulation sweep, 3 nodes', () => {
  it(`${SEEDS} seeds pass`, () => {
    const s = runSweep({}, 1, SEEDS, [3]);
    const p99 = percentile(s.failover, 99);
    console.log(
      `sweep 3 nodes: ${s.seeds} runs, ${s.steps} steps in ${s.elapsedMs} ms; leader crash -> new leader median ${percentile(s.failover, 50).toFixed(2)} p99 ${p99.toFixed(2)} ticks`,
    );
    assert.deepEqual(s.failures.map((f) => f.message), []);
    assert.equal(s.seeds, SEEDS);
  });
});
