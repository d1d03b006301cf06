// VIP eligibility and isolation: every rule, every reason.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { claimAtTermStart, isolation, vipDecision, type IsolationInput, type VipInput } from '../../src/cluster/vip.js';
import { PEERS, view, views } from './fixtures.js';

const leader: VipInput['raft'] = { role: 'leader', term: 4, leader: 'a', termCommitted: true, hasLease: true, leaseUntilTick: 108, tick: 100, transferee: null };

describe('vip decision', () => {
  const cases: { name: string; raft?: Partial<VipInput['raft']>; holding: boolean; claim?: VipInput['claim']; trusted?: VipInput['trusted']; shuttingDown?: boolean; action: string; reason: RegExp }[] = [
    { name: 'leader with a lease claims the VIP first', holding: false, claim: null, action: 'claim', reason: /record the claim before taking the VIP: leader of term 4 with a lease until tick 108; the state names nobody/ },
    { name: 'a claim of an earlier term is not enough', holding: false, claim: { peer: 'a', term: 3 }, action: 'claim', reason: /the state names a \(term 3\)/ },
    { name: 'another peer on record: claim', holding: false, claim: { peer: 'b', term: 3 }, action: 'claim', reason: /the state names b \(term 3\)/ },
    { name: 'leader with a lease escalates once its claim has committed', holding: false, action: 'escalate', reason: /take the VIP: leader of term 4 with a lease until tick 108; its claim of term 4 has committed/ },
    { name: 'and then holds', holding: true, action: 'hold', reason: /keep the VIP/ },
    { name: 'no entry of the term committed yet: claimed, waits', raft: { termCommitted: false, hasLease: false }, holding: false, action: 'nothing', reason: /no entry of the term has committed/ },
    { name: 'the previous lease may still run: claimed, waits', raft: { hasLease: false, leaseUntilTick: null }, holding: false, action: 'nothing', reason: /without a lease: the previous leader's may not have expired/ },
    { name: 'a new leader claims before its first entry commits', raft: { termCommitted: false, hasLease: false }, holding: false, claim: { peer: 'b', term: 3 }, action: 'claim', reason: /record the claim now, so it commits with the term's first entries \(escalation waits: leader of term 4, but no entry of the term has committed yet\); the state names b \(term 3\)/ },
    { name: 'and before the previous lease has surely run out', raft: { hasLease: false, leaseUntilTick: null }, holding: false, claim: null, action: 'claim', reason: /escalation waits: leader of term 4 without a lease/ },
    { name: 'no early claim while handing over', raft: { termCommitted: false, hasLease: false, transferee: 'b' }, holding: false, claim: null, action: 'nothing', reason: /handing leadership to b/ },
    { name: 'no early claim without a trusted server', raft: { termCommitted: false, hasLease: false }, holding: false, claim: null, trusted: { configured: 1, answering: 0 }, action: 'nothing', reason: /no entry of the term has committed/ },
    { name: 'losing the lease de-escalates', raft: { hasLease: false, leaseUntilTick: null }, holding: true, action: 'de-escalate', reason: /drop the VIP: leader of term 4 without a lease/ },
    { name: 'stepping down de-escalates', raft: { role: 'follower', leader: 'b', hasLease: false }, holding: true, action: 'de-escalate', reason: /not the leader \(follower in term 4, leader b\)/ },
    { name: 'a follower does nothing', raft: { role: 'follower', leader: 'b', hasLease: false }, holding: false, action: 'nothing', reason: /not holding the VIP: not the leader/ },
    { name: 'handing leadership over de-escalates', raft: { transferee: 'b' }, holding: true, action: 'de-escalate', reason: /handing leadership to b/ },
    { name: 'no trusted server answers', holding: true, trusted: { configured: 2, answering: 0 }, action: 'de-escalate', reason: /none of the 2 trusted servers answers/ },
    { name: 'one trusted server is enough', holding: false, trusted: { configured: 2, answering: 1 }, action: 'escalate', reason: /take the VIP/ },
    { name: 'a follower claims nothing', raft: { role: 'follower', leader: 'b', hasLease: false, leaseUntilTick: null }, holding: false, claim: null, action: 'nothing', reason: /not holding the VIP/ },
    { name: 'shutdown de-escalates', holding: true, shuttingDown: true, action: 'de-escalate', reason: /shutting down/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = vipDecision({ self: 'a', claim: c.claim === undefined ? { peer: 'a', term: 4 } : c.claim, raft: { ...leader, ...c.raft }, holding: c.holding, trusted: c.trusted ?? { configured: 0, answering: 0 }, shuttingDown: c.shuttingDown ?? false });
      assert.equal(d.action, c.action, d.reason);
      assert.match(d.reason, c.reason);
    });
  }
});

describe("the claim in a new leader's first entry", () => {
  it('is made unless shutting down or no trusted server answers', () => {
    assert.equal(claimAtTermStart({ trusted: { configured: 0, answering: 0 }, shuttingDown: false }).eligible, true);
    assert.equal(claimAtTermStart({ trusted: { configured: 2, answering: 1 }, shuttingDown: false }).eligible, true);
    assert.match(claimAtTermStart({ trusted: { configured: 2, answering: 0 }, shuttingDown: false }).reason, /none of the 2 trusted servers answers/);
    assert.match(claimAtTermStart({ trusted: { configured: 0, answering: 0 }, shuttingDown: true }).reason, /shutting down/);
  });
});

describe('isolation', () => {
  const base: IsolationInput = {
    self: 'a',
    peers: PEERS,
    views: views(view('a', []), view('b', [], 100), view('c', [], 100)),
    maxViewAgeMs: 1000,
    raft: { role: 'follower', leader: 'b', commit: 10, applied: 10 },
    sinceContactMs: 100,
    isolateAfterMs: 800,
    refusing: false,
    mode: 'refuse',
    now: 1_000_000,
  };
  const cases: { name: string; over: Partial<IsolationInput>; isolated: boolean; refuse: boolean; reason: RegExp }[] = [
    { name: 'joined', over: {}, isolated: false, refuse: false, reason: /joined to a majority/ },
    { name: 'a lone peer', over: { peers: ['a'] }, isolated: false, refuse: false, reason: /lone peer/ },
    { name: 'no word from the leader for longer than the lease', over: { sinceContactMs: 900 }, isolated: true, refuse: true, reason: /NETWORK ISOLATION: no word from a leader for 900 ms.*connect through the VIP/ },
    { name: 'a leader without a lease for too long', over: { raft: { role: 'leader', leader: 'a', commit: 10, applied: 10 }, sinceContactMs: 900 }, isolated: true, refuse: true, reason: /no lease for 900 ms/ },
    { name: 'within the lease, still routing', over: { sinceContactMs: 700 }, isolated: false, refuse: false, reason: /joined/ },
    { name: 'too few fresh views', over: { views: views(view('a', []), view('b', [], 5000), view('c', [], 5000)) }, isolated: true, refuse: true, reason: /fresh views from only 1 of 3 peers/ },
    { name: 'never joined since start', over: { sinceContactMs: null }, isolated: true, refuse: true, reason: /not joined to a majority since start/ },
    { name: 'never joined since start, but took over from a process joined within the lease', over: { sinceContactMs: null, inheritedContactMs: 500, views: views(view('a', [])) }, isolated: false, refuse: false, reason: /joining after an online restart: the previous process was joined to a majority 500 ms ago/ },
    { name: 'took over from a process whose lease ran out: writes wait for the join', over: { sinceContactMs: null, inheritedContactMs: 900 }, isolated: false, refuse: false, reason: /lease ran out 100 ms ago; writes wait until this one has joined \(at most 9900 ms more\)/ },
    { name: 'took over, and the join took longer than the hold', over: { sinceContactMs: null, inheritedContactMs: 800 + 10_000 }, isolated: true, refuse: true, reason: /not joined to a majority since start/ },
    { name: 'isolated_writes: allow keeps writing', over: { sinceContactMs: 900, mode: 'allow' }, isolated: true, refuse: false, reason: /isolated_writes is allow/ },
    { name: 'rejoined but behind the log', over: { refusing: true, raft: { role: 'follower', leader: 'b', commit: 12, applied: 10 } }, isolated: false, refuse: true, reason: /applying the log \(10 of 12\)/ },
    { name: 'rejoined, no leader yet', over: { refusing: true, raft: { role: 'follower', leader: null, commit: 10, applied: 10 } }, isolated: false, refuse: true, reason: /no leader known yet/ },
    { name: 'rejoined and caught up', over: { refusing: true }, isolated: false, refuse: false, reason: /writes routed again/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const v = isolation({ ...base, ...c.over });
      assert.deepEqual([v.isolated, v.refuseWrites], [c.isolated, c.refuse], v.reason);
      assert.match(v.reason, c.reason);
    });
  }
});
