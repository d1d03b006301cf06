// The proxy in front of a real primary and two standbys, with real clients (pg, psql,
// pgbench): reads land on a standby, writes on the primary, transactions that write stay on
// the primary, extended protocol with named and unnamed statements, SET on both legs.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createCluster, type PgCluster } from '../support/pg.js';
import { startProxy, psql, pgbench, serverPort, type ProxyFixture } from '../support/proxy.js';
import { parseLsn } from '../../src/backends/lsn.js';
import { monotonicMs } from '../../src/backends/mono-clock.js';

describe('proxy routing (trust to the proxy, SCRAM to the backends)', () => {
  let cluster: PgCluster;
  let fx: ProxyFixture;
  let primaryPort: number;
  let standbyPorts: number[];

  before(async () => {
    cluster = await createCluster({ standbys: 2 });
    primaryPort = cluster.primary.port;
    standbyPorts = cluster.standbys.map((s) => s.port);
    await cluster.primary.sql('CREATE TABLE t (id int primary key, v text)');
    await cluster.primary.sql("CREATE SEQUENCE s");
    await cluster.waitReplicated();
    fx = await startProxy(cluster);
  });

  after(async () => {
    await fx?.stop();
    await cluster?.teardown();
  });

  it('sends reads to the session standby and writes to the primary', async () => {
    const c = await fx.connect();
    try {
      const readPort = await serverPort(c);
      assert.ok(standbyPorts.includes(readPort), `read went to ${readPort}, expected a standby ${standbyPorts}`);
      // The same standby for the whole session.
      for (let i = 0; i < 5; i++) assert.equal(await serverPort(c), readPort);
      const w = await c.query<{ p: number }>("INSERT INTO t VALUES (1, 'a') RETURNING current_setting($$port$$)::int AS p");
      assert.equal(w.rows[0]!.p, primaryPort);
      const fu = await c.query<{ p: number }>('SELECT current_setting($$port$$)::int AS p FROM t FOR UPDATE');
      assert.equal(fu.rows[0]!.p, primaryPort);
      const nv = await c.query<{ p: number }>("SELECT nextval('s'), current_setting($$port$$)::int AS p");
      assert.equal(nv.rows[0]!.p, primaryPort);
      const lo = await c.query<{ p: number }>('SELECT lo_create(0) > 0 AS made, current_setting($$port$$)::int AS p');
      assert.equal(lo.rows[0]!.p, primaryPort, 'large objects go to the primary');
      const multi = await c.query('SELECT 1; SELECT current_setting($$port$$)::int AS p');
      assert.equal((multi as unknown as pg.QueryResult[])[1]!.rows[0].p, primaryPort);
    } finally {
      await c.end();
    }
  });

  it('standard_conforming_strings off: a backslash-escaped quote does not hide a write from the router', async () => {
    const c = await fx.connect();
    try {
      // The row is made directly: a write through this session would keep its reads on the
      // primary for a while (causal reads) and hide what this test looks at.
      await cluster.primary.sql("INSERT INTO t VALUES (900, 'scs')");
      await cluster.waitReplicated();
      await c.query('SET standard_conforming_strings = off');
      // With the setting off, '\'' is one quote character and the DELETE is a statement of its
      // own; read with the default rules, the DELETE would sit inside an unterminated string and
      // the whole text would go to a standby as a read, where the DELETE fails (read-only).
      await c.query("SELECT '\\''; DELETE FROM t WHERE id = 900");
      assert.equal((await cluster.primary.sql('SELECT count(*) AS n FROM t WHERE id = 900'))[0]?.n, '0', 'the DELETE ran on the primary');
    } finally {
      await c.end();
    }
  });

  it('keeps a transaction on the primary after its first write, and reads see the write', async () => {
    const c = await fx.connect();
    try {
      await c.query('BEGIN');
      assert.ok(standbyPorts.includes(await serverPort(c)), 'read before the write may use the standby');
      await c.query("INSERT INTO t VALUES (2, 'b')");
      const r = await c.query<{ v: string; p: number }>('SELECT v, current_setting($$port$$)::int AS p FROM t WHERE id = 2');
      assert.equal(r.rows[0]!.v, 'b');
      assert.equal(r.rows[0]!.p, primaryPort);
      await c.query('COMMIT');
      // BEGIN READ WRITE sends everything to the primary from the start.
      await c.query('BEGIN READ WRITE');
      assert.equal(await serverPort(c), primaryPort);
      await c.query('ROLLBACK');
      // Causal reads: after a write, reads stay on the primary until a primary WAL sample
      // taken after the commit, and a standby sample at or past it, say the standby has it
      // (this fixture runs no replication monitor: the samples are set here, as it would).
      assert.equal(await serverPort(c), primaryPort, 'after a write, reads wait on the primary for the standby');
      const lsn = await cluster.primary.currentLsn();
      await cluster.waitReplicated();
      fx.registry.update(0, { insertLsn: parseLsn(lsn) }, 'test: primary sample');
      fx.registry.sampled(0, monotonicMs());
      for (let i = 1; i < fx.registry.size; i++) {
        fx.registry.update(i, { lsn: parseLsn(lsn) }, 'test: standby sample');
        fx.registry.sampled(i, monotonicMs());
      }
      assert.ok(standbyPorts.includes(await serverPort(c)), 'once the standby has the commit, reads use the standby again');
    } finally {
      await c.end();
    }
  });

  it('routes the extended protocol: unnamed and named statements, re-Parse on the primary', async () => {
    const c = await fx.connect();
    try {
      const r1 = await c.query<{ p: number; x: number }>('SELECT current_setting($$port$$)::int AS p, $1::int AS x', [7]);
      assert.ok(standbyPorts.includes(r1.rows[0]!.p));
      assert.equal(r1.rows[0]!.x, 7);
      const named = { name: 'rd', text: 'SELECT current_setting($$port$$)::int AS p, $1::int + 1 AS x' };
      const r2 = await c.query<{ p: number; x: number }>({ ...named, values: [1] });
      assert.ok(standbyPorts.includes(r2.rows[0]!.p));
      assert.equal(r2.rows[0]!.x, 2);
      // In a transaction after a write, the named read statement must run on the primary:
      // the proxy re-Parses it there.
      await c.query('BEGIN');
      await c.query({ name: 'wr', text: 'INSERT INTO t VALUES ($1, $2)', values: [3, 'c'] });
      const r3 = await c.query<{ p: number; x: number }>({ ...named, values: [2] });
      assert.equal(r3.rows[0]!.p, primaryPort);
      assert.equal(r3.rows[0]!.x, 3);
      await c.query('COMMIT');
      const r4 = await c.query<{ p: number; x: number }>({ ...named, values: [3] });
      assert.equal(r4.rows[0]!.x, 4);
      const w = await c.query<{ p: number }>({ name: 'wr2', text: 'UPDATE t SET v = $1 WHERE id = 3 RETURNING current_setting($$port$$)::int AS p', values: ['cc'] });
      assert.equal(w.rows[0]!.p, primaryPort);
    } finally {
      await c.end();
    }
  });

  it('sends SET to both legs and reports server errors without breaking the session', async () => {
    const c = await fx.connect();
    try {
      await c.query("SET application_name = 'routing-test'");
      const a = await c.query<{ a: string; p: number }>("SELECT current_setting('application_name') AS a, current_setting($$port$$)::int AS p");
      assert.ok(standbyPorts.includes(a.rows[0]!.p));
      assert.equal(a.rows[0]!.a, 'routing-test');
      // Through the extended protocol too (as JDBC and other drivers send SET): both legs.
      await c.query({ text: "SET application_name = 'extended-set'", queryMode: 'extended' } as pg.QueryConfig);
      await c.query({ name: 'named-set', text: "SET search_path = pg_catalog, public" });
      const e = await c.query<{ a: string; sp: string; p: number }>({
        text: "SELECT current_setting('application_name') AS a, current_setting('search_path') AS sp, current_setting($$port$$)::int AS p",
        queryMode: 'extended',
      } as pg.QueryConfig);
      assert.ok(standbyPorts.includes(e.rows[0]!.p));
      assert.equal(e.rows[0]!.a, 'extended-set');
      assert.equal(e.rows[0]!.sp, 'pg_catalog, public');
      await c.query({ name: 'named-set', text: "SET search_path = pg_catalog, public" });
      await assert.rejects(c.query('SELECT * FROM no_such_table'), /does not exist/);
      await assert.rejects(c.query('SELECT $1::int', ['x']), /invalid input syntax/);
      assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
    } finally {
      await c.end();
    }
  });

  it('serves psql and pgbench (init, simple, extended, prepared)', async () => {
    assert.equal((await psql(fx, 'SELECT 40 + 2')).trim(), '42');
    await pgbench(fx, ['-i', '-s', '1', '-q']);
    for (const mode of ['simple', 'extended', 'prepared']) {
      const out = await pgbench(fx, ['-n', '-S', '-M', mode, '-c', '4', '-j', '2', '-T', '2']);
      assert.match(out, /number of failed transactions: 0/, `pgbench -M ${mode}: ${out}`);
    }
    const out = await pgbench(fx, ['-n', '-M', 'extended', '-c', '4', '-j', '2', '-t', '50']);
    assert.match(out, /number of transactions actually processed: 200\/200/, out);
  });

  it('answers SHOW POOL_NODES and SHOW POOL_VERSION', async () => {
    const c = await fx.connect();
    try {
      const r = await c.query('SHOW POOL_NODES');
      assert.equal(r.rows.length, 3);
      assert.ok(r.fields.some((f) => f.name === 'select_cnt'));
      assert.ok(r.fields.some((f) => f.name === 'load_balance_node'));
      const v = await c.query('SHOW POOL_VERSION');
      assert.equal(v.rows.length, 1);
      // Any case and spacing, as PostgreSQL's own SHOW takes it.
      const odd = await c.query(' \n show\tPool_Version ;');
      assert.deepEqual(odd.rows, v.rows);
      // Not SHOW POOL_…: the server answers (and knows no such setting, or shows its own).
      await assert.rejects(c.query('SHOW POOL'), /unrecognized configuration parameter "pool"/);
      assert.equal((await c.query<{ s: string }>("SELECT 'show pool_nodes' AS s")).rows[0]!.s, 'show pool_nodes');
    } finally {
      await c.end();
    }
  });

  it('reuses pooled connections without leaking session state between clients', async () => {
    const fx2 = await startProxy(cluster, { proxy: { load_balance: false } });
    const session = async (extra: Partial<pg.ClientConfig>, sql: string[]) => {
      const c = await fx2.connect(extra);
      try {
        const out: Record<string, unknown>[] = [];
        for (const q of sql) out.push(...(await c.query(q)).rows);
        return out;
      } finally {
        await c.end();
        await idle();
      }
    };
    // pg's end() does not wait for the proxy to see the Terminate: wait until it has.
    const idle = async () => {
      const settled = () => fx2.proxy.stats().pools[0]!.idle === fx2.proxy.stats().pools[0]!.total;
      for (let i = 0; i < 100 && !settled(); i++) await new Promise((r) => setTimeout(r, 10));
    };
    const state = "SELECT pg_backend_pid() AS pid, current_setting('search_path') AS sp, current_setting('application_name') AS app, (SELECT count(*) FROM pg_prepared_statements)::int AS prep";
    try {
      const [a] = await session({ application_name: 'first' }, [state]);
      assert.equal(a!.app, 'first');
      const [b] = await session({}, [state]);
      assert.equal(b!.pid, a!.pid, 'the pooled connection was reused');
      assert.equal(b!.app, '', 'application_name from the previous client is gone');
      await session({}, ['SET search_path = pg_catalog', "SELECT set_config('application_name', 'sneaky', false)"]);
      const c = await fx2.connect();
      await c.query({ name: 'kept', text: 'SELECT 1' });
      await c.end();
      await idle();
      const [d] = await session({}, [state]);
      assert.equal(d!.pid, a!.pid);
      assert.equal(d!.sp, '"$user", public');
      assert.equal(d!.app, '');
      assert.equal(d!.prep, 0, 'named statements of earlier clients are gone');
    } finally {
      await fx2.stop();
    }
  });

  it('routes everything to the primary when load balancing is off', async () => {
    const fx2 = await startProxy(cluster, { proxy: { load_balance: false } });
    try {
      const c = await fx2.connect();
      try {
        assert.equal(await serverPort(c), primaryPort);
      } finally {
        await c.end();
      }
    } finally {
      await fx2.stop();
    }
  });
});
