// The pure views and their terminal renderings, fed the facts a three-peer watchdog will
// report through WatchdogView (the real watchdog is wired in later): Patroni-style checks on
// every branch, pcp_watchdog_info's fields, and tables that fit 80 columns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BackendRegistry } from '../../src/backends/registry.js';
import { parseConfig } from '../../src/config/index.js';
import type { FailoverStatus } from '../../src/failover/index.js';
import { check, parseLag, peersView, statusView, type AdminSnapshot } from '../../src/admin/views.js';
import type { WatchdogFacts } from '../../src/admin/watchdog-view.js';
import { backendsTable, nodesTable, statusScreen, table, watchdogScreen } from '../../src/cli/render.js';
import { watchdogNodesResult, WATCHDOG_NODES_COLUMNS } from '../../src/proxy/show.js';
import { watchdogNodes } from '../../src/admin/views.js';

const NOW = '2026-12-03T12:00:00.000Z';

function cluster(over: Partial<WatchdogFacts> = {}): WatchdogFacts {
  const peer = (name: string, i: number, extra: object) => ({
    name, host: `host-${name}.example.internal`, proxyPort: 9999, watchdogPort: 9000, adminUrl: `http://host-${name}:9898`, priority: 3 - i,
    state: 'standby' as const, self: false, coordinator: false, vipHolder: false, lastSeen: '2026-12-03T11:59:58.000Z', ...extra,
  });
  return {
    mode: 'cluster', self: 'p2', state: 'standby', coordinator: 'p1',
    vip: { address: '10.0.0.100', holder: 'p1' },
    quorum: { present: true, members: 3, alive: 2, required: 2 },
    raft: { term: 7, commitIndex: 1234, appliedIndex: 1234, leader: 'p1' },
    escalations: 0, deEscalations: 0,
    peers: [
      peer('p1', 0, { state: 'coordinator', coordinator: true, vipHolder: true }),
      peer('p2', 1, { self: true, lastSeen: null }),
      peer('p3-with-a-rather-long-peer-name', 2, { state: 'lost', lastSeen: '2026-12-03T11:50:00.000Z' }),
    ],
    ...over,
  };
}

function snapshot(w: WatchdogFacts, opts: { listening?: boolean; standbyLag?: number | null; primaryUp?: boolean } = {}): AdminSnapshot {
  const config = parseConfig({ auth: { method: 'trust' }, backends: [{ host: 'db-primary.example.internal', name: 'a-long-backend-name-0' }, { host: 'db-standby.example.internal' }] }, 'test');
  const registry = new BackendRegistry(config);
  registry.update(0, { status: opts.primaryUp === false ? 'down' : 'up', role: 'primary', lsn: 0x1_0000_3000n }, 't');
  registry.update(1, { status: 'up', role: 'standby', lagBytes: opts.standbyLag === undefined ? 4096 : opts.standbyLag, lagMs: 250, lsn: 0x1_0000_2000n, syncState: 'potential', replicationState: 'streaming' }, 't');
  const failover: FailoverStatus = { active: null, queue: [], history: [], noCandidate: null, primary: 0, synchronous: { mode: 'off', savedStandbyNames: null, last: null } };
  return {
    version: '0.1.0', startedAt: NOW, now: NOW, proxyListening: opts.listening ?? true,
    proxy: { clients: { active: 1, idle: 1, total: 2, native: 0 }, pools: [{ backendId: 0, total: 3, inUse: 2, idle: 1, waiting: 0 }], selectCounts: [1, 2], workers: 1 },
    backends: registry.list(), failover, watchdog: w,
  };
}

