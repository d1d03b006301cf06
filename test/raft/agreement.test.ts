// Log replication and agreement scenarios.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { awaitConverged, awaitLeader, cluster, committedValues, others, proposeCommitted } from './helpers.js';
import type { SimMessage } from '../../src/raft/sim/cluster.js';
import { Prng } from '../../src/raft/sim/prng.js';

describe('raft agreement', () => {
  it('basic agreement: committed values reach every node in order', () => {
    const c = cluster(3);
    const vs = [proposeCommitted(c), proposeCommitted(c), proposeCommitted(c)];
    awaitConverged(c);
    for (const id of c.ids) assert.deepEqual(committedValues(c.raft(id)!), vs, id);
  });

  it('agrees with a follower down, and the follower catches up on restart', () => {
    const c = cluster(3);
    const l = awaitLeader(c);
    const f = others(c, l.id)[0];
    c.crash(f);
    const vs = [proposeCommitted(c), proposeCommitted(c), proposeCommitted(c)];
    assert.deepEqual(committedValues(l), vs);
    c.restart(f);
    awaitConverged(c);
    assert.deepEqual(committedValues(c.raft(f)!), vs);
  });

  it('does not commit without a majority', () => {
    const c = cluster(5);
    const l = awaitLeader(c);
    const before = l.log.committed;
    const [a, b, d] = others(c, l.id);
    c.net.partition([[a], [b], [d]]);
    assert.notEqual(c.propose(l.id), null);
    c.runTicks(5);
    assert.equal(l.log.committed, before, 'committed with 2 of 5');
    c.net.heal();
    awaitConverged(c);
  });

  it('handles concurrent proposals: each committed once, same order everywhere', () => {
    const c = cluster(5);
    const l = awaitLeader(c);
    const vs: number[] = [];
    for (let i = 0; i < 25; i++) {
      const v = c.propose(l.id);
      assert.notEqual(v, null);
      vs.push(v as number);
    }
    awaitConverged(c);
    for (const id of c.ids) assert.deepEqual(committedValues(c.raft(id)!), vs, id);
  });

  it("overwrites a partitioned old leader's uncommitted entries on rejoin", () => {
    const c = cluster(5);
    const committed = proposeCommitted(c);
    const l1 = c.leader()!;
    const f1 = others(c, l1.id)[0];
    c.net.partition([[l1.id, f1]]);
    for (let i = 0; i < 5; i++) c.propose(l1.id); // cannot commit: 2 of 5
    c.runTicks(2);
    const stale = l1.log.lastIndex();
    c.runTicks(30);
    const l2 = c.leaders().find((r) => r.id !== l1.id && r.id !== f1);
    assert.ok(l2, 'majority elected no leader');
    const fresh = [proposeCommitted(c), proposeCommitted(c)];
    c.net.heal();
    awaitConverged(c);
    for (const id of c.ids) assert.deepEqual(committedValues(c.raft(id)!), [committed, ...fresh], id);
    assert.ok(stale > 0);
  });

  it('backs up fast over long divergent logs (one round trip per term, not per entry)', () => {
    const c = cluster(5, { maxEntriesPerMsg: 64 });
    proposeCommitted(c);
    const l1 = c.leader()!;
    const f1 = others(c, l1.id)[0];
    // The old leader and one follower pile up 50 entries that never commit.
    c.net.partition([[l1.id, f1]]);
    for (let i = 0; i < 50; i++) c.propose(l1.id);
    c.runTicks(2);
    // The majority commits 51 entries of its own, across several terms.
    c.runTicks(30);
    const majority = c.ids.filter((id) => id !== l1.id && id !== f1);
    for (let round = 0; round < 3; round++) {
      const l = c.leader()!;
      assert.ok(majority.includes(l.id));
      for (let i = 0; i < 17; i++) c.propose(l.id);
      c.runTicks(3);
      const next = majority.find((id) => id !== l.id)!;
      assert.ok(c.transferLeadership(l.id, next));
      assert.ok(c.runUntilTrue(() => c.raft(next)!.role === 'leader', 30), 'transfer failed');
      c.runTicks(2);
    }
    assert.ok(c.leader()!.log.committed >= 52);
    let rejects = 0;
    c.tap = (m: SimMessage) => {
      if (m.type === 'appResp' && m.reject && (m.from === l1.id || m.from === f1)) rejects++;
    };
    c.net.heal();
    awaitConverged(c, 100);
    assert.ok(rejects <= 12, `${rejects} rejected appends for a 50-entry divergence (naive backup needs ~50 per node)`);
  });

  it('stays consistent under churn: random crashes, restarts, partitions and clients', () => {
    for (const seed of [3, 4, 5]) {
      const c = cluster(5, { seed });
      const rng = new Prng(seed);
      const acked: { v: number; id: string; index: number; term: number }[] = [];
      for (let step = 0; step < 60; step++) {
        const r = rng.next();
        const up = c.ids.filter((id) => c.isUp(id));
        const down = c.ids.filter((id) => !c.isUp(id));
        if (r < 0.15 && up.length > 0) c.crash(rng.pick(up), rng.pick(['now', 'beforePersist', 'afterPersist', 'afterSend'] as const));
        else if (r < 0.35 && down.length) c.restart(rng.pick(down));
        else if (r < 0.45) c.net.partition([c.ids.filter(() => rng.chance(0.4))]);
        else if (r < 0.55) c.net.heal();
        const l = c.leader();
        if (l) {
          const v = c.takeValue();
          const pos = l.propose(v);
          if (pos) acked.push({ v, id: l.id, ...pos });
        }
        c.runTicks(rng.range(1, 6));
      }
      c.net.heal();
      for (const id of c.ids) c.restart(id);
      c.cancelPendingCrashes();
      awaitConverged(c, 300);
      // Every proposal that ended up committed at its (index, term) is present exactly there.
      const r = c.leader()!;
      const values = committedValues(r);
      assert.equal(new Set(values).size, values.length, 'a value was committed twice');
      for (const a of acked) {
        if (a.index > r.log.snapIndex && r.log.term(a.index) === a.term) assert.equal(r.log.entry(a.index)?.data, a.v);
      }
    }
  });
});

