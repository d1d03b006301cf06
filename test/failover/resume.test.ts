// Resuming an open failover record: the plan from the record, and per step what to do, with
// the reason on every branch (src/failover/resume.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FailoverStepRecord } from '../../src/failover/decisions.js';
import { decideStep, planResume, promotedBefore, type Observation } from '../../src/failover/resume.js';

const rec = (over: Partial<FailoverStepRecord>): FailoverStepRecord => ({ step: 'failover_command', backend: 0, phase: 'begun', ok: null, result: '', peer: 'a', term: 4, runs: 1, ...over });
const seen = (done: boolean, reason: string): Observation => ({ done, reason });

describe('resume: the plan comes from the record', () => {
  it('node_down of the primary replaces it even though it is recorded down already', () => {
    assert.deepEqual(planResume('node_down', [0], { seq: 7, replaces: 0, steps: [] }), { action: 'replace primary', ids: [0], oldPrimary: 0, reason: 'resuming failover 7: primary 0 failed; find the primary again and finish the steps left' });
  });
  it('node_down of a standby detaches it', () => {
    const p = planResume('node_down', [2], { seq: 7, replaces: null, steps: [] });
    assert.deepEqual([p.action, 'primaryFailed' in p && p.primaryFailed], ['detach', false]);
  });
  it('promote keeps the chosen standby', () => {
    const p = planResume('promote', [2], { seq: 7, replaces: 0, steps: [] });
    assert.deepEqual(p.action === 'replace primary' && [p.ids, p.oldPrimary, p.forced], [[0], 0, 2]);
  });
  it('node_up attaches again; close_idle is not resumed', () => {
    assert.equal(planResume('node_up', [1], { seq: 7, replaces: null, steps: [] }).action, 'attach');
    assert.match(planResume('close_idle', [], { seq: 7, replaces: null, steps: [] }).reason, /not resumed/);
  });
  it('a promotion begun or done is the candidate; a failed one is not', () => {
    const steps = [rec({ step: 'promote', backend: 1, phase: 'done', ok: false }), rec({ step: 'promote', backend: 2, phase: 'begun' })];
    assert.equal(promotedBefore({ seq: 7, replaces: 0, steps })?.backend, 2);
    assert.equal(promotedBefore({ seq: 7, replaces: 0, steps: steps.slice(0, 1) }), undefined);
    assert.equal(promotedBefore(null), undefined);
  });
});

describe('resume: each step', () => {
  const cases: { name: string; x: Parameters<typeof decideStep>[0]; action: string; reason: RegExp }[] = [
    { name: 'not begun before: run', x: { step: 'follow_primary_command', backend: 2, prior: undefined, observed: null, term: 5 }, action: 'run', reason: /follow_primary_command for backend 2: not begun by an earlier run/ },
    { name: 'recorded done: skip', x: { step: 'failover_command', backend: 0, prior: rec({ phase: 'done', ok: true, result: 'exit 0' }), observed: null, term: 5 }, action: 'skip', reason: /recorded done by a in term 4 \(ok: exit 0\); not run again/ },
    { name: 'recorded done and failed: skip too (a failure is an outcome)', x: { step: 'promote', backend: 1, prior: rec({ step: 'promote', backend: 1, phase: 'done', ok: false }), observed: null, term: 5 }, action: 'skip', reason: /\(failed\)/ },
    { name: 'a promotion cut off: safe to repeat', x: { step: 'promote', backend: 1, prior: rec({ step: 'promote', backend: 1 }), observed: null, term: 5 }, action: 'run', reason: /begun by a in term 4, no end recorded; safe to repeat/ },
    { name: 'a follow cut off: safe to repeat', x: { step: 'follow', backend: 2, prior: rec({ step: 'follow', backend: 2 }), observed: null, term: 5 }, action: 'run', reason: /safe to repeat/ },
    { name: 'a command cut off whose effect is there: treated as done', x: { step: 'failover_command', backend: 0, prior: rec({}), observed: seen(true, 'backend 1 is a primary now'), term: 5 }, action: 'treat as done', reason: /no end recorded; backend 1 is a primary now: treated as done, not run again/ },
    { name: 'a command cut off whose effect is missing: run again, fenced by the new term', x: { step: 'failover_command', backend: 0, prior: rec({}), observed: seen(false, 'no backend other than 0 is out of recovery'), term: 5 }, action: 'run', reason: /no backend other than 0 is out of recovery: run again with %T = 5 as the fencing token/ },
    { name: 'a command cut off, nothing observable: run again', x: { step: 'failback_command', backend: 1, prior: rec({ step: 'failback_command', backend: 1 }), observed: null, term: 5 }, action: 'run', reason: /its effect cannot be observed: run again with %T = 5/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const v = decideStep(c.x);
      assert.equal(v.action, c.action, v.reason);
      assert.match(v.reason, c.reason);
    });
  }
});
