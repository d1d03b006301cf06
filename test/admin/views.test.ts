// The pure views and their terminal renderings, fed the facts a three-peer watchdog will
// report through WatchdogView (the real watchdog is wired in later): Patroni-style checks on
// every branch, pcp_watchdog_info's fields, and tables that fit 80 columns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BackendRegistry } from '../../src/backends/registry.js';
import { parseConfig } from '../../src/config/index.js';
import type { FailoverResult, FailoverStatus } from '../../src/failover/index.js';
import type { Decision } from '../../src/failover/decisions.js';
import { check, failoversView, parseLag, peersView, statusView, type AdminSnapshot } from '../../src/admin/views.js';
import type { WatchdogFacts } from '../../src/admin/watchdog-view.js';
import { backendsTable, failoversScreen, nodesTable, statusScreen, table, watchdogScreen } from '../../src/cli/render.js';
import { applyAll, upState } from '../cluster/fixtures.js';
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
    backends: registry.list(), failover, watchdog: w, replicatedFailovers: undefined,
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

test('failovers: in a cluster the replicated records, the same whichever peer answers; alone, this peer\'s engine history in the same shape', () => {
  // A record as the replicated state holds it: run by p1, its failover_command begun by p1 and
  // closed by p3 after a resume; another record still open.
  let rs = upState();
  const at = (peer: string, t: number, decision: Decision) => ({ type: 'decision' as const, peer, at: t, decision });
  rs = applyAll(rs, 4, at('p1', Date.parse(NOW) - 5000, { type: 'failoverStarted', seq: 3, kind: 'node_down', ids: [0], term: 4, reason: 'primary down by consensus', replaces: 0 }));
  const seq = rs.index;
  rs = applyAll(
    rs,
    4,
    at('p1', Date.parse(NOW) - 4900, { type: 'failoverStep', seq, step: 'promote', backend: 1, phase: 'begun' }),
    at('p1', Date.parse(NOW) - 4700, { type: 'failoverStep', seq, step: 'promote', backend: 1, phase: 'done', ok: true, result: 'promoted' }),
    at('p1', Date.parse(NOW) - 4600, { type: 'failoverStep', seq, step: 'failover_command', backend: 0, phase: 'begun' }),
  );
  rs = applyAll(
    rs,
    5,
    { type: 'failoverResumed', peer: 'p3', at: Date.parse(NOW) - 2000, seq, reason: 'left open by p1' },
    at('p3', Date.parse(NOW) - 1900, { type: 'failoverStep', seq, step: 'failover_command', backend: 0, phase: 'done', ok: true, result: 'treated as done' }),
    at('p3', Date.parse(NOW) - 1000, { type: 'failoverFinished', seq, ok: true, summary: 'backend 1 is the new primary', newPrimary: 1 }),
    at('p3', Date.parse(NOW) - 500, { type: 'failoverStarted', seq: 9, kind: 'node_down', ids: [2], term: 5, reason: 'standby down by consensus' }),
  );
  const replicated = { appliedIndex: rs.index, records: rs.failovers };
  // p2 ran nothing itself; p3's engine has a local result of its own: neither shows.
  const local = failoverResult();
  const onP2 = { ...snapshot(cluster({ self: 'p2' })), replicatedFailovers: replicated };
  const base = snapshot(cluster({ self: 'p3' }));
  const onP3 = { ...base, failover: { ...base.failover, history: [local] }, replicatedFailovers: replicated };
  const v = failoversView(onP2);
  assert.deepEqual(failoversView(onP3), v, 'the same answer on every peer');
  assert.deepEqual([v.source, v.appliedIndex, v.history.length], ['cluster', rs.index, 1]);
  assert.deepEqual(v.active, { seq: rs.index, kind: 'node_down', ids: [2], reason: 'standby down by consensus', startedAt: new Date(Date.parse(NOW) - 500).toISOString() });
  const h = v.history[0]!;
  assert.deepEqual(
    [h.seq, h.kind, h.nodes, h.term, h.ranBy, h.resumes, h.ok, h.result, h.oldPrimary, h.newPrimary, h.switchover, h.durationMs, h.toNewPrimaryMs],
    [seq, 'node_down', [0], 5, 'p3', 1, true, 'backend 1 is the new primary', 0, 1, null, 4000, null],
  );
  assert.deepEqual(h.steps, [
    { name: 'promote', backend: 1, ok: true, ms: 200, detail: 'promoted', peer: 'p1', term: 4, runs: 1 },
    { name: 'failover_command', backend: 0, ok: true, ms: null, detail: 'treated as done', peer: 'p3', term: 5, runs: 1 },
  ]);
  const st = statusView(onP2);
  assert.deepEqual([st.failover.last, st.failover.active], [h, v.active], 'status shows the same last and running record');

  const text = failoversScreen({ colour: false }, v);
  assert.match(text, /^failover records of the watchdog cluster \(as applied at log index \d+\)$/m);
  assert.match(text, /^running: #\d+ node_down of 2 since /m);
  assert.match(text, /^#\d+ 11:59:59 node_down of 0 by p3 \(resumed 1x\), term 5: ok in 4000 ms$/m);
  assert.match(text, /^ {4}ok promote \[1\] 200 ms by p1 \(term 4\): promoted$/m);
  assert.match(text, /^ {4}ok failover_command \[0\]: treated as done$/m);
  for (const line of text.split('\n')) assert.ok(line.length <= 80, line);

  // Alone: the engine's history, newest first, in the same shape.
  const alone = failoversView({ ...snapshot(cluster({ self: 'solo' })), failover: { ...base.failover, history: [local] } });
  assert.deepEqual([alone.source, alone.appliedIndex, alone.history.map((x) => [x.seq, x.ranBy, x.resumes])], ['local', null, [[local.seq, 'solo', 0]]]);
  assert.deepEqual(alone.history[0]!.steps, [{ name: 'promote', backend: 1, ok: true, ms: 12, detail: 'pg_promote()', peer: 'solo', term: 0, runs: 1 }]);
  assert.match(failoversScreen({ colour: false }, alone), /^failovers run by this peer \(no watchdog\)$/m);
});

function failoverResult(): FailoverResult {
  return {
    seq: 1, kind: 'promote', ids: [1], reason: 'promotion requested by operator', term: 0, switchover: false, ok: true, summary: 'backend 1 is the new primary',
    oldPrimary: 0, newPrimary: 1, candidate: null, steps: [{ name: 'promote', backend: 1, ok: true, ms: 12, detail: 'pg_promote()' }],
    detectedAt: null, queuedAt: NOW, startedAt: NOW, newPrimaryAt: NOW, finishedAt: NOW, toNewPrimaryMs: 30, durationMs: 40,
  };
}
