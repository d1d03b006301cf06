// The failover engine's pure decisions (src/failover/decide.ts), table by table: every branch
// with its reason, "nothing to do" included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BackendRole, BackendStatus } from '../../src/backends/registry.js';
import { decideAttach, decideFailback, decideMaintenance, decideReplacement, decideRequest, decideStartupRoles, reachability, type BackendView, type EngineState, type Fresh } from '../../src/failover/decide.js';
import type { ServerState } from '../../src/failover/pgops.js';
import type { FailoverRequest } from '../../src/failover/types.js';

type B = [status: BackendStatus, role: BackendRole, pgStatus?: 'up' | 'down' | 'unknown', pgRole?: BackendRole, extra?: Partial<BackendView>];

function state(bs: B[], more: Partial<EngineState> = {}): EngineState {
  return {
    backends: bs.map(([status, role, pgStatus = 'up', pgRole = role, extra = {}], id) => ({ id, host: '127.0.0.1', port: 5000 + id, status, role, pgStatus, pgRole, failoverAllowed: true, priority: 0, lsn: 100n, lastStatusChange: DETACHED_AT, ...extra })),
    lastPrimary: null,
    adminDetached: new Set(),
    noCandidate: null,
    ...more,
  };
}

const DETACHED_AT = new Date('2026-01-01T12:00:00Z');
const RUNNING_BEFORE = new Date('2026-01-01T11:00:00Z');
const RESTARTED_AFTER = new Date('2026-01-01T12:00:05Z');
const P: B = ['up', 'primary'];
const S: B = ['up', 'standby'];

function wal(over: Partial<ServerState> = {}): ServerState {
  return { inRecovery: true, currentLsn: null, receiveLsn: 200n, replayLsn: 200n, walReceiverStatus: 'streaming', senderHost: '127.0.0.1', senderPort: 5000, startedAt: RUNNING_BEFORE, ...over };
}

function req(kind: FailoverRequest['kind'], ids: number[], more: Partial<FailoverRequest> = {}): FailoverRequest {
  return { kind, ids, reason: 'test', ...more };
}

