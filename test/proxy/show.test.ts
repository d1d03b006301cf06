import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BackendRegistry } from '../../src/backends/registry.js';
import { parseConfig } from '../../src/config/index.js';
import { formatStatusTime, poolNodesResult, poolVersionResult } from '../../src/proxy/show.js';

function registry(weights: number[]): BackendRegistry {
  const cfg = parseConfig({ auth: { method: 'trust' }, backends: weights.map((weight, i) => ({ host: `db${i}.example`, port: 5432 + i, weight })) }, 'test.yaml');
  return new BackendRegistry(cfg);
}

test('SHOW POOL_NODES has pgpool columns in order and formats each like pgpool', () => {
  const reg = registry([1, 1, 2]);
  const t = new Date(2026, 0, 2, 3, 4, 5); // local time, as pgpool prints it
  reg.update(0, { status: 'up', role: 'primary', pgStatus: 'up', pgRole: 'primary', lastStatusChange: t }, 'test');
  reg.update(1, { status: 'up', role: 'standby', pgStatus: 'up', pgRole: 'standby', lagBytes: 1234, replicationState: 'streaming', syncState: 'async' }, 'test');
  reg.update(2, { status: 'quarantine', role: 'standby', pgStatus: 'down', pgRole: 'unknown', lagBytes: null }, 'test');
  // update() stamps lastStatusChange when status/role change: pin them for the assertion.
  reg.update(0, { lastStatusChange: t }, 'test');
  reg.update(1, { lastStatusChange: t }, 'test');
  reg.update(2, { lastStatusChange: t }, 'test');
  const counts = new Map([[0, 5], [1, 17], [2, 0]]);
  const r = poolNodesResult(reg, { selectCount: (id) => counts.get(id)!, loadBalanceNode: 1 });
  assert.deepEqual(r.columns, [
    'node_id', 'hostname', 'port', 'status', 'pg_status', 'lb_weight', 'role', 'pg_role', 'select_cnt',
    'load_balance_node', 'replication_delay', 'replication_state', 'replication_sync_state', 'last_status_change',
  ]);
  assert.deepEqual(r.rows, [
    ['0', 'db0.example', '5432', 'up', 'up', '0.250000', 'primary', 'primary', '5', 'false', '0', '', '', '2026-01-02 03:04:05'],
    ['1', 'db1.example', '5433', 'up', 'up', '0.250000', 'standby', 'standby', '17', 'true', '1234', 'streaming', 'async', '2026-01-02 03:04:05'],
    ['2', 'db2.example', '5434', 'quarantine', 'down', '0.500000', 'standby', 'unknown', '0', 'false', null, '', '', '2026-01-02 03:04:05'],
  ]);
});

test('lb_weight is normalised over all nodes; zero weights print 0.000000; no load balance node: all false', () => {
  const r = poolNodesResult(registry([0, 3]), { selectCount: () => 0 });
  assert.deepEqual(r.rows.map((row) => row[5]), ['0.000000', '1.000000']);
  assert.deepEqual(r.rows.map((row) => row[9]), ['false', 'false']);
  assert.deepEqual(poolNodesResult(registry([0, 0]), { selectCount: () => 0 }).rows.map((row) => row[5]), ['0.000000', '0.000000']);
  assert.deepEqual(poolNodesResult(registry([1, 1, 1]), { selectCount: () => 0 }).rows.map((row) => row[5]), ['0.333333', '0.333333', '0.333333']);
});

test('a fresh registry shows waiting nodes with unknown roles', () => {
  const r = poolNodesResult(registry([1]), { selectCount: () => 0 });
  assert.equal(r.rows[0]![3], 'waiting');
  assert.equal(r.rows[0]![6], 'unknown');
  assert.match(r.rows[0]![13]!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
});

test('status times are zero-padded local time', () => {
  assert.equal(formatStatusTime(new Date(2025, 11, 31, 23, 59, 9)), '2025-12-31 23:59:09');
});

test('SHOW POOL_VERSION reports the package version', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.deepEqual(poolVersionResult(), { columns: ['pool_version'], rows: [[`${pkg.version} (pgwatchdog)`]] });
});
