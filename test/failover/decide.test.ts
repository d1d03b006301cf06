// The failover engine's pure decisions (src/failover/decide.ts), table by table: every branch
// with its reason, "nothing to do" included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BackendRole, BackendStatus } from '../../src/backends/registry.js';
import type { WalState } from '../../src/backends/replication.js';
import { decideAttach, decideFailback, decideMaintenance, decideReplacement, decideRequest, decideStartupRoles, type BackendView, type EngineState } from '../../src/failover/decide.js';
import type { FailoverRequest } from '../../src/failover/types.js';

type B = [status: BackendStatus, role: BackendRole, pgStatus?: 'up' | 'down' | 'unknown', pgRole?: BackendRole, extra?: Partial<BackendView>];

function state(bs: B[], more: Partial<EngineState> = {}): EngineState {
  return {
    backends: bs.map(([status, role, pgStatus = 'up', pgRole = role, extra = {}], id) => ({ id, host: '127.0.0.1', port: 5000 + id, status, role, pgStatus, pgRole, failoverAllowed: true, priority: 0, lsn: 100n, ...extra })),
    lastPrimary: null,
    adminDetached: new Set(),
    ...more,
  };
}

const P: B = ['up', 'primary'];
const S: B = ['up', 'standby'];

function wal(over: Partial<WalState> = {}): WalState {
  return { inRecovery: true, currentLsn: null, receiveLsn: 200n, replayLsn: 200n, walReceiverStatus: 'streaming', senderHost: '127.0.0.1', senderPort: 5000, ...over };
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
  const adopt = decideReplacement(s, { failed: [0], oldPrimary: 0, forced: null, wal: new Map([[1, wal()], [2, wal({ inRecovery: false })]]), unpromotable: [], maxLagBytes: 1e6 });
  assert.deepEqual([adopt.action, adopt.action === 'adopt' && adopt.id], ['adopt', 2]);
  assert.match(adopt.reason, /backend 2 is already out of recovery/);

  const forced = decideReplacement(s, { failed: [0], oldPrimary: 0, forced: 2, wal: new Map([[1, wal()], [2, wal()]]), unpromotable: [], maxLagBytes: 1e6 });
  assert.deepEqual([forced.action, forced.action === 'promote' && forced.id], ['promote', 2]);
  assert.match(forced.reason, /chosen by the operator/);

  const best = decideReplacement(s, { failed: [0], oldPrimary: 0, forced: null, wal: new Map([[1, wal({ receiveLsn: 300n })], [2, wal()]]), unpromotable: [], maxLagBytes: 1e6 });
  assert.deepEqual([best.action, best.action === 'promote' && best.id], ['promote', 1]);
  assert.match(best.reason, /node 1 has the most advanced WAL/);

  const next = decideReplacement(s, { failed: [0], oldPrimary: 0, forced: null, wal: new Map([[1, wal({ receiveLsn: 300n })], [2, wal()]]), unpromotable: [1], maxLagBytes: 1e6 });
  assert.deepEqual([next.action, next.action === 'promote' && next.id], ['promote', 2]);

  const none = decideReplacement(s, { failed: [0], oldPrimary: 0, forced: null, wal: new Map([[1, null], [2, null]]), unpromotable: [], maxLagBytes: 1e6 });
  assert.equal(none.action, 'no candidate');
  assert.match(none.reason, /no standby qualifies for promotion: node 1 health check is down; node 2 health check is down/);
});

test('decideAttach: a primary with no other, a second primary, a standby streaming or not', () => {
  const cases: [name: string, s: EngineState, id: number, w: WalState, want: Record<string, unknown>, reason: RegExp][] = [
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
    ],
    { adminDetached: new Set([6]) },
  );
  const m = decideMaintenance(s, { detachFalsePrimary: true, autoFailback: true });
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
  assert.deepEqual(
    m.idle.map((x) => x.id),
    [0, 3, 6, 7, 8],
  );
  assert.match(m.idle.find((x) => x.id === 6)!.reason, /detached by an operator/);
  const off = decideMaintenance(s, { detachFalsePrimary: false, autoFailback: false });
  assert.deepEqual(off.failbackChecks, []);
  assert.match(off.idle.find((x) => x.id === 4)!.reason, /detach_false_primary is off/);
  assert.match(off.idle.find((x) => x.id === 5)!.reason, /auto_failback is off/);
  const noPrimary = decideMaintenance(state([['down', 'primary', 'down'], ['down', 'standby']]), { detachFalsePrimary: true, autoFailback: true });
  assert.match(noPrimary.idle.find((x) => x.id === 1)!.reason, /no primary to stream from/);
});

test('decideFailback: only a standby streaming from the primary fails back', () => {
  const s = state([P, ['down', 'standby']]);
  const yes = decideFailback(s, 1, wal());
  assert.equal(yes.request?.kind, 'node_up');
  assert.match(yes.reason, /auto_failback: backend 1 streams from the primary 0 again/);
  const no = decideFailback(s, 1, wal({ senderPort: 1 }));
  assert.equal(no.request, null);
  assert.match(no.reason, /does not stream from the primary 0/);
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
