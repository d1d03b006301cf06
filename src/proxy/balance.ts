// Load-balance node choice, as pgpool-II makes it when a session starts: a weighted random
// pick among the nodes that may take reads. The primary is a candidate like any standby,
// with its own weight (weight 0 keeps reads off it); the caller decides who is a candidate
// (up, within max_lag_bytes, …) and this only draws.

/** Picks a candidate id with probability weight / total weight; undefined when no candidate
 * has a positive weight. `random` returns a number in [0, 1) (Math.random or a seeded PRNG). */
export function chooseLoadBalanceNode(candidates: readonly { id: number; weight: number }[], random: () => number): number | undefined {
  let total = 0;
  for (const c of candidates) if (c.weight > 0 && Number.isFinite(c.weight)) total += c.weight;
  if (total <= 0) return undefined;
  let r = random() * total;
  let last: number | undefined;
  for (const c of candidates) {
    if (!(c.weight > 0 && Number.isFinite(c.weight))) continue;
    if (r < c.weight) return c.id;
    r -= c.weight;
    last = c.id;
  }
  return last; // random() returned 1 or rounding left r at the top edge
}
