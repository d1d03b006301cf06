// Single-peer mode: the failover engine's Decisions sink holds routing to the backends a
// failover concerns, from FailoverStarted until FailoverFinished (bounded), so the proxy makes
// statements wait instead of failing (the watchdog's interlock does this in cluster mode).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BackendRegistry, type RoutingGates } from '../../src/backends/registry.js';
import { RegistryDecisions, heldBy } from '../../src/failover/registry-decisions.js';

function registry(): BackendRegistry {
  const r = new BackendRegistry({ backends: [0, 1, 2].map((i) => ({ host: '127.0.0.1', port: 5432 + i, weight: 1, data_dir: '', priority: 0, failover: 'allow' as const, name: undefined })) } as never);
  r.update(0, { status: 'up', role: 'primary' }, 'test');
  r.update(1, { status: 'up', role: 'standby' }, 'test');
  r.update(2, { status: 'up', role: 'standby' }, 'test');
  return r;
}

test('a failover of the primary holds it from start to finish, within the bound, and says why', async () => {
  const r = registry();
  const events: [RoutingGates, string][] = [];
  r.on('gates', (g, why) => events.push([g, why]));
  const d = new RegistryDecisions(r, 5000);
  const t0 = Date.now();
  await d.record({ type: 'failoverStarted', seq: 7, kind: 'node_down', ids: [0], term: 0, reason: 'health check failed' });
  const held = r.gates().held;
  assert.deepEqual(held.map((h) => h.id), [0]);
  assert.equal(held[0]!.reason, 'failover 7');
  assert.ok(held[0]!.untilMs >= t0 + 5000 && held[0]!.untilMs <= Date.now() + 5000, 'bounded by holdMs');
  assert.match(events[0]![1], /failover 7 started \(node_down of 0\): holding routing to backends 0/);
  await d.record({ type: 'backend', id: 0, status: 'down', reason: 'failed' });
  assert.equal(r.gates().held.length, 1, 'still held while the failover runs');
  await d.record({ type: 'failoverFinished', seq: 7, ok: true, summary: 'promoted 1', newPrimary: 1 });
  assert.deepEqual(r.gates().held, [], 'lifted when it finishes');
  assert.match(events[1]![1], /failover 7 finished/);
});

test('what a failover holds: the nodes it acts on, and the primary when the primary may change; refuseWrites is kept', async () => {
  const start = (kind: 'node_down' | 'node_up' | 'promote' | 'close_idle', ids: number[]) => ({ type: 'failoverStarted' as const, seq: 1, kind, ids, term: 0, reason: 'r' });
  assert.deepEqual(heldBy(start('node_down', [2]), 0), [2], 'a standby going down holds only itself (its reads move to another node)');
  assert.deepEqual(heldBy(start('promote', [1]), 0).sort(), [0, 1], 'a switchover holds the old primary too');
  assert.deepEqual(heldBy(start('node_up', [2]), 0), [], 'attaching a node changes nobody\'s route');
  assert.deepEqual(heldBy(start('close_idle', [0]), 0), []);
  const r = registry();
  r.setGates({ held: [], refuseWrites: 'isolated' }, 'test');
  const d = new RegistryDecisions(r, 1000);
  await d.record(start('node_down', [0]));
  assert.equal(r.gates().refuseWrites, 'isolated');
  await d.record({ type: 'failoverFinished', seq: 1, ok: false, summary: 'no candidate', newPrimary: null });
  assert.deepEqual(r.gates(), { held: [], refuseWrites: 'isolated' });
});
