// Snapshots, pre-vote, check-quorum, leader lease and leadership transfer.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { UNIT, type SimMessage } from '../../src/raft/sim/cluster.js';
import { awaitConverged, awaitLeader, cluster, others, proposeCommitted } from './helpers.js';

describe('raft snapshots', () => {
  it('installs a snapshot on a lagging follower', () => {
    const c = cluster(3, { compactEvery: 5 });
    const l = awaitLeader(c);
    const f = others(c, l.id)[0];
    c.net.partition([[f]]);
    for (let i = 0; i < 30; i++) proposeCommitted(c);
    assert.ok(l.log.snapIndex > c.raft(f)!.log.lastIndex(), 'leader did not compact past the follower');
    let snaps = 0;
    c.tap = (m: SimMessage) => {
      if (m.type === 'snap' && m.to === f) snaps++;
    };
    c.net.heal();
    awaitConverged(c);
    assert.ok(snaps >= 1, 'no snapshot was sent');
    assert.deepEqual(c.stateOf(f), c.stateOf(l.id));
  });

  it('installs a snapshot on a restarted follower, and the follower keeps it across another restart', () => {
    const c = cluster(5, { compactEvery: 4 });
    const l = awaitLeader(c);
    const f = others(c, l.id)[1];
    c.crash(f);
    for (let i = 0; i < 25; i++) proposeCommitted(c);
    c.restart(f);
    awaitConverged(c);
    const stored = c.storageOf(f).snapshot;
    assert.ok(stored && stored.meta.index > 0, 'follower stored no snapshot');
    c.crash(f);
    c.restart(f);
    assert.ok(c.raft(f)!.log.snapIndex >= stored.meta.index);
    assert.deepEqual(c.stateOf(f).index >= stored.meta.index, true);
    awaitConverged(c);
    assert.deepEqual(c.stateOf(f), c.stateOf(c.leader()!.id));
  });
});

describe('raft pre-vote and check-quorum', () => {
  for (const preVote of [true, false]) {
    it(`a rejoining partitioned node ${preVote ? 'does not disrupt' : 'disrupts (pre-vote off)'} the leader`, () => {
      const c = cluster(3, { preVote });
      const l = awaitLeader(c);
      const term = l.term;
      const f = others(c, l.id)[0];
      c.net.partition([[f]]);
      c.runTicks(80);
      c.net.heal();
      c.runTicks(40);
      if (preVote) {
        assert.equal(c.raft(f)!.term, term, 'isolated node raised its term');
        assert.equal(c.leader()!.id, l.id);
        assert.equal(l.term, term, 'leader was disrupted');
      } else {
        assert.ok(c.leader()!.term > term, 'without pre-vote the rejoining node should have forced a new term');
      }
    });
  }

  for (const checkQuorum of [true, false]) {
    it(`an isolated leader ${checkQuorum ? 'steps down' : 'stays leader (check-quorum off)'}`, () => {
      const c = cluster(3, { checkQuorum });
      const l = awaitLeader(c);
      c.net.partition([[l.id]]);
      c.runTicks(25);
      if (checkQuorum) assert.equal(l.role, 'follower');
      else assert.equal(l.role, 'leader');
    });
  }

  it('followers that hear from a leader ignore a candidate', () => {
    const c = cluster(3);
    const l = awaitLeader(c);
    const term = l.term;
    const f = others(c, l.id)[0];
    c.campaign(f); // forced election attempt while the leader is healthy
    c.runTicks(5);
    assert.equal(c.leader()!.id, l.id);
    assert.equal(l.term, term);
  });
});

describe('raft leader lease', () => {
  it('a leader holds a lease only after committing in its term, and renews it', () => {
    const c = cluster(3);
    const l = awaitLeader(c);
    c.runTicks(2);
    assert.ok(l.hasLease());
    const until = l.leaseValidUntilTick()!;
    assert.ok(until > l.tickNow());
    c.runTicks(5);
    assert.ok(l.leaseValidUntilTick()! > until, 'lease not renewed by heartbeats');
    for (const id of others(c, l.id)) assert.equal(c.raft(id)!.hasLease(), false);
  });

  it("an isolated leader's lease ends before any other node can be elected", () => {
    const c = cluster(3, { skew: 0.05 });
    const l = awaitLeader(c);
    c.runTicks(3);
    c.net.partition([[l.id]]);
    let leaseEnd = -1;
    let newLeader = -1;
    c.runUntilTrue(() => {
      if (leaseEnd < 0 && !l.hasLease()) leaseEnd = c.now;
      if (newLeader < 0 && c.leaders().some((r) => r.id !== l.id)) newLeader = c.now;
      return newLeader >= 0;
    }, 60);
    assert.ok(leaseEnd >= 0 && newLeader >= 0);
    assert.ok(leaseEnd < newLeader, `lease ended at ${leaseEnd / UNIT}, new leader at ${newLeader / UNIT}`);
    // (the checker also asserts "at most one lease holder" after every single step)
  });
});

describe('raft leadership transfer', () => {
  it('hands leadership to an up-to-date follower quickly', () => {
    const c = cluster(3);
    const l = awaitLeader(c);
    proposeCommitted(c);
    const to = others(c, l.id)[1];
    assert.ok(c.transferLeadership(l.id, to));
    assert.equal(l.hasLease(), false, 'a transferring leader must give up its lease');
    assert.equal(c.propose(l.id), null, 'a transferring leader must refuse proposals');
    assert.ok(c.runUntilTrue(() => c.raft(to)!.role === 'leader', 3), 'transfer took longer than 3 ticks');
    awaitConverged(c);
    assert.equal(c.leader()!.id, to);
  });

  it('catches a lagging transferee up first', () => {
    const c = cluster(3);
    const l = awaitLeader(c);
    const to = others(c, l.id)[0];
    c.net.partition([[to]]);
    for (let i = 0; i < 5; i++) proposeCommitted(c);
    c.net.heal();
    assert.ok(c.transferLeadership(l.id, to));
    assert.ok(c.runUntilTrue(() => c.raft(to)!.role === 'leader', 5));
    awaitConverged(c);
    assert.equal(c.leader()!.id, to);
  });
});
