// The tally: consensus of fresh views, quorum, local quarantine and its lifting.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { tally, type TallyInput } from '../../src/cluster/tally.js';
import { applyAll, PEERS, upState, view, views } from './fixtures.js';

function run(over: Partial<TallyInput>): ReturnType<typeof tally> {
  return tally({
    self: 'a',
    peers: PEERS,
    views: views(view('a', []), view('b', []), view('c', [])),
    maxViewAgeMs: 1000,
    requireConsensus: true,
    failoverWhenQuorumExists: true,
    state: upState(),
    quarantined: new Set(),
    ...over,
  });
}

describe('tally', () => {
  const cases: { name: string; over: Partial<TallyInput>; action: string; reason: RegExp }[] = [
    { name: 'all up', over: {}, action: 'none', reason: /0 of 3 peers see it down.*2 needed/ },
    { name: 'a majority sees it down', over: { views: views(view('a', [0]), view('b', [0]), view('c', [])) }, action: 'declare-down', reason: /2 of 3 peers see it down \(a, b\).*consensus: 2 needed/ },
    { name: 'a majority without this peer', over: { views: views(view('a', []), view('b', [0]), view('c', [0])) }, action: 'declare-down', reason: /2 of 3/ },
    { name: 'only this peer sees it down', over: { views: views(view('a', [0]), view('b', []), view('c', [])) }, action: 'quarantine', reason: /1 of 3 peers see it down \(a\).*quarantined locally, no command runs/ },
    { name: 'already quarantined, still down', over: { views: views(view('a', [0]), view('b', []), view('c', [])), quarantined: new Set([0]) }, action: 'none', reason: /still quarantined/ },
    { name: 'quarantined, checks pass again', over: { views: views(view('a', []), view('b', []), view('c', [])), quarantined: new Set([0]) }, action: 'lift-quarantine', reason: /checks pass again/ },
    { name: 'quarantined, checks cannot tell', over: { views: views(view('a', [], 0, {}, [0]), view('b', []), view('c', [])), quarantined: new Set([0]) }, action: 'none', reason: /cannot tell yet/ },
    { name: 'a stale down view does not count', over: { views: views(view('a', [0]), view('b', [0], 5000), view('c', [])) }, action: 'quarantine', reason: /1 of 3.*1 without a fresh view/ },
    {
      name: 'no quorum: nothing fails over',
      over: { requireConsensus: false, views: views(view('a', [0]), view('b', [0], 5000), view('c', [0], 5000)) },
      action: 'quarantine',
      reason: /no quorum: only 1 of 3 peers have fresh views/,
    },
    {
      name: 'no quorum, failover_when_quorum_exists off',
      over: { requireConsensus: false, failoverWhenQuorumExists: false, views: views(view('a', [0]), view('b', [], 5000), view('c', [], 5000)) },
      action: 'declare-down',
      reason: /require_consensus is off: one is enough/,
    },
    { name: 'require_consensus off: one view is enough', over: { requireConsensus: false, views: views(view('a', []), view('b', [0]), view('c', [])) }, action: 'declare-down', reason: /1 of 3.*one is enough/ },
    { name: 'a peer with no view at all is lost, not a vote', over: { views: views(view('a', [0]), view('b', [])) }, action: 'quarantine', reason: /1 without a fresh view/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const t = run(c.over)[0];
      assert.equal(t.action, c.action, t.reason);
      assert.match(t.reason, c.reason);
    });
  }

  it('a backend already down in the state is left alone, and a quarantine on it is lifted', () => {
    const s = applyAll(upState(), 2, { type: 'decision', peer: 'a', at: 1, decision: { type: 'backend', id: 1, status: 'down', reason: 'x' } });
    const v = views(view('a', [1]), view('b', [1]), view('c', [1]));
    assert.equal(run({ state: s, views: v })[1].action, 'none');
    assert.match(run({ state: s, views: v })[1].reason, /already down/);
    assert.equal(run({ state: s, views: v, quarantined: new Set([1]) })[1].action, 'lift-quarantine');
  });

  it('a lone peer (no peers configured) decides on its own view', () => {
    const t = run({ peers: [], views: views(view('a', [2])) });
    assert.equal(t[2].action, 'declare-down');
    assert.equal(t[2].needed, 1);
  });

  it('five peers need three', () => {
    const five = ['a', 'b', 'c', 'd', 'e'];
    const two = run({ peers: five, views: views(view('a', [0]), view('b', [0]), view('c', []), view('d', []), view('e', [])) })[0];
    assert.equal(two.action, 'quarantine');
    const three = run({ peers: five, views: views(view('a', [0]), view('b', [0]), view('c', [0]), view('d', []), view('e', [])) })[0];
    assert.equal(three.action, 'declare-down');
  });
});
