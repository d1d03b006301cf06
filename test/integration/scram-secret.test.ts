// makeScramSecret must produce exactly what PostgreSQL stores in pg_authid.rolpassword for
// the same password, salt and iterations; and ScramClient must log into a real server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createCluster } from '../support/pg.js';
import { makeScramSecret, parseScramSecret, ScramClient } from '../../src/protocol/scram.js';
import { md5Hash } from '../../src/protocol/md5.js';

const PASSWORDS = [
  'secret',
  'with spaces and \'quotes\' and "doubles"',
  'pässwörd', // non-ASCII: SASLprep (NFKC) applies
  'I\u00ADX', // soft hyphen: mapped to nothing by SASLprep
  'a\u00A0b', // no-break space: mapped to a space
  '\uFF21\uFF22', // fullwidth letters: NFKC folds them
  'ctl\u0007é', // prohibited: PostgreSQL falls back to the raw password
  '',
];

test('makeScramSecret matches PostgreSQL rolpassword for the same salt and iterations; md5Hash matches too', async () => {
  const cluster = await createCluster({ standbys: 0, settings: { password_encryption: 'scram-sha-256' } });
  try {
    await cluster.primary.sql('CREATE ROLE alice LOGIN');
    for (const [i, password] of PASSWORDS.entries()) {
      if (password === '') continue; // PostgreSQL refuses to store an empty password
      await cluster.primary.sql(`SET password_encryption = 'scram-sha-256'; ALTER USER alice PASSWORD ${pg.escapeLiteral(password)}`);
      const [row] = await cluster.primary.sql<{ rolpassword: string }>(`SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'`);
      const stored = parseScramSecret(row!.rolpassword);
      assert.ok(stored, `case ${i}: PostgreSQL stored a SCRAM secret: ${row!.rolpassword}`);
      assert.equal(makeScramSecret(password, stored.salt, stored.iterations), row!.rolpassword, `case ${i}: ${JSON.stringify(password)}`);

      // The client side logs into the real server with the same password.
      const client = new pg.Client({ ...cluster.primary.clientConfig(), user: 'alice', password });
      await client.connect();
      await client.end();

      await cluster.primary.sql(`SET password_encryption = 'md5'; ALTER USER alice PASSWORD ${pg.escapeLiteral(password)}`);
      const [md5row] = await cluster.primary.sql<{ rolpassword: string }>(`SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'`);
      assert.equal(md5Hash('alice', password), md5row!.rolpassword, `md5 case ${i}`);
    }
  } finally {
    await cluster.teardown();
  }
});

test('ScramClient completes SASL with a real PostgreSQL over the wire', async () => {
  const cluster = await createCluster({ standbys: 0 });
  try {
    // Drive the exchange by hand over a raw socket: startup, SASL, SASLContinue, SASLFinal.
    const { connect } = await import('node:net');
    const sock = connect(cluster.primary.port, '127.0.0.1');
    await new Promise<void>((res, rej) => sock.once('connect', res).once('error', rej));
    let buf = Buffer.alloc(0);
    const waiters: (() => void)[] = [];
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      waiters.splice(0).forEach((w) => w());
    });
    const readMsg = async (): Promise<{ type: string; body: Buffer }> => {
      for (;;) {
        if (buf.length >= 5) {
          const len = buf.readInt32BE(1);
          if (buf.length >= 1 + len) {
            const msg = { type: String.fromCharCode(buf[0]!), body: buf.subarray(5, 1 + len) };
            buf = buf.subarray(1 + len);
            return msg;
          }
        }
        await new Promise<void>((r) => waiters.push(r));
      }
    };
    const params = Buffer.from('user\0postgres\0database\0postgres\0\0');
    const startup = Buffer.alloc(8);
    startup.writeInt32BE(8 + params.length, 0);
    startup.writeInt32BE(196608, 4);
    sock.write(Buffer.concat([startup, params]));
    const sendP = (payload: Buffer) => {
      const h = Buffer.alloc(5);
      h[0] = 'p'.charCodeAt(0);
      h.writeInt32BE(4 + payload.length, 1);
      sock.write(Buffer.concat([h, payload]));
    };
    const client = new ScramClient('postgres', 'postgres');
    let m = await readMsg();
    assert.equal(m.type, 'R');
    assert.equal(m.body.readInt32BE(0), 10, 'AuthenticationSASL');
    assert.ok(m.body.subarray(4).toString().includes('SCRAM-SHA-256'));
    const first = Buffer.from(client.first());
    const len = Buffer.alloc(4);
    len.writeInt32BE(first.length);
    sendP(Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), len, first]));
    m = await readMsg();
    assert.equal(m.body.readInt32BE(0), 11, 'AuthenticationSASLContinue');
    sendP(Buffer.from(client.final(m.body.subarray(4).toString())));
    m = await readMsg();
    assert.equal(m.type, 'R', `expected SASLFinal, got ${m.type}: ${m.body.toString()}`);
    assert.equal(m.body.readInt32BE(0), 12, 'AuthenticationSASLFinal');
    assert.equal(client.verify(m.body.subarray(4).toString()), true, 'server signature verifies');
    m = await readMsg();
    assert.equal(m.body.readInt32BE(0), 0, 'AuthenticationOk');
    sock.destroy();
  } finally {
    await cluster.teardown();
  }
});
