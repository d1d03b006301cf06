import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadUserlist, parseUserlist } from '../../src/proxy/userlist.js';
import { makeScramSecret, parseScramSecret, ScramClient, ScramServer } from '../../src/protocol/scram.js';
import { md5Hash, md5Response, md5Verify } from '../../src/protocol/md5.js';

const scramText = makeScramSecret('s3cret', Buffer.from('0123456789abcdef'), 4096);

test('parses plain, SCRAM and md5 entries, comments and blank lines', () => {
  const users = parseUserlist(
    [
      '; pgbouncer-style comment',
      '# another comment',
      '',
      '   ',
      '"alice" "pw1"',
      `"bob" "${scramText}"`,
      `"carol"  "${md5Hash('carol', 'pw3')}"   ; trailing comment`,
      '\t"dave"\t"with ""quotes"" inside"',
      '"we""ird" ""',
      '',
    ].join('\n'),
  );
  assert.deepEqual([...users.keys()], ['alice', 'bob', 'carol', 'dave', 'we"ird']);

  const alice = users.get('alice')!;
  assert.equal(alice.password, 'pw1');
  assert.equal(alice.md5, md5Hash('alice', 'pw1'));
  assert.ok(alice.scram, 'a plain password also gets a SCRAM secret');
  assert.equal(alice.scram.iterations, 4096);
  // The derived SCRAM secret authenticates the password.
  const c = new ScramClient('alice', 'pw1');
  const s = new ScramServer(alice.scram);
  assert.equal(s.clientFinal(c.final(s.clientFirst(c.first()))).ok, true);

  const bob = users.get('bob')!;
  assert.deepEqual(bob, { user: 'bob', scram: parseScramSecret(scramText) });

  const carol = users.get('carol')!;
  assert.deepEqual(carol, { user: 'carol', md5: md5Hash('carol', 'pw3') });
  const salt = Buffer.from([1, 2, 3, 4]);
  assert.equal(md5Verify(carol.md5!, salt, md5Response('carol', 'pw3', salt)), true);

  assert.equal(users.get('dave')!.password, 'with "quotes" inside');
  assert.deepEqual(users.get('we"ird'), { user: 'we"ird', password: '' }, 'empty secret: no password auth');
});

test('each plain password gets its own random salt', () => {
  const users = parseUserlist('"a" "same"\n"b" "same"\n');
  assert.notDeepEqual(users.get('a')!.scram!.salt, users.get('b')!.scram!.salt);
});

test('CRLF line endings are accepted', () => {
  const users = parseUserlist('"a" "x"\r\n"b" "y"\r\n');
  assert.equal(users.get('b')!.password, 'y');
});

test('bad lines are refused with file and line number', () => {
  const cases: [string, RegExp][] = [
    ['alice pw', /users\.txt:1: expected "user" "secret"/],
    ['\n"alice" pw', /users\.txt:2: user "alice" has no quoted secret/],
    ['"alice"', /users\.txt:1: user "alice" has no quoted secret/],
    ['"alice" "pw', /users\.txt:1: unterminated quote in the secret of user "alice"/],
    ['"alice', /users\.txt:1: unterminated quote in user name/],
    ['"" "pw"', /users\.txt:1: empty user name/],
    ['"alice""pw"', /users\.txt:1: user "alice"pw" has no quoted secret/], // "" is an escaped quote
    ['"alice" "pw" extra', /users\.txt:1: unexpected text after the secret of user "alice"/],
    ['"a" "1"\n"b" "2"\n"a" "3"', /users\.txt:3: user "a" is listed again \(first at line 1\)/],
    ['"a" "SCRAM-SHA-256$4096:abc"', /users\.txt:1: user "a": malformed SCRAM secret/],
  ];
  for (const [text, re] of cases) assert.throws(() => parseUserlist(text, 'users.txt'), re, JSON.stringify(text));
});

test('loadUserlist reads a file and names it in errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgwd-userlist-'));
  try {
    const f = join(dir, 'userlist.txt');
    writeFileSync(f, '"postgres" "postgres"\n');
    assert.equal(loadUserlist(f).get('postgres')!.password, 'postgres');
    writeFileSync(f, '"postgres" "postgres"\nbroken\n');
    assert.throws(() => loadUserlist(f), new RegExp(`${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2: expected`));
    assert.throws(() => loadUserlist(join(dir, 'missing.txt')), /cannot read users file .*missing\.txt/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
