import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseCandidate, type CandidateInput } from '../../src/failover/candidate.js';
import { formatLsn, parseLsn } from '../../src/backends/lsn.js';

const sb = (id: number, lsn: bigint | null, extra: Partial<CandidateInput> = {}): CandidateInput => ({
  id,
  status: 'up',
  role: 'standby',
  pgStatus: 'up',
  failoverAllowed: true,
  priority: 0,
  lsn,
  ...extra,
});
const primary: CandidateInput = { id: 0, status: 'down', role: 'primary', pgStatus: 'down', failoverAllowed: true, priority: 0, lsn: null };
const MB = 1024 * 1024;

test('the standby with the most advanced WAL wins, not the lowest id', () => {
  const c = chooseCandidate([primary, sb(1, 1000n), sb(2, 5000n), sb(3, 3000n)], { exclude: [0], maxLagBytes: MB });
  assert.equal(c.id, 2);
  assert.deepEqual(c.rejected.map((r) => r.id), [0, 1, 3]);
  assert.match(c.rejected.find((r) => r.id === 1)!.reason, /less WAL/);
});

test('equal WAL: higher priority wins, then the lowest id', () => {
  assert.equal(chooseCandidate([primary, sb(1, 100n), sb(2, 100n, { priority: 5 }), sb(3, 100n)], { exclude: [0], maxLagBytes: MB }).id, 2);
  assert.equal(chooseCandidate([primary, sb(3, 100n), sb(1, 100n), sb(2, 100n)], { exclude: [0], maxLagBytes: MB }).id, 1);
  // priority never beats WAL: the higher-priority standby has less data
  assert.equal(chooseCandidate([primary, sb(1, 200n), sb(2, 100n, { priority: 9 })], { exclude: [0], maxLagBytes: MB }).id, 1);
});

test('failover: disallow, down, unhealthy, unknown WAL and non-standbys are never chosen', () => {
  const c = chooseCandidate(
    [primary, sb(1, 900n, { failoverAllowed: false }), sb(2, 800n, { status: 'down' }), sb(3, 700n, { pgStatus: 'down' }), sb(4, null), sb(5, 600n, { role: 'unknown' }), sb(6, 10n)],
    { exclude: [0], maxLagBytes: MB },
  );
  assert.equal(c.id, 6);
  const why = Object.fromEntries(c.rejected.map((r) => [r.id, r.reason]));
  assert.match(why[1]!, /disallow/);
  assert.match(why[2]!, /status is down/);
  assert.match(why[3]!, /health check is down/);
  assert.match(why[4]!, /WAL position unknown/);
  assert.match(why[5]!, /role is unknown/);
});

test('a standby lagging more than max_lag_bytes behind the most advanced WAL is not a candidate', () => {
  // The disallowed standby 1 holds WAL far ahead: lag is measured from it, so 2 is too far behind.
  const c = chooseCandidate([primary, sb(1, 10n * BigInt(MB), { failoverAllowed: false }), sb(2, 1n * BigInt(MB))], { exclude: [0], maxLagBytes: MB });
  assert.equal(c.id, null);
  assert.match(c.summary, /no standby qualifies/);
  assert.match(c.summary, /node 2 lags 9437184 bytes/);
  // and from the last known primary position
  const d = chooseCandidate([primary, sb(1, 100n)], { exclude: [0], maxLagBytes: 1000, lastPrimaryLsn: 5000n });
  assert.equal(d.id, null);
  assert.equal(chooseCandidate([primary, sb(1, 100n)], { exclude: [0], maxLagBytes: 5000, lastPrimaryLsn: 5000n }).id, 1);
});

test('no other backend at all: null with a reason', () => {
  const c = chooseCandidate([primary], { exclude: [0], maxLagBytes: MB });
  assert.equal(c.id, null);
  assert.match(c.summary, /there is no other backend/);
});

test('LSN text round trip', () => {
  assert.equal(parseLsn('16/B374D848'), (0x16n << 32n) | 0xb374d848n);
  assert.equal(formatLsn(parseLsn('16/B374D848')!), '16/B374D848');
  assert.equal(formatLsn(parseLsn('0/0')!), '0/0');
  assert.equal(parseLsn(null), null);
  assert.throws(() => parseLsn('nope'), /not an LSN/);
});
