import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideSync, parseSyncNames } from '../../src/failover/sync.js';

test('synchronous_standby_names forms parse', () => {
  assert.equal(parseSyncNames(''), null);
  assert.deepEqual(parseSyncNames('FIRST 1 (standby1, standby2)'), { method: 'first', num: 1, names: [{ name: 'standby1', quoted: false }, { name: 'standby2', quoted: false }] });
  assert.deepEqual(parseSyncNames('any 2 (a,"B c")'), { method: 'any', num: 2, names: [{ name: 'a', quoted: false }, { name: 'B c', quoted: true }] });
  assert.deepEqual(parseSyncNames('2 (a, b, c)')?.num, 2);
  assert.deepEqual(parseSyncNames('a, b'), { method: 'first', num: 1, names: [{ name: 'a', quoted: false }, { name: 'b', quoted: false }] });
  assert.deepEqual(parseSyncNames('*')?.names, [{ name: '*', quoted: false }]);
});

test('clear when fewer synchronous standbys stream than required, keep otherwise', () => {
  const d = decideSync('FIRST 1 (s1, s2)', null, []);
  assert.equal(d.action, 'clear');
  assert.equal(d.action === 'clear' && d.saved, 'FIRST 1 (s1, s2)');
  assert.equal(decideSync('FIRST 1 (s1, s2)', null, ['S2']).action, 'none'); // unquoted names compare case-insensitively
  assert.equal(decideSync('ANY 2 (s1, s2)', null, ['s1', 'other']).action, 'clear');
  assert.equal(decideSync('*', null, ['x']).action, 'none');
  assert.equal(decideSync('"S1"', null, ['s1']).action, 'clear'); // quoted: exact
});

test('restore the saved value once enough standbys stream again', () => {
  assert.equal(decideSync('', 'FIRST 1 (s1, s2)', []).action, 'none');
  const r = decideSync('', 'FIRST 1 (s1, s2)', ['s2']);
  assert.deepEqual(r.action === 'restore' && r.value, 'FIRST 1 (s1, s2)');
  assert.equal(decideSync('', null, ['s1']).action, 'none');
});
