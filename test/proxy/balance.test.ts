import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseLoadBalanceNode } from '../../src/proxy/balance.js';
import { Prng } from '../../src/raft/sim/prng.js';

/** A seeded generator, so the distribution test is the same on every run. */
function prng(seed: number): () => number {
  const p = new Prng(seed);
  return () => p.next();
}

function draw(cands: { id: number; weight: number }[], n: number, seed: number): Map<number | undefined, number> {
  const rnd = prng(seed);
  const counts = new Map<number | undefined, number>();
  for (let i = 0; i < n; i++) {
    const id = chooseLoadBalanceNode(cands, rnd);
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

test('the distribution follows the weights, primary included', () => {
  const n = 100_000;
  const cands = [
    { id: 0, weight: 1 }, // the primary, a candidate with its own weight
    { id: 1, weight: 2 },
    { id: 2, weight: 1 },
  ];
  const counts = draw(cands, n, 42);
  for (const c of cands) {
    const expected = (n * c.weight) / 4;
    const got = counts.get(c.id) ?? 0;
    // 4 standard deviations of a binomial: fails on a wrong rule, never on noise.
    const sd = Math.sqrt(n * (c.weight / 4) * (1 - c.weight / 4));
    assert.ok(Math.abs(got - expected) < 4 * sd, `node ${c.id}: ${got} picks, expected about ${expected}`);
  }
});

test('fractional weights work like pgpool backend_weight', () => {
  const counts = draw([{ id: 3, weight: 0.25 }, { id: 7, weight: 0.75 }], 40_000, 7);
  const share = (counts.get(7) ?? 0) / 40_000;
  assert.ok(Math.abs(share - 0.75) < 0.02, `share of node 7: ${share}`);
});

test('weight 0 (or invalid) is never chosen', () => {
  const counts = draw([{ id: 0, weight: 0 }, { id: 1, weight: 1 }, { id: 2, weight: -1 }, { id: 3, weight: Number.NaN }], 10_000, 1);
  assert.deepEqual([...counts.keys()], [1]);
});

test('no candidate, or only zero weights: undefined', () => {
  assert.equal(chooseLoadBalanceNode([], Math.random), undefined);
  assert.equal(chooseLoadBalanceNode([{ id: 0, weight: 0 }], Math.random), undefined);
});

test('the draw maps [0, 1) onto the candidates in order, edges included', () => {
  const cands = [{ id: 10, weight: 1 }, { id: 0, weight: 0 }, { id: 20, weight: 3 }];
  assert.equal(chooseLoadBalanceNode(cands, () => 0), 10);
  assert.equal(chooseLoadBalanceNode(cands, () => 0.2499), 10);
  assert.equal(chooseLoadBalanceNode(cands, () => 0.25), 20);
  assert.equal(chooseLoadBalanceNode(cands, () => 0.999999), 20);
  assert.equal(chooseLoadBalanceNode(cands, () => 1), 20, 'a random() that returns 1 still picks a node');
});

test('one candidate is always chosen', () => {
  assert.deepEqual([...draw([{ id: 5, weight: 0.1 }], 1000, 3)], [[5, 1000]]);
});
