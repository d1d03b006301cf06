// The gossiped view's schema: what the transport lets through, and view ordering.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isNewerView, peerViewSchema, VIEW_LIMITS } from '../../src/cluster/view.js';
import { view } from './fixtures.js';

describe('peer view', () => {
  const good = view('b', [1]).view;

  it('accepts a well-formed view, LSNs in PostgreSQL text form', () => {
    assert.ok(peerViewSchema.safeParse(good).success);
    const withLsn = { ...good, backends: [{ ...good.backends[0], lsn: '16/B374D848' }] };
    assert.ok(peerViewSchema.safeParse(withLsn).success);
  });

  const bad: [string, unknown][] = [
    ['an unknown key', { ...good, extra: 1 }],
    ['a bad health value', { ...good, backends: [{ ...good.backends[0], health: 'maybe' }] }],
    ['a bad LSN', { ...good, backends: [{ ...good.backends[0], lsn: '12345' }] }],
    ['a negative seq', { ...good, seq: -1 }],
    ['an unknown peer state', { ...good, status: { ...good.status, state: 'BOSS' } }],
    ['an empty peer name', { ...good, peer: '' }],
    ['too many backends', { ...good, backends: Array.from({ length: VIEW_LIMITS.backends + 1 }, (_, id) => ({ ...good.backends[0], id: id % VIEW_LIMITS.backends })) }],
  ];
  for (const [why, v] of bad) {
    it(`refuses ${why}`, () => {
      const r = peerViewSchema.safeParse(v);
      assert.equal(r.success, false);
    });
  }

  it('orders views by process start, then seq', () => {
    assert.ok(isNewerView(undefined, good));
    assert.ok(isNewerView(good, { ...good, seq: 2 }));
    assert.ok(!isNewerView(good, { ...good, seq: 1 }), 'a duplicate is not newer');
    assert.ok(!isNewerView({ ...good, seq: 9 }, good), 'a late, older view is dropped');
    assert.ok(isNewerView({ ...good, seq: 9 }, { ...good, startedAt: 2, seq: 0 }), 'a restarted peer starts over at seq 0');
  });
});