test('decideRequest: every kind and branch, with its reason', () => {
  const cases: [name: string, s: EngineState, r: FailoverRequest, want: Record<string, unknown>, reason: RegExp][] = [
    ['a standby fails: detach, primary unchanged', state([P, S, S]), req('node_down', [2]), { action: 'detach', ids: [2], primaryFailed: false }, /test/],
    ['the primary fails: replace it', state([P, S, S]), req('node_down', [0]), { action: 'replace primary', ids: [0], oldPrimary: 0 }, /primary 0 failed: test/],
    ['the primary was already detached (lastPrimary): replace it', state([['down', 'primary'], S, S], { lastPrimary: 0 }), req('node_down', [0]), { action: 'replace primary', oldPrimary: 0 }, /primary 0 failed/],
    ['the failed primary was already replaced by another: detach only', state([P, P, S], { lastPrimary: 0 }), req('node_down', [0]), { action: 'detach', primaryFailed: true }, /test/],
    ['attach', state([P, ['down', 'standby']]), req('node_up', [1]), { action: 'attach', ids: [1] }, /test/],
    ['promote a standby', state([P, S]), req('promote', [1], { switchover: true }), { action: 'promote', id: 1, switchover: true }, /test/],
    ['promote a failover: disallow standby: refused', state([P, ['up', 'standby', 'up', 'standby', { failoverAllowed: false }]]), req('promote', [1]), { action: 'refuse' }, /backend 1 is marked failover: disallow/],
    ['promote the primary: refused', state([P, S]), req('promote', [0]), { action: 'refuse' }, /backend 0 is not an attached standby \(status up, role primary\)/],
    ['promote a detached standby: refused', state([P, ['down', 'standby']]), req('promote', [1]), { action: 'refuse' }, /not an attached standby \(status down/],
    ['close idle of every backend', state([P, S]), req('close_idle', []), { action: 'close idle', ids: [] }, /close idle connections of every backend/],
  ];
  for (const [name, s, r, want, reason] of cases) {
    const plan = decideRequest(s, r);
    for (const [k, v] of Object.entries(want)) assert.deepEqual((plan as Record<string, unknown>)[k], v, `${name}: ${k}`);
    assert.match(plan.reason, reason, name);
  }
});

test('decideReplacement: adopt an already promoted server, the operator\'s choice, the candidate rule, no candidate', () => {
  const s = state([['down', 'primary'], S, S]);
  const adopt = decideReplacement(s, { failed: [0], oldPrimary: 0, forced: null, wal: new Map([[1, wal()], [2, wal({ inRecovery: false })]]), unpromotable: [], maxLagBytes: 1e6, oldPrimaryCheck: null });
  assert.deepEqual([adopt.action, adopt.action === 'adopt' && adopt.id], ['adopt', 2]);
  assert.match(adopt.reason, /backend 2 is already out of recovery/);

  const forced = decideReplacement(s, { failed: [0], oldPrimary: 0, forced: 2, wal: new Map([[1, wal()], [2, wal()]]), unpromotable: [], maxLagBytes: 1e6, oldPrimaryCheck: null });
  assert.deepEqual([forced.action, forced.action === 'promote' && forced.id], ['promote', 2]);
  assert.match(forced.reason, /chosen by the operator/);

  const best = decideReplacement(s, { failed: [0], oldPrimary: 0, forced: null, wal: new Map([[1, wal({ receiveLsn: 300n })], [2, wal()]]), unpromotable: [], maxLagBytes: 1e6, oldPrimaryCheck: null });
  assert.deepEqual([best.action, best.action === 'promote' && best.id], ['promote', 1]);
  assert.match(best.reason, /node 1 has the most advanced WAL/);

  const next = decideReplacement(s, { failed: [0], oldPrimary: 0, forced: null, wal: new Map([[1, wal({ receiveLsn: 300n })], [2, wal()]]), unpromotable: [1], maxLagBytes: 1e6, oldPrimaryCheck: null });
  assert.deepEqual([next.action, next.action === 'promote' && next.id], ['promote', 2]);

  const none = decideReplacement(s, { failed: [0], oldPrimary: 0, forced: null, wal: new Map([[1, null], [2, null]]), unpromotable: [], maxLagBytes: 1e6, oldPrimaryCheck: null });
  assert.equal(none.action, 'no candidate');
  assert.match(none.reason, /no standby qualifies for promotion: node 1 health check is down; node 2 health check is down/);
});

test('decideAttach: a primary with no other, a second primary, a standby streaming or not', () => {
  const cases: [name: string, s: EngineState, id: number, w: ServerState, want: Record<string, unknown>, reason: RegExp][] = [
    ['a primary, none other', state([['down', 'primary'], S]), 0, wal({ inRecovery: false }), { action: 'attach', role: 'primary' }, /is a primary and there is no other/],
    ['a second primary, attached: refused and detached', state([P, ['up', 'unknown']]), 1, wal({ inRecovery: false }), { action: 'refuse', detach: true }, /backend 1 is a primary while backend 0 is the primary/],
    ['a second primary, already down: refused', state([P, ['down', 'unknown']]), 1, wal({ inRecovery: false }), { action: 'refuse', detach: false }, /second primary is never written to/],
    ['a standby streaming from the primary', state([P, ['down', 'standby']]), 1, wal(), { action: 'attach', role: 'standby', note: null }, /streaming from the primary 0/],
    ['a standby not streaming: attached, with a note', state([P, ['down', 'standby']]), 1, wal({ walReceiverStatus: null }), { action: 'attach', role: 'standby' }, /a standby/],
  ];
  for (const [name, s, id, w, want, reason] of cases) {
    const d = decideAttach(s, id, w, true);
    for (const [k, v] of Object.entries(want)) assert.deepEqual((d as Record<string, unknown>)[k], v, `${name}: ${k}`);
    assert.match(d.reason, reason, name);
  }
  const off = decideAttach(state([P, ['up', 'unknown']]), 1, wal({ inRecovery: false }), false);
  assert.deepEqual([off.action, off.action === 'refuse' && off.detach], ['refuse', false]);
});

test('decideMaintenance: requests, failback checks, and a reason for every backend left alone', () => {
  const s = state(
    [
      P,
      ['waiting', 'unknown', 'up', 'standby'],
      ['waiting', 'unknown', 'down'],
      ['waiting', 'unknown', 'unknown'],
      ['up', 'standby', 'up', 'primary'],
      ['down', 'standby', 'up', 'standby'],
      ['down', 'standby', 'up', 'standby'],
      ['down', 'standby', 'down'],
      ['unused', 'unknown'],
      ['down', 'unknown', 'up', 'primary'],
    ],
    { adminDetached: new Set([6]) },
  );
  const m = decideMaintenance(s, { detachFalsePrimary: true });
  assert.deepEqual(
    m.requests.map((r) => [r.kind, r.ids[0]]),
    [
      ['node_up', 1],
      ['node_down', 2],
      ['node_down', 4],
    ],
  );
  assert.match(m.requests[2]!.reason, /false primary: backend 4 reports itself primary while backend 0 is the primary/);
  assert.deepEqual(m.failbackChecks, [5]);
  assert.equal(m.chooseAgain, null, 'there is a primary');
  assert.deepEqual(
    m.idle.map((x) => x.id),
    [0, 3, 6, 7, 8, 9],
  );
  assert.match(m.idle.find((x) => x.id === 6)!.reason, /detached by an operator/);
  assert.match(m.idle.find((x) => x.id === 9)!.reason, /answers as primary beside the primary 0: stays fenced/);
  // A detection dropped as stale leaves the health view down: a real failure afterwards is
  // not reported again by the checker, so maintenance asks (on fresh evidence).
  const still = decideMaintenance(state([['up', 'primary', 'down'], S]), { detachFalsePrimary: true });
  assert.deepEqual(still.requests, [{ kind: 'node_down', ids: [0], reason: 'health check says unreachable while attached (primary)', source: 'health', observed: [{ id: 0, status: 'up', role: 'primary' }] }]);
  const off = decideMaintenance(s, { detachFalsePrimary: false });
  assert.match(off.idle.find((x) => x.id === 4)!.reason, /detach_false_primary is off/);
});

test('decideMaintenance: no candidate is a state — the choice runs again when reachability changes, not before', () => {
  const failed = state([['down', 'primary', 'down'], ['down', 'standby', 'down'], ['down', 'standby', 'down']], { lastPrimary: 0 });
  const at = reachability(failed);
  const same = decideMaintenance({ ...failed, noCandidate: { reachability: at } }, { detachFalsePrimary: true });
  assert.equal(same.chooseAgain, null);
  assert.match(same.idle.find((x) => x.id === 0 && /reachability unchanged/.test(x.reason))!.reason, /no primary; reachability unchanged since the last choice found no candidate/);

  const back = state([['down', 'primary', 'down'], ['down', 'standby', 'up', 'standby'], ['down', 'standby', 'down']], { lastPrimary: 0, noCandidate: { reachability: at } });
  const m = decideMaintenance(back, { detachFalsePrimary: true });
  assert.deepEqual(m.failbackChecks, [1], 'the standby that answers is checked, to become a candidate');
  assert.deepEqual([m.chooseAgain?.kind, m.chooseAgain?.ids], ['node_down', [0]]);
  assert.match(m.chooseAgain!.reason, /no primary: choosing again, reachability changed \(1:down\/down\/standby → down\/up\/standby\)/);

  const adminOnly = decideMaintenance(state([['down', 'primary', 'down'], ['down', 'standby', 'up', 'standby']], { lastPrimary: 0, adminDetached: new Set([1]) }), { detachFalsePrimary: true });
  assert.deepEqual(adminOnly.failbackChecks, [], "an operator's detach is respected even with no primary");
});

test('decideFailback: a candidate again with no primary; re-attached when falsely detached or under auto_failback, following the primary first if it missed a promotion', () => {
  const P1 = state([P, ['down', 'standby']]);
  const cases: [name: string, s: EngineState, w: ServerState, autoFailback: boolean, want: 'attach' | 'follow' | null, reason: RegExp][] = [
    ['falsely detached (server ran through the detach), streams from the primary', P1, wal(), false, 'attach', /backend 1 was falsely detached \(its server runs since .* before the detach .*\): it streams from the primary 0, attached again/],
    ['falsely detached, streams from elsewhere (missed a promotion): follow, then attach', P1, wal({ senderPort: 5009 }), false, 'follow', /falsely detached .* does not stream from the primary 0 .*sender port 5009\): it follows it and is attached again/],
    ['restarted since the detach, auto_failback off', P1, wal({ startedAt: RESTARTED_AFTER }), false, null, /restarted since its detach .* auto_failback is off/],
    ['restarted since the detach, auto_failback on', P1, wal({ startedAt: RESTARTED_AFTER }), true, 'attach', /auto_failback: backend 1: it streams from the primary 0 again/],
    ['no primary: a candidate again', state([['down', 'primary', 'down'], ['down', 'standby']]), wal({ walReceiverStatus: null }), false, 'attach', /answers again \(in recovery\) while there is no primary: attached again as a promotion candidate/],
    ['not in recovery', state([['down', 'primary', 'down'], ['down', 'standby']]), wal({ inRecovery: false }), true, null, /is not in recovery/],
  ];
  for (const [name, s, w, af, want, reason] of cases) {
    const d = decideFailback(s, 1, w, { autoFailback: af, builtinFollow: true });
    assert.equal(d.request === null ? null : d.request.follow ? 'follow' : 'attach', want, name);
    if (d.request) assert.deepEqual([d.request.kind, d.request.ids], ['node_up', [1]], name);
    assert.match(d.reason, reason, name);
  }
  const cmd = decideFailback(P1, 1, wal({ senderPort: 5009 }), { autoFailback: true, builtinFollow: false });
  assert.equal(cmd.request, null);
  assert.match(cmd.reason, /promote: command, so following it is left to follow_primary_command or the operator/);
});

