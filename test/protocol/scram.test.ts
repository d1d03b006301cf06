import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, pbkdf2Sync } from 'node:crypto';
import {
  ScramClient,
  ScramServer,
  makeScramSecret,
  mockScramSecret,
  parseScramSecret,
  saslPrep,
  formatScramSecret,
  type ScramSecret,
} from '../../src/protocol/scram.js';

function secretFor(password: string, iterations = 4096): ScramSecret {
  const s = parseScramSecret(makeScramSecret(password, undefined, iterations));
  assert.ok(s);
  return s;
}

/** Runs a whole exchange; returns the server's verdict and whether the client accepted the server. */
function exchange(secret: ScramSecret, password: string): { ok: boolean; clientVerified: boolean } {
  const client = new ScramClient('alice', password);
  const server = new ScramServer(secret);
  const serverFirst = server.clientFirst(client.first());
  const r = server.clientFinal(client.final(serverFirst));
  return { ok: r.ok, clientVerified: r.serverFinal !== undefined && client.verify(r.serverFinal) };
}

test('RFC 7677 test vector: client messages and server signature match the RFC', () => {
  const client = new ScramClient('user', 'pencil', { nonce: 'rOprNGfwEbeRWgbNEkqO', sendUser: true });
  assert.equal(client.first(), 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
  const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
  assert.equal(
    client.final(serverFirst),
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  );
  assert.equal(client.verify('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='), true);
  assert.equal(client.verify('v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='), false, 'a wrong server signature is refused');
});

test('RFC 7677 test vector: the server side reproduces server-first and server-final', () => {
  const secret = parseScramSecret(makeScramSecret('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), 4096))!;
  const server = new ScramServer(secret, { nonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0' });
  assert.equal(server.clientFirst('n,,n=user,r=rOprNGfwEbeRWgbNEkqO'), 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096');
  const v = server.clientFinal('c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=');
  assert.equal(v.ok, true);
  assert.equal(v.serverFinal, 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
  // The ClientKey recovered from the proof is HMAC(SaltedPassword, "Client Key").
  const salted = pbkdf2Sync('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), 4096, 32, 'sha256');
  assert.deepEqual(v.clientKey, createHmac('sha256', salted).update('Client Key').digest());
});

test('client and server complete a round trip and authenticate each other', () => {
  const secret = secretFor('correct horse');
  assert.deepEqual(exchange(secret, 'correct horse'), { ok: true, clientVerified: true });
});

test('a wrong password fails, and yields no server signature', () => {
  const secret = secretFor('correct horse');
  assert.deepEqual(exchange(secret, 'correct horsE'), { ok: false, clientVerified: false });
  assert.deepEqual(exchange(secret, ''), { ok: false, clientVerified: false });
});

test('a client cannot be fooled by a server that does not know the secret', () => {
  const client = new ScramClient('alice', 'pw');
  const impostor = new ScramServer(secretFor('other'));
  const r = impostor.clientFinal(client.final(impostor.clientFirst(client.first())));
  assert.equal(r.ok, false);
  assert.equal(client.verify('v=' + Buffer.alloc(32).toString('base64')), false);
  assert.equal(client.verify('e=invalid-proof'), false);
  assert.equal(client.verify('garbage'), false);
});

test('gs2 header y,, is accepted and must be echoed in c=', () => {
  const secret = secretFor('pw');
  const server = new ScramServer(secret);
  const sf = server.clientFirst('y,,n=,r=abcdefghijkl');
  assert.match(sf, /^r=abcdefghijkl[A-Za-z0-9+/=]{24},s=[A-Za-z0-9+/=]+,i=4096$/);
  const nonce = sf.split(',')[0]!.slice(2);
  // A client that says y,, but then claims n,, (biws) is a downgrade attempt.
  assert.throws(() => server.clientFinal(`c=biws,r=${nonce},p=${Buffer.alloc(32).toString('base64')}`), /channel binding does not match/);
});

test('a proof computed over another c= value does not verify (no gs2 header swap)', () => {
  const password = 'pw';
  const secret = secretFor(password);
  const client = new ScramClient('u', password);
  const server = new ScramServer(secret);
  const first = client.first().replace(/^n,,/, 'y,,');
  const sf = server.clientFirst(first);
  // Reuse the client's maths on an n,, exchange, then rewrite: a proof covers c=, so it must fail.
  const cf = client.final(sf).replace('c=biws', `c=${Buffer.from('y,,').toString('base64')}`);
  assert.equal(server.clientFinal(cf).ok, false, 'a proof computed over another c= value does not verify');
});

test('channel binding p= is refused with a clear error', () => {
  const server = new ScramServer(secretFor('pw'));
  assert.throws(() => server.clientFirst('p=tls-server-end-point,,n=,r=abc'), /channel binding .*not supported/);
});

test('malformed messages throw clear errors, never crash', () => {
  const cases: [string, RegExp][] = [
    ['', /no GS2 header/],
    ['n', /no GS2 header/],
    ['x,,n=,r=abc', /invalid channel-binding flag/],
    ['n,a=bob,n=,r=abc', /authorization identity/],
    ['n,,r=abc', /lacks the user name/],
    ['n,,n=', /lacks the nonce/],
    ['n,,m=ext,n=,r=abc', /mandatory extension/],
    ['n,,n=,r=a,b', /malformed attribute/],
    ['n,,n=,r=', /malformed attribute|invalid characters/],
  ];
  for (const [msg, re] of cases) {
    const server = new ScramServer(secretFor('pw', 1));
    assert.throws(() => server.clientFirst(msg), re, `client-first ${JSON.stringify(msg)}`);
  }
  const finals: [string, RegExp][] = [
    ['', /empty/],
    ['r=x,p=y', /lacks channel binding/],
    ['c=biws,p=AAAA', /lacks the nonce/],
    ['c=biws,r=NONCE', /lacks the proof/],
    ['c=!!!,r=NONCE,p=AAAA', /not valid base64/],
    ['c=biws,r=wrong,p=' + Buffer.alloc(32).toString('base64'), /nonce mismatch/],
    ['c=biws,r=NONCE,p=AAAA', /proof is 3 bytes/],
  ];
  for (const [msg, re] of finals) {
    const server = new ScramServer(secretFor('pw', 1));
    const sf = server.clientFirst('n,,n=,r=clientnonce');
    const nonce = sf.split(',')[0]!.slice(2);
    assert.throws(() => server.clientFinal(msg.replace('NONCE', nonce)), re, `client-final ${JSON.stringify(msg)}`);
  }
  const server = new ScramServer(secretFor('pw', 1));
  assert.throws(() => server.clientFinal('c=biws,r=x,p=y'), /before client-first/);
  server.clientFirst('n,,n=,r=abc');
  assert.throws(() => server.clientFirst('n,,n=,r=abc'), /twice/);
});

test('client refuses bad server-first messages', () => {
  const mk = () => {
    const c = new ScramClient('u', 'pw', { nonce: 'cnonce' });
    c.first();
    return c;
  };
  assert.throws(() => mk().final('r=other123,s=AAAA,i=4096'), /does not extend/);
  assert.throws(() => mk().final('r=cnonce,s=AAAA,i=4096'), /does not extend/);
  assert.throws(() => mk().final('r=cnonceX,s=AAAA,i=0'), /iteration count/);
  assert.throws(() => mk().final('r=cnonceX,s=AAAA,i=-1'), /iteration count/);
  assert.throws(() => mk().final('r=cnonceX,s=,i=1'), /malformed attribute|empty salt/);
  assert.throws(() => mk().final('r=cnonceX,i=1,s=AAAA'), /malformed server-first/);
  assert.throws(() => mk().final('m=x,r=cnonceX,s=AAAA,i=1'), /extension/);
  assert.throws(() => new ScramClient('u', 'pw').final('r=a,s=AAAA,i=1'), /before first/);
});

test('parseScramSecret accepts PostgreSQL secrets and rejects anything else', () => {
  const text = makeScramSecret('pw', Buffer.from('0123456789abcdef'), 4096);
  const s = parseScramSecret(text);
  assert.ok(s);
  assert.equal(s.iterations, 4096);
  assert.equal(s.salt.toString(), '0123456789abcdef');
  assert.equal(s.storedKey.length, 32);
  assert.equal(s.serverKey.length, 32);
  assert.equal(formatScramSecret(s), text, 'format is the inverse of parse');
  assert.equal(parseScramSecret('md5' + '0'.repeat(32)), null);
  assert.equal(parseScramSecret('plain password'), null);
  assert.equal(parseScramSecret(text.replace('4096', '0')), null);
  assert.equal(parseScramSecret(text.replace('4096', 'x')), null);
  assert.equal(parseScramSecret(text + 'A'), null, 'bad base64 length');
  assert.equal(parseScramSecret(text.replace('SCRAM-SHA-256', 'SCRAM-SHA-1')), null);
  const [head, keys] = text.split('$').slice(1);
  assert.equal(parseScramSecret(`SCRAM-SHA-256$${head}$${keys!.split(':')[0]}:AAAA`), null, 'short ServerKey');
});

test('makeScramSecret is deterministic for a given salt and differs per salt', () => {
  const salt = Buffer.from('saltsaltsaltsalt');
  assert.equal(makeScramSecret('pw', salt, 4096), makeScramSecret('pw', salt, 4096));
  assert.notEqual(makeScramSecret('pw', salt, 4096), makeScramSecret('pw', salt, 4097));
  assert.notEqual(makeScramSecret('pw'), makeScramSecret('pw'), 'random salts');
  assert.throws(() => makeScramSecret('pw', salt, 0), /iterations/);
  assert.throws(() => makeScramSecret('pw', Buffer.alloc(0)), /salt/);
});

test('mock secrets make unknown users fail like wrong passwords, with a stable salt', () => {
  const a = mockScramSecret('ghost');
  const b = mockScramSecret('ghost');
  assert.deepEqual(a.salt, b.salt, 'same salt on every probe');
  assert.notDeepEqual(mockScramSecret('other').salt, a.salt);
  assert.equal(exchange(a, 'anything').ok, false);
});

test('SASLprep: ASCII untouched, non-ASCII spaces mapped, soft hyphen dropped, NFKC, prohibited refused', () => {
  assert.equal(saslPrep('I\u00ADX'), 'IX'); // RFC 4013 example: soft hyphen mapped to nothing
  assert.equal(saslPrep('user'), 'user');
  assert.equal(saslPrep('USER'), 'USER');
  assert.equal(saslPrep('\u00AA'), 'a'); // NFKC
  assert.equal(saslPrep('\u2168'), 'IX'); // NFKC
  assert.equal(saslPrep('a\u00A0b'), 'a b');
  assert.equal(saslPrep('\u0007é'), undefined); // control character: prohibited
  assert.equal(saslPrep('\u0627\u0031'), undefined); // bidi: RandAL must start and end the string
  assert.equal(saslPrep('\u0627\u0031\u0628'), '\u0627\u0031\u0628');
  assert.equal(saslPrep('tab\tonly ascii'), 'tab\tonly ascii', 'ASCII strings are never processed');
  // A refused password still works end to end: the raw password is used on both sides.
  assert.deepEqual(exchange(secretFor('\u0007é'), '\u0007é'), { ok: true, clientVerified: true });
  // A mapped one logs in with either spelling, as with PostgreSQL.
  assert.deepEqual(exchange(secretFor('I\u00ADX'), 'IX'), { ok: true, clientVerified: true });
});

test('pass-through: the ClientKey a client proved logs into a server holding the same secret, not another', () => {
  const secret = parseScramSecret(makeScramSecret('pw-123'))!;
  // A client logs into the proxy with the password; the proxy learns its ClientKey.
  const atProxy = new ScramServer(secret);
  const client = new ScramClient('u', 'pw-123');
  const fin = client.final(atProxy.clientFirst(client.first()));
  const verdict = atProxy.clientFinal(fin);
  assert.equal(verdict.ok, true);
  assert.ok(verdict.clientKey);
  // The proxy logs into a backend with the same secret, without the password, and verifies it.
  const backend = new ScramServer(secret);
  const proxyAsClient = new ScramClient('u', { secret, clientKey: verdict.clientKey! });
  const v2 = backend.clientFinal(proxyAsClient.final(backend.clientFirst(proxyAsClient.first())));
  assert.equal(v2.ok, true);
  assert.equal(proxyAsClient.verify(v2.serverFinal!), true);
  // A backend whose secret has another salt: refused before any proof is sent.
  const other = new ScramServer(parseScramSecret(makeScramSecret('pw-123'))!);
  const c3 = new ScramClient('u', { secret, clientKey: verdict.clientKey! });
  assert.throws(() => c3.final(other.clientFirst(c3.first())), /another salt or iteration count/);
  // A wrong ClientKey does not authenticate.
  const wrongKey = Buffer.from(verdict.clientKey!);
  wrongKey[0] ^= 1;
  const c4 = new ScramClient('u', { secret, clientKey: wrongKey });
  const b4 = new ScramServer(secret);
  assert.equal(b4.clientFinal(c4.final(b4.clientFirst(c4.first()))).ok, false);
});
