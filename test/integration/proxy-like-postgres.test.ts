// The proxy must behave like PostgreSQL for real drivers, on both forwarding paths (native
// and JavaScript). Each test here re-creates one defect that drivers' own test suites found
// (issue 10): it fails on a proxy with the defect and passes on PostgreSQL itself.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createCluster, type PgCluster, SUPERUSER, SUPERUSER_PASSWORD } from '../support/pg.js';
import { startProxy, backendKey, type ProxyFixture } from '../support/proxy.js';

/** The transaction status byte of every ReadyForQuery the client receives, as a string. */
function statuses(c: pg.Client): string[] {
  const seen: string[] = [];
  (c as unknown as { connection: { on(ev: string, f: (m: { status: string }) => void): void } }).connection.on('readyForQuery', (m) => seen.push(m.status));
  return seen;
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function pid(c: pg.Client): Promise<number> {
  return (await c.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
}

describe('behaves like PostgreSQL for real drivers', () => {
  let cluster: PgCluster;
  const direct = (): pg.ClientConfig => ({ host: cluster.primary.host, port: cluster.primary.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
  const proxies: ProxyFixture[] = [];
  async function proxy(p: Record<string, unknown>): Promise<ProxyFixture> {
    const fx = await startProxy(cluster, { proxy: p });
    proxies.push(fx);
    return fx;
  }

  before(async () => {
    cluster = await createCluster({ standbys: 1 });
    const admin = new pg.Client(direct());
    await admin.connect();
    await admin.query('CREATE TABLE seen (x int)');
    await admin.end();
  });
  after(async () => {
    for (const fx of proxies) await fx.stop();
    await cluster?.teardown();
  });

  describe('defect 1: no session sees another session’s transaction, settings or temporary objects', () => {
    for (const native of [true, false]) {
      for (const reset of ['', 'DISCARD ALL']) {
        it(`${native ? 'native' : 'JavaScript'} path, reset_query ${JSON.stringify(reset)}`, async () => {
          const fx = await proxy({ load_balance: false, native_forwarding: native, pool: { reset_query: reset } });
          const a = await fx.connect();
          const seenA = statuses(a);
          const pidA = backendKey(a).processID;
          await a.query("SET work_mem = '7MB'; CREATE TEMP TABLE mine (x int)");
          // The second answered request: native forwarding takes the session inside a transaction.
          await a.query('BEGIN');
          if (native) assert.equal(fx.proxy.stats().clients.native, 1, 'the session is forwarded natively');
          seenA.length = 0;
          await a.query('SHOW POOL_VERSION');
          assert.deepEqual(seenA, ['T'], 'the proxy answers inside the transaction with status T, as PostgreSQL would');
          // Back on JavaScript for a request, then forwarded natively again, still inside the transaction.
          await a.query('INSERT INTO seen VALUES (1)');
          if (native) assert.equal(fx.proxy.stats().clients.native, 1, 'the session is forwarded natively again');
          await a.end(); // leaves inside the transaction
          await until(() => {
            const p = fx.proxy.stats().pools[0]!;
            return p.inUse === 0 && p.idle === p.total;
          }, 'the pool to take the connection back');

          const b = await fx.connect();
          try {
            const seenB = statuses(b);
            assert.equal((await b.query<{ n: number }>('SELECT count(*)::int AS n FROM seen')).rows[0]!.n, 0, 'no uncommitted row of the last client');
            assert.equal((await b.query<{ w: string }>('SELECT current_setting($$work_mem$$) AS w')).rows[0]!.w, '4MB', 'no setting of the last client');
            assert.equal((await b.query<{ t: string | null }>("SELECT to_regclass('pg_temp.mine')::text AS t")).rows[0]!.t, null, 'no temporary table of the last client');
            assert.deepEqual([...new Set(seenB)], ['I'], 'outside any transaction');
            // With a reset query the pool resets the connection and keeps it (a ROLLBACK first);
            // without one it may only retire a connection the last session changed.
            if (reset !== '') assert.equal(await pid(b), pidA, 'the pooled connection was rolled back and reset, not thrown away');
          } finally {
            await b.end();
          }
        });
      }
    }
  });
});
