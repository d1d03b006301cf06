// Randomized watchdog simulation: every seed keeps every check at every step and settles
// (one coordinator, every failover finished) after the faults stop. The long sweep is
// `npm run sim -- --watchdog --seeds 100000 --nodes 3` (see README).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runWatchdogSweep } from '../../src/cluster/sim/run-seed.js';

describe('watchdog simulation sweep', () => {
  it('50 seeds on 3 and 5 peers pass, with failovers, resumes and execution steps exercised', () => {
    const s = runWatchdogSweep({}, 1, 50, [3, 5]);
    console.log(`watchdog sweep: ${s.runs} runs, ${s.steps} steps, ${s.failovers} failovers, ${s.executions} execution steps, ${s.resumed} resumed (steps cut off: ${s.stepsRerun} run again, ${s.stepsTreatedDone} treated as done), ${s.elapsedMs} ms`);
    assert.deepEqual(s.failures.map((f) => f.message), []);
    assert.ok(s.failovers > 40 && s.resumed > 5 && s.executions > s.failovers, 'the faults exercised too little');
    // Coordinators were cut off between a step's begun and done, both before and after its effect.
    assert.ok(s.stepsRerun > 0 && s.stepsTreatedDone > 0, `steps cut off: ${s.stepsRerun} run again, ${s.stepsTreatedDone} treated as done`);
  });
});
