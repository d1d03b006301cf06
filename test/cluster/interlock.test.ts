// The interlock: holds while a failover is open elsewhere, bounded by the timeout; resume.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { interlock, toResume } from '../../src/cluster/interlock.js';
import { applyAll, upState } from './fixtures.js';

const start = (peer: string, ids: number[]) =>
  ({ type: 'decision', peer, at: 1000, decision: { type: 'failoverStarted', seq: 1, kind: 'node_down', ids, term: 2, reason: 'consensus' } }) as const;

describe('interlock', () => {
  const open = applyAll(upState(), 2, start('a', [0, 1]));
  const seq = open.index;

  it('holds nothing when no failover is open', () => {
    const v = interlock(upState(), 5000, 60_000);
    assert.deepEqual(v.held, []);
    assert.match(v.reason, /no failover open/);
  });

  it('every peer holds the affected backends until the record finishes', () => {
    const v = interlock(open, 2000, 60_000);
    assert.deepEqual(v.held, [0, 1]);
    assert.equal(v.holds[0].until, 61_000);
    assert.match(v.reason, new RegExp(`failover ${seq} \\(node_down of 0,1\\) run by a in term 2 is open`));
    const done = applyAll(open, 2, { type: 'decision', peer: 'a', at: 3000, decision: { type: 'failoverFinished', seq, ok: true, summary: 'ok', newPrimary: 2 } });
    assert.deepEqual(interlock(done, 3001, 60_000).held, []);
  });

  it('the hold is the same on every peer, the runner included (the state alone decides it)', () => {
    assert.deepEqual(interlock(open, 2000, 60_000).held, [0, 1]);
  });

  it('the hold lapses after interlock_timeout_ms, and a resume restarts the clock', () => {
    const v = interlock(open, 61_000, 60_000);
    assert.deepEqual(v.held, []);
    assert.match(v.reason, /past interlock_timeout_ms 60000/);
    const resumed = applyAll(open, 3, { type: 'coordinator', peer: 'c', at: 70_000 }, { type: 'failoverResumed', peer: 'c', at: 70_000, seq, reason: 'left open' });
    assert.deepEqual(interlock(resumed, 71_000, 60_000).held, [0, 1]);
  });

  it('a new coordinator resumes the oldest open record that is not its own in this term', () => {
    assert.equal(toResume(upState(), 'b', 3).record, null);
    const r = toResume(open, 'b', 3);
    assert.equal(r.record?.seq, seq);
    assert.match(r.reason, /left open by a in term 2: resume it in term 3/);
    const same = toResume(open, 'a', 2);
    assert.equal(same.record, null);
    assert.match(same.reason, /already runs here in term 2/);
    assert.equal(toResume(open, 'a', 4).record?.seq, seq, 'the same peer in a later term resumes its own old record');
  });
});