test('decideRequest: a detected node_down is checked on fresh evidence; a stale one is dropped with the reason', () => {
  const seen = (id: number, status: 'up' | 'waiting', role: 'primary' | 'standby') => req('node_down', [id], { source: 'health', observed: [{ id, status, role }] });
  const down: Fresh = { ok: false, error: 'timeout' };
  const cases: [name: string, s: EngineState, r: FailoverRequest, fresh: Map<number, Fresh>, action: string, reason: RegExp][] = [
    ['still unreachable: the primary is replaced', state([P, S, S]), seen(0, 'up', 'primary'), new Map([[0, down]]), 'replace primary', /primary 0 failed/],
    ['still unreachable standby: detached', state([P, S, S]), seen(2, 'up', 'standby'), new Map([[2, down]]), 'detach', /test/],
    ['answers a fresh probe: dropped', state([P, S, S]), seen(1, 'up', 'standby'), new Map([[1, { ok: true, inRecovery: true }]]), 'nothing', /stale detection, dropped: backend 1 answers a fresh probe \(in recovery\)/],
    ['promoted since the detection: dropped (never detach the new primary)', state([['down', 'unknown'], P, S], { lastPrimary: 1 }), seen(1, 'up', 'standby'), new Map([[1, down]]), 'nothing', /backend 1 changed since the detection \(was up standby, now up primary\)/],
    ['re-attached since the detection: dropped', state([P, S]), seen(1, 'waiting', 'standby'), new Map([[1, down]]), 'nothing', /was waiting standby, now up standby/],
    ['not probed, unchanged: carried out', state([P, S, S]), seen(2, 'up', 'standby'), new Map(), 'detach', /test/],
  ];
  for (const [name, s, r, fresh, action, reason] of cases) {
    const plan = decideRequest(s, r, fresh);
    assert.equal(plan.action, action, name);
    assert.match(plan.reason, reason, name);
  }
  // Requests nobody detected (an operator's) are not second-guessed.
  assert.equal(decideRequest(state([P, S]), req('node_down', [1], { source: 'admin' }), new Map([[1, { ok: true, inRecovery: true }]])).action, 'detach');
});

