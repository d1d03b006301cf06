// Client authentication at the proxy (scram-sha-256, md5) from a users file, and TLS:
// right passwords get in with psql and pg, wrong ones and unknown users get PostgreSQL's own
// 28P01 error and nothing more.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { createCluster, type PgCluster, SUPERUSER, SUPERUSER_PASSWORD } from '../support/pg.js';
import { startProxy, psql } from '../support/proxy.js';
import { makeScramSecret } from '../../src/protocol/scram.js';

async function pgError(cfg: pg.ClientConfig): Promise<{ code?: string; message: string }> {
  const c = new pg.Client(cfg);
  try {
    await c.connect();
    await c.end();
    return { message: 'connected' };
  } catch (err) {
    return err as { code?: string; message: string };
  }
}

describe('proxy client authentication', () => {
  let cluster: PgCluster;

  before(async () => {
    cluster = await createCluster({ standbys: 1 });
    await cluster.primary.sql("CREATE ROLE app LOGIN PASSWORD 'app-pw'");
    await cluster.waitReplicated();
  });
  after(async () => {
    await cluster?.teardown();
  });

  it('scram-sha-256: right password in (pg and psql), wrong password and unknown user get 28P01', async () => {
    const fx = await startProxy(cluster, {
      auth: 'scram-sha-256',
      users: [`"${SUPERUSER}" "${SUPERUSER_PASSWORD}"`, `"app" "app-pw"`, `"secretonly" "${makeScramSecret('s3cret')}"`],
    });
    try {
      const c = await fx.connect({ user: 'app', password: 'app-pw' });
      assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'app');
      await c.end();
      assert.equal((await psql(fx, 'SELECT 7')).trim(), '7');
      const wrong = await pgError(fx.client({ user: 'app', password: 'nope' }));
      assert.equal(wrong.code, '28P01');
      assert.equal(wrong.message, 'password authentication failed for user "app"');
      const unknown = await pgError(fx.client({ user: 'ghost', password: 'x' }));
      assert.equal(unknown.code, '28P01');
      assert.equal(unknown.message, 'password authentication failed for user "ghost"');
      await assert.rejects(psql(fx, 'SELECT 1', { PGPASSWORD: 'bad' }), /password authentication failed for user "postgres"/);
      // A SCRAM secret authenticates the client, but cannot log into a SCRAM backend: the
      // client gets a clear error, not a hang.
      const so = await pgError(fx.client({ user: 'secretonly', password: 's3cret' }));
      assert.notEqual(so.message, 'connected');
      assert.doesNotMatch(so.message, /password authentication failed/);
    } finally {
      await fx.stop();
    }
  });

  it('SCRAM pass-through: a users file holding only the pg_authid secret logs clients into primary and standby', async () => {
    await cluster.primary.sql("CREATE ROLE vault LOGIN PASSWORD 'vault-pw'");
    await cluster.primary.sql('CREATE TABLE vault_t (x int); GRANT ALL ON vault_t TO vault');
    await cluster.waitReplicated();
    const [row] = await cluster.primary.sql<{ s: string }>("SELECT rolpassword AS s FROM pg_authid WHERE rolname = 'vault'");
    assert.match(row!.s, /^SCRAM-SHA-256\$/);
    const fx = await startProxy(cluster, {
      auth: 'scram-sha-256',
      users: [`"vault" "${row!.s}"`, `"other" "${makeScramSecret('other-pw')}"`],
    });
    try {
      const c = await fx.connect({ user: 'vault', password: 'vault-pw' });
      try {
        // The read first: after this session's write, causal reads would keep it on the primary.
        const r = await c.query<{ p: number; u: string }>('SELECT current_setting($$port$$)::int AS p, current_user AS u');
        assert.deepEqual(r.rows[0], { p: cluster.standbys[0]!.port, u: 'vault' }, 'logged into the standby with the learned key');
        const w = await c.query<{ p: number }>('INSERT INTO vault_t VALUES (1) RETURNING current_setting($$port$$)::int AS p');
        assert.equal(w.rows[0]!.p, cluster.primary.port, 'and into the primary');
      } finally {
        await c.end();
      }
      // A secret that is not the backend's (another salt) cannot be passed through: a clear error.
      await cluster.primary.sql("CREATE ROLE other LOGIN PASSWORD 'other-pw'");
      const e = await pgError(fx.client({ user: 'other', password: 'other-pw' }));
      assert.match(e.message, /another salt or iteration count/);
    } finally {
      await fx.stop();
    }
  });

  it('md5: right password in, wrong password 28P01', async () => {
    const fx = await startProxy(cluster, { auth: 'md5', users: [`"${SUPERUSER}" "${SUPERUSER_PASSWORD}"`, `"app" "app-pw"`] });
    try {
      const c = await fx.connect({ user: 'app', password: 'app-pw' });
      assert.equal((await c.query('SELECT 1 AS x')).rows[0].x, 1);
      await c.end();
      assert.equal((await psql(fx, 'SELECT 8')).trim(), '8');
      const wrong = await pgError(fx.client({ user: 'app', password: 'nope' }));
      assert.equal(wrong.code, '28P01');
      assert.equal(wrong.message, 'password authentication failed for user "app"');
    } finally {
      await fx.stop();
    }
  });

  it('TLS when proxy.tls is configured; N otherwise', async (t) => {
    if (!existsSync('/usr/bin/openssl') && spawnSync('openssl', ['version']).status !== 0) {
      t.skip('openssl not installed');
      return;
    }
    const plain = await startProxy(cluster);
    try {
      await assert.rejects(psql(plain, 'SELECT 1', { PGSSLMODE: 'require' }), /server does not support SSL/);
      assert.equal((await psql(plain, 'SELECT 1', { PGSSLMODE: 'prefer' })).trim(), '1');
    } finally {
      await plain.stop();
    }
    const dir = cluster.dir;
    const cert = join(dir, 'proxy.crt');
    const key = join(dir, 'proxy.key');
    const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const fx = await startProxy(cluster, { auth: 'scram-sha-256', proxy: { tls: { cert_file: cert, key_file: key } } });
    try {
      const out = await psql(fx, 'SELECT 1', { PGSSLMODE: 'require' });
      assert.equal(out.trim(), '1');
      const c = await fx.connect({ ssl: { rejectUnauthorized: false } });
      const st = await c.query<{ p: number }>("SELECT current_setting($$port$$)::int AS p");
      assert.ok(st.rows[0]!.p > 0);
      assert.ok((c as unknown as { connection: { stream: { encrypted?: boolean } } }).connection.stream.encrypted, 'pg connection is encrypted');
      await c.end();
      const wrong = await pgError(fx.client({ ssl: { rejectUnauthorized: false }, password: 'bad' }));
      assert.equal(wrong.code, '28P01');
    } finally {
      await fx.stop();
    }
  });
});