describe('raft persistence', () => {
  for (const who of ['all', 'leader', 'followers'] as const) {
    it(`keeps committed state across crashes of ${who}`, () => {
      const c = cluster(3);
      const vs = [proposeCommitted(c), proposeCommitted(c)];
      awaitConverged(c);
      const l = c.leader()!;
      const victims = who === 'all' ? c.ids : who === 'leader' ? [l.id] : others(c, l.id);
      const terms = new Map(c.ids.map((id) => [id, c.raft(id)!.term]));
      for (const id of victims) c.crash(id);
      if (who !== 'followers') c.runTicks(25);
      for (const id of victims) {
        c.restart(id);
        const r = c.raft(id)!;
        assert.ok(r.term >= (terms.get(id) as number), `${id} term went back`);
        assert.ok(r.log.committed >= r.log.lastIndex() - 1, `${id} lost its commit index`);
      }
      vs.push(proposeCommitted(c, 60));
      awaitConverged(c);
      for (const id of c.ids) assert.deepEqual(committedValues(c.raft(id)!), vs, id);
      for (const id of c.ids) assert.equal(c.stateOf(id).index, c.raft(id)!.log.committed, `${id} state machine not rebuilt`);
    });
  }

  it('survives repeated crashes of everybody at random points of the persist/send cycle', () => {
    const c = cluster(3, { seed: 11 });
    const rng = new Prng(5);
    const vs: number[] = [];
    for (let round = 0; round < 20; round++) {
      const l = awaitLeader(c, 80);
      const v = c.propose(l.id);
      if (v !== null) vs.push(v);
      for (const id of c.ids) if (rng.chance(0.5)) c.crash(id, rng.pick(['now', 'beforePersist', 'afterPersist', 'afterSend'] as const));
      c.runTicks(rng.range(0, 3));
      c.cancelPendingCrashes();
      for (const id of c.ids) c.restart(id);
    }
    awaitConverged(c, 100);
    const got = committedValues(c.leader()!);
    // Values committed are a subsequence of values proposed, in order.
    let k = 0;
    for (const v of got) {
      while (k < vs.length && vs[k] !== v) k++;
      assert.ok(k < vs.length, `value ${v} committed out of order or never proposed`);
    }
    assert.ok(got.length > 0);
  });
});
