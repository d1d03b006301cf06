import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { isMd5Hash, md5Hash, md5Response, md5Verify } from '../../src/protocol/md5.js';

const salt = Buffer.from([0x01, 0x02, 0x03, 0x04]);

test('md5Hash is md5 of password followed by user, as PostgreSQL stores it', () => {
  // Known value: SELECT 'md5' || md5('postgres' || 'postgres')
  assert.equal(md5Hash('postgres', 'postgres'), 'md53175bce1d3201d16594cebf9d7eb3f9d');
  assert.equal(md5Hash('alice', 'pw'), 'md5' + createHash('md5').update('pwalice').digest('hex'));
  assert.notEqual(md5Hash('bob', 'pw'), md5Hash('alice', 'pw'), 'the user name salts the hash');
  assert.ok(isMd5Hash(md5Hash('a', 'b')));
  assert.equal(isMd5Hash('md5XYZ'), false);
  assert.equal(isMd5Hash('MD5' + '0'.repeat(32)), false);
});

test('md5Response is the same from a password and from its stored hash', () => {
  const fromPassword = md5Response('alice', 'pw', salt);
  assert.equal(fromPassword, md5Response('alice', md5Hash('alice', 'pw'), salt));
  const inner = createHash('md5').update('pwalice').digest('hex');
  assert.equal(fromPassword, 'md5' + createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex'));
  assert.notEqual(fromPassword, md5Response('alice', 'pw', Buffer.from([1, 2, 3, 5])), 'the salt changes the response');
  assert.throws(() => md5Response('alice', 'pw', Buffer.alloc(3)), /salt must be 4 bytes/);
});

test('md5Verify accepts the right response and refuses everything else', () => {
  const stored = md5Hash('alice', 'pw');
  assert.equal(md5Verify(stored, salt, md5Response('alice', 'pw', salt)), true);
  assert.equal(md5Verify(stored, salt, md5Response('alice', 'wrong', salt)), false);
  assert.equal(md5Verify(stored, salt, md5Response('bob', 'pw', salt)), false, 'another user');
  assert.equal(md5Verify(stored, Buffer.from([9, 9, 9, 9]), md5Response('alice', 'pw', salt)), false, 'replay with another salt');
  assert.equal(md5Verify(stored, salt, ''), false);
  assert.equal(md5Verify(stored, salt, 'md5'), false);
  assert.equal(md5Verify(stored, salt, stored), false, 'the stored hash itself is not a response');
  assert.equal(md5Verify('not-a-hash', salt, md5Response('alice', 'pw', salt)), false);
  assert.equal(md5Verify(stored, Buffer.alloc(2), 'x'), false);
});
