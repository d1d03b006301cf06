// Leader election scenarios.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { awaitLeader, cluster, others } from './helpers.js';
import { Prng } from '../../src/raft/sim/prng.js';

describe('raft election', () => {
  it('elects one leader initially and keeps it while nothing fails', () => {
    const c = cluster(3);
    const l = awaitLeader(c, 40);
    const term = l.term;
    c.runTicks(100);
    assert.equal(c.leaders().length, 1);
    assert.equal(c.leader()?.id, l.id);
    for (const id of c.ids) {
      assert.equal(c.raft(id)?.term, term, `${id} term changed without a failure`);
      assert.equal(c.raft(id)?.leader, l.id);
    }
  });

  it('re-elects after the leader is lost, and the old leader rejoins as follower', () => {
    const c = cluster(3);
    const l1 = awaitLeader(c);
    c.net.partition([[l1.id]]);
    c.runTicks(30);
    const l2 = c.leaders().find((r) => r.id !== l1.id);
    assert.ok(l2, 'no new leader among the majority');
    assert.ok(l2.term > l1.term);
    c.net.heal();
    c.runTicks(20);
    assert.equal(c.leaders().length, 1);
    assert.equal(c.raft(l1.id)?.role, 'follower');
    assert.equal(c.raft(l1.id)?.leader, l2.id);
  });

  it('elects no leader without a quorum', () => {
    const c = cluster(3);
    const l = awaitLeader(c);
    const [a, b] = others(c, l.id);
    c.net.partition([[l.id], [a], [b]]);
    c.runTicks(60);
    assert.equal(c.leaders().length, 0, 'a node leads without a majority');
    c.net.partition([[l.id, a], [b]]);
    const l2 = awaitLeader(c, 60);
    assert.notEqual(l2.id, b);
  });

  it('stays safe and live through many elections under random disconnects', () => {
    for (const n of [5, 7]) {
      const c = cluster(n, { seed: 7 + n });
      const rng = new Prng(99);
      awaitLeader(c);
      for (let iter = 0; iter < 15; iter++) {
        // disconnect a minority at random (checker asserts one leader per term at every step)
        const cut = c.ids.filter(() => rng.chance(0.3)).slice(0, Math.floor((n - 1) / 2));
        c.net.partition([cut]);
        c.runTicks(rng.range(5, 30));
        awaitLeader(c, 80);
        c.runTicks(30); // a leader cut off from the majority has stepped down by now (check-quorum)
        const ls = c.leaders();
        assert.equal(ls.length, 1, `iteration ${iter}: ${ls.length} leaders`);
        assert.ok(!cut.includes(ls[0].id), `iteration ${iter}: leader ${ls[0].id} is in the cut-off minority`);
        c.net.heal();
        c.runTicks(rng.range(1, 10));
      }
      assert.ok(c.checker.elections >= 2, `expected several elections, got ${c.checker.elections}`);
    }
  });

  it('uses a randomized election timeout in [T, 2T)', () => {
    // First campaign of a lone node: its timeout, since no message can reset it.
    const seen = new Set<number>();
    for (let seed = 1; seed <= 60; seed++) {
      const c = cluster(3, { seed, skew: 0 });
      c.net.partition([['n1'], ['n2'], ['n3']]);
      const start = c.raft('n1')?.tickNow() ?? 0;
      assert.ok(c.runUntilTrue(() => c.raft('n1')?.role !== 'follower', 40));
      const elapsed = (c.raft('n1')?.tickNow() ?? 0) - start;
      assert.ok(elapsed >= 10 && elapsed < 20, `timeout ${elapsed} outside [10, 20)`);
      seen.add(elapsed);
    }
    assert.ok(seen.size >= 5, 'timeouts are not randomized');
  });
});
