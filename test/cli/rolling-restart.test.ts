// The rolling restart's pure rules: the order (the coordinator last) and when a restarted peer
// counts as back in the cluster and caught up, each with its reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backAndCaughtUp, restartOrder } from '../../src/cli/rolling-restart.js';
import type { StatusView } from '../../src/admin/views.js';

test('the coordinator goes last; without one known, the order given', () => {
  assert.deepEqual(restartOrder(['a', 'b', 'c'], 'a').order, ['b', 'c', 'a']);
  assert.match(restartOrder(['a', 'b', 'c'], 'a').reason, /a is the coordinator: it goes last/);
  assert.deepEqual(restartOrder(['a', 'b', 'c'], null), { order: ['a', 'b', 'c'], reason: 'no coordinator known: in the order given' });
  assert.match(restartOrder(['a', 'b'], 'z').reason, /not among these peers/);
});

type PeerFacts = StatusView['peers'][number];

function status(name: string, state: string, applied: number, commit: number, sees: Record<string, string>, leader: string | null = 'a'): StatusView {
  return {
    peer: { name, state, coordinator: state === 'coordinator', proxyListening: true },
    raft: { term: 2, commitIndex: commit, appliedIndex: applied, leader },
    peers: Object.entries(sees).map(([n, st]) => ({ name: n, state: st }) as unknown as PeerFacts),
  } as unknown as StatusView;
}

test('back and caught up: it answers as standby, knows the leader, has applied what the coordinator committed, and every peer sees it', () => {
  const views = (b: StatusView | undefined, c: StatusView) =>
    new Map<string, StatusView | undefined>([
      ['a', status('a', 'coordinator', 10, 10, { a: 'coordinator', b: 'standby', c: c.peer.state })],
      ['b', b],
      ['c', c],
    ]);
  const c = status('c', 'standby', 10, 10, {});
  assert.deepEqual(backAndCaughtUp('b', views(undefined, c)), { ok: false, reason: 'b does not answer yet' });
  assert.match(backAndCaughtUp('b', views(status('b', 'joining', 0, 0, {}), c)).reason, /b is joining/);
  assert.match(backAndCaughtUp('b', views(status('b', 'standby', 4, 10, {}, null), c)).reason, /knows no leader yet/);
  assert.match(backAndCaughtUp('b', views(status('b', 'standby', 4, 10, {}), c)).reason, /b has applied 4 of the 10 entries the coordinator committed/);
  const seenLost = views(status('b', 'standby', 10, 10, {}), status('c', 'standby', 10, 10, { b: 'lost' }));
  assert.deepEqual(backAndCaughtUp('b', seenLost), { ok: false, reason: 'c sees b as lost' });
  const ok = views(status('b', 'standby', 10, 10, {}), status('c', 'standby', 10, 10, { b: 'standby' }));
  assert.equal(backAndCaughtUp('b', ok).ok, true, backAndCaughtUp('b', ok).reason);
});
