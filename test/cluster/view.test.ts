// The gossiped view's checks: what the transport lets through, and view ordering.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isNewerView, parsePeerView, VIEW_LIMITS } from '../../src/cluster/view.js';
import { view } from './fixtures.js';

describe('peer view', () => {
  const good = view('b', [1]).view;

  it('accepts a well-formed view, LSNs in PostgreSQL text form', () => {
    assert.deepEqual(parsePeerView(good), { view: good });
    const withLsn = { ...good, backends: [{ ...good.backends[0]!, lsn: '16/B374D848' }] };
    assert.deepEqual(parsePeerView(withLsn), { view: withLsn });
    const reachable = { ...good, status: { ...good.status, proxy: { host: '10.0.0.1', port: 9999 }, adminUrl: 'http://10.0.0.1:9898' } };
    assert.deepEqual(parsePeerView(reachable), { view: reachable });
    const unknownYet = { ...good, status: { ...good.status, proxy: null, adminUrl: null } };
    assert.deepEqual(parsePeerView(unknownYet), { view: unknownYet });
  });

  it('drops a status field it does not know (a newer peer in a rolling upgrade), not the view', () => {
    const r = parsePeerView({ ...good, status: { ...good.status, newField: 1 } });
    assert.deepEqual(r, { view: good });
  });

  const bad: [string, unknown][] = [
    ['an unknown key', { ...good, extra: 1 }],
    ['a bad health value', { ...good, backends: [{ ...good.backends[0], health: 'maybe' }] }],
    ['a bad LSN', { ...good, backends: [{ ...good.backends[0], lsn: '12345' }] }],
    ['a negative seq', { ...good, seq: -1 }],
    ['an unknown peer state', { ...good, status: { ...good.status, state: 'BOSS' } }],
    ['an empty peer name', { ...good, peer: '' }],
    ['a backend id out of range', { ...good, backends: [{ ...good.backends[0], id: VIEW_LIMITS.backends }] }],
    ['a fractional since', { ...good, backends: [{ ...good.backends[0], since: 1.5 }] }],
    ['an unknown key in a backend', { ...good, backends: [{ ...good.backends[0], x: 1 }] }],
    ['a missing status', { ...good, status: undefined }],
    ['a bad proxy port', { ...good, status: { ...good.status, proxy: { host: 'h', port: 0 } } }],
    ['a string for proxyUp', { ...good, status: { ...good.status, proxyUp: 'yes' } }],
    ['backends that are not a list', { ...good, backends: {} }],
    ['not an object', [good]],
    ['too many backends', { ...good, backends: Array.from({ length: VIEW_LIMITS.backends + 1 }, (_, id) => ({ ...good.backends[0], id: id % VIEW_LIMITS.backends })) }],
  ];
  for (const [why, v] of bad) {
    it(`refuses ${why}`, () => {
      const r = parsePeerView(v, 'body');
      assert.ok('problem' in r, 'refused');
      assert.match(r.problem, /^body(\.|:)/, 'the problem names where');
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