test('checks answer on every branch with a reason, as Patroni does for a proxy peer', () => {
  const s = snapshot(cluster());
  assert.equal(check('coordinator', s).status, 503, 'p2 is not the coordinator');
  assert.match(check('coordinator', s).body.reason, /the coordinator is p1/);
  assert.equal(check('coordinator', snapshot(cluster({ self: 'p1' }))).status, 200);
  assert.equal(check('coordinator', snapshot(cluster({ coordinator: null }))).body.reason, 'no coordinator is known now');
  assert.equal(check('primary', s).status, 200);
  assert.equal(check('primary', s).body.backend, 0);
  assert.match(check('primary', snapshot(cluster({ state: 'isolated' }))).body.reason, /isolated: it does not route writes/);
  assert.match(check('primary', snapshot(cluster(), { primaryUp: false })).body.reason, /no primary backend is up/);
  assert.equal(check('replica', s, 8192).status, 200);
  assert.equal(check('replica', s, 1024).status, 503);
  assert.match(check('replica', s, 1024).body.reason, /no standby within 1024 bytes of lag \(1: 4096 B\)/);
  assert.equal(check('replica', snapshot(cluster(), { standbyLag: null }), 1024).status, 503, 'unknown lag is not within a bound');
  assert.equal(check('replica', snapshot(cluster(), { standbyLag: null })).status, 200, 'without a bound any attached standby will do');
  assert.equal(check('health', snapshot(cluster(), { listening: false })).status, 503);
  assert.equal(check('readiness', snapshot(cluster({ state: 'joining' }))).status, 503);
  assert.equal(check('readiness', s).status, 200);
  assert.equal(check('liveness', snapshot(cluster({ state: 'isolated' }), { listening: false })).status, 200);
  assert.equal(parseLag('16MB'), 16 * 1024 * 1024);
  assert.equal(parseLag('100'), 100);
  assert.equal(parseLag('1.5MB'), null);
});

test("pcp_watchdog_info's fields: cluster section and one row per peer, the same in SQL and in the CLI", () => {
  const w = cluster();
  const p = peersView(snapshot(w));
  assert.deepEqual(p.info, {
    totalNodes: 3, remoteNodes: 2, aliveRemoteNodes: 1, nodesRequiredForQuorum: 2, quorumState: 'QUORUM EXIST', localNodeEscalation: false, leaderNodeName: 'p1', leaderHostName: 'host-p1.example.internal',
  });
  assert.deepEqual(p.nodes.map((n) => [n.node_name, n.status_name, n.is_coordinator, n.vip_holder, n.is_local]), [
    ['p1', 'LEADER', 'true', 'true', 'false'],
    ['p2', 'STANDBY', 'false', 'false', 'true'],
    ['p3-with-a-rather-long-peer-name', 'LOST', 'false', 'false', 'false'],
  ]);
  const sql = watchdogNodesResult(watchdogNodes(w));
  assert.deepEqual(sql.columns, [...WATCHDOG_NODES_COLUMNS]);
  assert.deepEqual(sql.rows[0], Object.values(p.nodes[0]!));
  const text = watchdogScreen({ colour: false }, p);
  assert.match(text, /^Quorum state\s+: QUORUM EXIST$/m);
  assert.match(text, /^Delegate IP\s+: 10\.0\.0\.100$/m);
  assert.match(text, /^Raft term \/ commit index\s+: 7 \/ 1234$/m);
  for (const line of text.split('\n')) assert.ok(line.length <= 80, line);
});

test('status and nodes fit 80 columns with long names (the flexible columns give way), colour only when asked', () => {
  const s = statusView(snapshot(cluster()));
  const plain = statusScreen({ colour: false }, s);
  for (const line of plain.split('\n')) assert.ok(line.length <= 80, `${line.length}: ${line}`);
  assert.match(plain, /coordinator p1 {2}VIP 10\.0\.0\.100 on p1 {2}quorum 2\/3 ok/);
  assert.match(plain, /term 7 {2}commit 1234/);
  assert.match(plain, /^p3-with-a-rather-long-peer-name +lost +- +- +1 +10m ago$/m, 'the lost peer shows when it was last seen');
  assert.match(plain, /^ 0 +a-long-b… +db-primar… +up +primary/m, 'long backend names and addresses are cut to fit');
  assert.ok(!plain.includes('\x1b'), 'no escape codes without colour');
  assert.ok(statusScreen({ colour: true }, s).includes('\x1b[32mcoordinator\x1b[0m'), 'green for the coordinator with colour');
  for (const t of [backendsTable({ colour: false }, s.backends), nodesTable({ colour: false }, s.backends)]) {
    for (const line of t.split('\n')) assert.ok(line.length <= 80, `${line.length}: ${line}`);
  }
  assert.match(backendsTable({ colour: false }, s.backends), /1\/3000 +- +- +2$/m, 'the primary: LSN, no lag, 2 sessions');
  assert.match(backendsTable({ colour: false }, s.backends), /4\.0 kB 0\.3s +potential/, 'the standby: lag in bytes and seconds, sync state');
  assert.equal(table({ colour: false }, [{ head: 'A', flex: true, min: 3 }, { head: 'B' }], [['x'.repeat(50), 'y'.repeat(40)]], 50), `A${' '.repeat(7)}  B\n${'x'.repeat(7)}…  ${'y'.repeat(40)}`);
});