test('decideReplacement: the old primary checked again before promoting — cancel if it answers as a primary', () => {
  const s = state([['down', 'primary'], S, S]);
  const base = { failed: [0], oldPrimary: 0, forced: null, wal: new Map([[1, wal()], [2, wal()]]), unpromotable: [], maxLagBytes: 1e6 };
  const back = decideReplacement(s, { ...base, oldPrimaryCheck: { ok: true, inRecovery: false } });
  assert.deepEqual([back.action, back.action === 'cancel' && back.id], ['cancel', 0]);
  assert.match(back.reason, /the old primary 0 answers as a primary when checked again before promoting: failover cancelled, it stays the primary/);
  assert.equal(decideReplacement(s, { ...base, oldPrimaryCheck: { ok: false, error: 'timeout' } }).action, 'promote');
  assert.equal(decideReplacement(s, { ...base, oldPrimaryCheck: { ok: true, inRecovery: true } }).action, 'promote', 'answers in recovery: not a primary');
  // A server already promoted (an interrupted run) wins over an old primary that reappears: it stays fenced.
  const adopted = decideReplacement(s, { ...base, wal: new Map([[1, wal({ inRecovery: false })]]), oldPrimaryCheck: { ok: true, inRecovery: false } });
  assert.equal(adopted.action, 'adopt');
});

test('decideStartupRoles: one primary, several (most followers wins), unreachable ones wait', () => {
  const s = state([S, S, S, S]);
  const one = decideStartupRoles(s, new Map([[0, wal({ inRecovery: false })], [1, wal()], [2, null]]), 'startup', true);
  assert.equal(one.primary, 0);
  assert.deepEqual(one.unreachable, [2]);
  assert.deepEqual(
    one.changes.map((c) => [c.id, c.status, c.role]),
    [
      [0, 'up', 'primary'],
      [1, 'up', 'standby'],
    ],
  );
  const two = decideStartupRoles(s, new Map([[0, wal({ inRecovery: false })], [1, wal({ inRecovery: false })], [2, wal({ senderPort: 5001 })], [3, wal({ senderPort: 5001 })]]), 'startup', true);
  assert.equal(two.primary, 1);
  assert.match(two.tieBreak!, /2 backends are primaries; backend 1 has the most standbys/);
  assert.deepEqual(two.changes.find((c) => c.id === 0), { id: 0, status: 'down', role: 'unknown', reason: 'startup: false primary (backend 1 is the primary)' });
  const kept = decideStartupRoles(s, new Map([[0, wal({ inRecovery: false })], [1, wal({ inRecovery: false })]]), 'startup', false);
  assert.deepEqual(kept.changes.find((c) => c.id === 1)?.status, 'up');
});
