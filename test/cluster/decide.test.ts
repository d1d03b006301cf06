// The coordinator's one step: precedence of claim, resume, failover, transfer; reasons.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decide, leaseCovers, type DecideInput } from '../../src/cluster/decide.js';
import { tally } from '../../src/cluster/tally.js';
import { applyAll, PEERS, upState, view, views } from './fixtures.js';

const raft: DecideInput['raft'] = {
  role: 'leader',
  term: 2,
  leader: 'a',
  hasLease: true,
  leaseForfeited: false,
  lastIndex: 20,
  transferee: null,
  progress: { a: { match: 20, next: 21, state: 'replicate', active: true }, b: { match: 20, next: 21, state: 'replicate', active: true }, c: { match: 18, next: 19, state: 'replicate', active: true } },
};

function input(over: Partial<DecideInput> = {}): DecideInput {
  const state = over.state ?? upState();
  const v = over.views ?? views(view('a', []), view('b', []), view('c', []));
  return {
    self: 'a',
    selfPriority: 0,
    peers: PEERS,
    raft,
    state,
    tally: tally({ self: 'a', peers: PEERS, views: v, maxViewAgeMs: 1000, requireConsensus: true, failoverWhenQuorumExists: true, state, quarantined: new Set() }),
    views: v,
    maxViewAgeMs: 1000,
    silentPeerSafeAfterMs: 3000,
    engineBusy: false,
    pending: new Set(),
    failoverAllowed: [true, true, true],
    ...over,
  };
}

describe('coordinator decide', () => {
  it('a follower does nothing', () => {
    const d = decide(input({ raft: { ...raft, role: 'follower', leader: 'b' } }));
    assert.equal(d.kind, 'nothing');
    assert.match(d.reason, /not the leader \(follower in term 2, leader b\)/);
  });

  it('a leader without a lease does nothing', () => {
    const d = decide(input({ raft: { ...raft, hasLease: false } }));
    assert.equal(d.kind, 'nothing');
    assert.match(d.reason, /without a lease/);
  });

  it('claims coordination for a new term first', () => {
    const d = decide(input({ raft: { ...raft, term: 3 } }));
    assert.equal(d.kind, 'claim');
    assert.match(d.reason, /state names a \(term 2\)/);
  });

  it('all quiet: nothing, and says so', () => {
    const d = decide(input());
    assert.equal(d.kind, 'nothing');
    assert.match(d.reason, /coordinator of term 2: no backend is down by consensus; no failover open/);
  });

  it('requests the failover of a backend a majority sees down', () => {
    const d = decide(input({ views: views(view('a', [1]), view('b', [1]), view('c', [])) }));
    assert.equal(d.kind, 'request-down');
    assert.deepEqual(d.kind === 'request-down' && d.ids, [1]);
    assert.match(d.reason, /backend 1: 2 of 3 peers see it down/);
  });

  it('does not request again what is pending, open, or disallowed', () => {
    const v = views(view('a', [1, 2]), view('b', [1, 2]), view('c', []));
    const d = decide(input({ views: v, pending: new Set([1]), failoverAllowed: [true, true, false] }));
    assert.equal(d.kind, 'nothing');
    assert.match(d.reason, /1 already requested; 2 has failover: disallow/);
    const open = applyAll(upState(), 2, { type: 'decision', peer: 'a', at: 1, decision: { type: 'failoverStarted', seq: 1, kind: 'node_down', ids: [1], term: 2, reason: 'x' } });
    const e = decide(input({ views: views(view('a', [1]), view('b', [1]), view('c', [])), state: open, engineBusy: true }));
    assert.equal(e.kind, 'nothing');
    assert.match(e.reason, /1 in an open failover/);
  });

  it('waits before failing the primary over while a silent peer may still route writes to it', () => {
    const v = views(view('a', [0]), view('b', [0]), view('c', [], 2000));
    const d = decide(input({ views: v }));
    assert.equal(d.kind, 'nothing');
    assert.match(d.reason, /primary 0 is down by consensus, but c went silent less than 3000 ms ago/);
    assert.equal(decide(input({ views: views(view('a', [0]), view('b', [0]), view('c', [], 3500)) })).kind, 'request-down', 'long silent: it refuses writes by now');
    assert.equal(decide(input({ views: views(view('a', [1]), view('b', [1]), view('c', [], 2000)) })).kind, 'request-down', 'a standby need not wait');
  });

  it('resumes an open record left by a previous coordinator before anything new', () => {
    let s = applyAll(upState(), 1, { type: 'decision', peer: 'b', at: 1, decision: { type: 'failoverStarted', seq: 4, kind: 'node_down', ids: [2], term: 1, reason: 'x' } });
    s = applyAll(s, 2, { type: 'coordinator', peer: 'a', at: 2 });
    const d = decide(input({ state: s, views: views(view('a', [1]), view('b', [1]), view('c', [])) }));
    assert.equal(d.kind, 'resume');
    assert.match(d.reason, /left open by b in term 1: resume it in term 2/);
    assert.equal(decide(input({ state: s, engineBusy: true })).kind, 'nothing', 'not while the engine is busy');
  });

  it('transfers to a higher-priority peer only when it is healthy, up to date and nothing runs', () => {
    const prio = (p: number, age = 0, extra = {}) => view('b', [], age, { priority: p, ...extra });
    const t = decide(input({ views: views(view('a', []), prio(5), view('c', [], 0, { priority: 9 })) }));
    assert.deepEqual([t.kind, t.kind === 'transfer' && t.to], ['transfer', 'b'], 'c has priority 9 but lacks entries');
    assert.match(t.reason, /b has priority 5 > 0, is healthy and up to date/);
    for (const [why, v] of [
      ['stale view', prio(5, 5000)],
      ['proxy down', prio(5, 0, { proxyUp: false })],
      ['shutting down', prio(5, 0, { state: 'SHUTDOWN' })],
      ['lower priority', prio(0)],
    ] as const) {
      assert.equal(decide(input({ views: views(view('a', []), v, view('c', [])) })).kind, 'nothing', why);
    }
    assert.equal(decide(input({ views: views(view('a', []), prio(5), view('c', [])), engineBusy: true })).kind, 'nothing', 'engine busy');
  });

  it('a leader whose transfer failed hands over again to any up-to-date peer', () => {
    const d = decide(input({ raft: { ...raft, hasLease: false, leaseForfeited: true } }));
    assert.deepEqual([d.kind, d.kind === 'transfer' && d.to], ['transfer', 'b']);
    assert.match(d.reason, /gave the lease up for the term/);
    const none = decide(input({ raft: { ...raft, hasLease: false, leaseForfeited: true, progress: { a: raft.progress!.a } } }));
    assert.equal(none.kind, 'nothing');
    assert.match(none.reason, /no healthy up-to-date peer/);
  });

  it('runs a failover step only while the lease covers it', () => {
    const obs = { role: 'leader' as const, hasLease: true, leaseUntilTick: 108, tick: 100 };
    assert.equal(leaseCovers(obs, 8).ok, true);
    assert.match(leaseCovers(obs, 9).reason, /8 ticks left, the step needs 9/);
    assert.equal(leaseCovers({ ...obs, hasLease: false, leaseUntilTick: null }, 1).ok, false);
  });
});
