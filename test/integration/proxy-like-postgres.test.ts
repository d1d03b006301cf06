// The proxy must behave like PostgreSQL for real drivers, on both forwarding paths (native
// and JavaScript). Each test here re-creates one defect that drivers' own test suites found
// (issue 10): it fails on a proxy with the defect and passes on PostgreSQL itself.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import pg from 'pg';
import { pino } from 'pino';
import * as codec from '../../src/protocol/codec.js';
import { Router } from '../../src/proxy/router.js';
import type { Logger } from '../../src/log.js';
import { createCluster, type PgCluster, SUPERUSER, SUPERUSER_PASSWORD } from '../support/pg.js';
import { startProxy, backendKey, until, type ProxyFixture } from '../support/proxy.js';

/** The transaction status byte of every ReadyForQuery the client receives, as a string. */
function statuses(c: pg.Client): string[] {
  const seen: string[] = [];
  (c as unknown as { connection: { on(ev: string, f: (m: { status: string }) => void): void } }).connection.on('readyForQuery', (m) => seen.push(m.status));
  return seen;
}

interface Msg {
  type: string;
  body: Buffer;
}

/** A client speaking raw protocol bytes: every message the server sends is kept, in order. */
class Raw {
  readonly sock: net.Socket;
  readonly msgs: Msg[] = [];
  bytes = 0;
  private buf = Buffer.alloc(0);
  readonly closed: Promise<void>;

  constructor(port: number) {
    this.sock = net.connect({ host: '127.0.0.1', port });
    this.sock.on('error', () => {});
    this.closed = new Promise((r) => this.sock.once('close', () => r()));
    this.sock.on('data', (d: Buffer) => {
      this.bytes += d.length;
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1);
        if (this.buf.length < len + 1) break;
        this.msgs.push({ type: String.fromCharCode(this.buf[0]!), body: this.buf.subarray(5, len + 1) });
        this.buf = this.buf.subarray(len + 1);
      }
    });
  }

  static async open(port: number): Promise<Raw> {
    const r = new Raw(port);
    await once(r.sock, 'connect');
    return r;
  }

  /** Starts a session as the superuser (trust) and waits for ReadyForQuery. */
  static async login(port: number): Promise<Raw> {
    const r = await Raw.open(port);
    r.sock.write(codec.startupMessage({ user: SUPERUSER, database: 'postgres' }));
    await r.waitFor('Z');
    return r;
  }

  /** Waits for the n-th message of `type` counted from the start (default: one more than now). */
  async waitFor(type: string, n = this.count(type) + 1, ms = 5000): Promise<void> {
    await until(() => this.count(type) >= n || this.sock.destroyed, `message ${type}`, ms);
    if (this.count(type) < n) throw new Error(`connection closed before message ${type}`);
  }

  count(type: string): number {
    return this.msgs.filter((m) => m.type === type).length;
  }

  async query(sql: string): Promise<void> {
    const n = this.count('Z') + 1;
    this.sock.write(codec.query(sql));
    await this.waitFor('Z', n);
  }

  /** The first text column of the last DataRow. */
  lastValue(): string {
    const d = this.msgs.filter((m) => m.type === 'D').at(-1)!.body;
    return d.toString('utf8', 6, 6 + d.readInt32BE(2));
  }
}

/** A logger that keeps what is logged at warn level and above. */
function capturingLogger(): { logger: Logger; errors: () => string[] } {
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) });
  return { logger, errors: () => lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50) };
}

/** The port of the server that answers a plain read. */
async function readPort(c: pg.Client): Promise<number> {
  return (await c.query<{ p: number }>('SELECT current_setting($$port$$)::int AS p')).rows[0]!.p;
}

async function pid(c: pg.Client): Promise<number> {
  return (await c.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
}

describe('behaves like PostgreSQL for real drivers', () => {
  let cluster: PgCluster;
  const direct = (): pg.ClientConfig => ({ host: cluster.primary.host, port: cluster.primary.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
  const proxies: ProxyFixture[] = [];
  async function proxy(p: Record<string, unknown>, logger?: Logger): Promise<ProxyFixture> {
    const fx = await startProxy(cluster, { proxy: p, ...(logger ? { logger } : {}) });
    proxies.push(fx);
    return fx;
  }

  before(async () => {
    cluster = await createCluster({ standbys: 1, settings: { max_prepared_transactions: 10 } });
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

  describe('defect 2: Terminate before the startup packet closes the connection silently', () => {
    for (const target of ['PostgreSQL', 'proxy']) {
      it(target, async () => {
        const port = target === 'proxy' ? (await proxy({})).port : cluster.primary.port;
        const r = await Raw.open(port);
        r.sock.write(codec.terminate());
        await r.closed;
        assert.equal(r.bytes, 0, 'no answer, no error: the connection just closes');
      });
    }
  });

  describe('defect 3: a backend that ends the session sends the one error the client sees', () => {
    for (const [name, p] of [
      ['proxy, native path', { load_balance: false }],
      ['proxy, JavaScript path', { load_balance: false, native_forwarding: false }],
      ['proxy, load-balanced', { load_balance: true }],
    ] as const) {
      it(name, async () => {
        const fx = await proxy(p);
        const r = await Raw.login(fx.port);
        await r.query('SELECT 1');
        await r.query('SELECT pg_backend_pid()');
        if (name.includes('native')) assert.equal(fx.proxy.stats().clients.native, 1, 'forwarded natively');
        const backendPid = Number(r.lastValue());
        const admin = new pg.Client(direct());
        await admin.connect();
        try {
          await admin.query('SELECT pg_terminate_backend($1)', [backendPid]);
        } finally {
          await admin.end();
        }
        await r.closed;
        const errors = r.msgs.filter((m) => m.type === 'E').map((m) => codec.parseErrorFields(m.body));
        assert.deepEqual(errors.map((e) => e.C), ['57P01'], 'one FATAL, the backend’s');
      });
    }
  });

  describe('defect 7: nothing after Terminate is processed', () => {
    for (const native of [true, false]) {
      it(`${native ? 'native' : 'JavaScript'} path`, async () => {
        const log = capturingLogger();
        const fx = await proxy({ load_balance: false, native_forwarding: native }, log.logger);
        const r = await Raw.login(fx.port);
        await r.query('SELECT 1');
        await r.query('SELECT 2');
        if (native) assert.equal(fx.proxy.stats().clients.native, 1);
        const bytes = r.bytes;
        // Terminate, then an extended-protocol batch, in one write.
        r.sock.write(Buffer.concat([codec.terminate(), Buffer.from('P\0\0\0\x10\0SELECT 3\0\0\0'), codec.sync()]));
        await r.closed;
        assert.equal(r.bytes, bytes, 'no answer after Terminate');
        await new Promise((res) => setTimeout(res, 50));
        assert.deepEqual(log.errors(), [], 'nothing logged at error level');
      });
    }
  });

  describe('with load balancing (reads on the standby)', () => {
    it('defect 5: reads of the session’s own server state see the primary, where that state lives', async () => {
      const fx = await proxy({ load_balance: true });
      const c = await fx.connect();
      try {
        assert.notEqual(await readPort(c), cluster.primary.port, 'plain reads go to the standby');
        await c.query('BEGIN');
        await c.query('DECLARE cur CURSOR FOR SELECT 1');
        assert.deepEqual((await c.query('SELECT name FROM pg_cursors')).rows, [{ name: 'cur' }], 'the cursor just declared');
        await c.query('CLOSE cur');
        await c.query('COMMIT');
        await c.query('PREPARE ps AS SELECT 1');
        assert.deepEqual((await c.query('SELECT name FROM pg_prepared_statements')).rows, [{ name: 'ps' }]);
        await c.query('DEALLOCATE ps');
        const me = backendKey(c).processID;
        assert.equal((await c.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [me])).rows[0]!.n, 1, 'the session’s own backend');
        assert.equal((await c.query<{ p: number }>('SELECT inet_server_port() AS p')).rows[0]!.p, cluster.primary.port);
        await c.query('BEGIN');
        await c.query('INSERT INTO seen VALUES (5)');
        assert.notEqual((await c.query<{ x: string | null }>('SELECT txid_current_if_assigned()::text AS x')).rows[0]!.x, null, 'the transaction has an xid');
        await c.query('ROLLBACK');
      } finally {
        await c.end();
      }
    });

    it('defect 6: two-phase commit ends the transaction on both legs', async () => {
      const fx = await proxy({ load_balance: true });
      const c = await fx.connect();
      try {
        await c.query('BEGIN');
        await c.query('INSERT INTO seen VALUES (6)');
        await c.query("PREPARE TRANSACTION 'like_pg_2pc'");
        // A read on the standby runs in a transaction of its own, not in one left open.
        assert.equal((await c.query<{ fresh: boolean }>('SELECT now() = statement_timestamp() AS fresh')).rows[0]!.fresh, true, 'no transaction left open on the standby');
        // DISCARD ALL goes to both legs: it would fail inside a transaction block.
        await c.query('DISCARD ALL');
        assert.deepEqual((await c.query("SELECT gid FROM pg_prepared_xacts WHERE gid = 'like_pg_2pc'")).rows, [{ gid: 'like_pg_2pc' }]);
        await c.query("COMMIT PREPARED 'like_pg_2pc'");
        // The extended protocol, too.
        const ext = (text: string, values: unknown[] = []) => c.query({ text, values, queryMode: 'extended' } as pg.QueryConfig);
        await ext('BEGIN');
        await ext('DELETE FROM seen WHERE x = $1', [6]);
        await ext("PREPARE TRANSACTION 'like_pg_2pc_ext'");
        await new Promise((r) => setTimeout(r, 20));
        // (In the extended protocol statement_timestamp() moves at Execute: compare with the clock.)
        const t0 = new Date();
        assert.equal((await ext('SELECT now() >= $1::timestamptz AS fresh', [t0])).rows[0]!.fresh, true, 'no transaction left open on the standby');
        await ext('DISCARD ALL');
        await c.query("ROLLBACK PREPARED 'like_pg_2pc_ext'");
        assert.equal((await c.query<{ n: number }>('SELECT count(*)::int AS n FROM seen WHERE x = 6')).rows[0]!.n, 1);
      } finally {
        await c.end();
      }
    });
  });

  it('defect 4: a pooled connection PostgreSQL ended while idle is never handed to a session', async () => {
    const fx = await proxy({ load_balance: false });
    const a = await fx.connect();
    const idlePid = await pid(a);
    await a.end();
    await until(() => fx.proxy.stats().pools[0]!.idle === 1, 'the connection to be pooled');
    const admin = new pg.Client(direct());
    await admin.connect();
    try {
      const r = await Raw.open(fx.port);
      await new Promise((res) => setTimeout(res, 50)); // the proxy accepts the connection
      // PostgreSQL ends the idle connection (FATAL, then close) while the proxy is busy; the
      // client's startup packet is already waiting when it looks again.
      const terminated = admin.query('SELECT pg_terminate_backend($1)', [idlePid]);
      r.sock.write(codec.startupMessage({ user: SUPERUSER, database: 'postgres' }));
      const deadline = Date.now() + 300;
      while (Date.now() < deadline); // (blocks this process, the proxy's too, on purpose)
      await terminated;
      await r.waitFor('Z');
      await r.query('SELECT pg_backend_pid()');
      assert.deepEqual(r.msgs.filter((m) => m.type === 'E').map((m) => codec.parseErrorFields(m.body).M), [], 'no error');
      assert.notEqual(Number(r.lastValue()), idlePid, 'a fresh connection');
      r.sock.end(codec.terminate());
    } finally {
      await admin.end();
    }
  });

  it('select_cnt counts what the router counts, on the native and the JavaScript path alike', async () => {
    const simple = [
      'SELECT 1', 'select abalance from t where aid = 7', '', 'SHOW work_mem', 'VALUES (1)', 'TABLE seen', '(SELECT 1)', 'SELECT count(*) FROM seen',
      "SELECT nextval('like_pg_seq')", 'SELECT 1 FROM seen FOR UPDATE', 'SELECT pg_backend_pid()', 'SELECT * FROM pg_locks', 'SELECT 1; SELECT 2',
      'WITH x AS (SELECT 1) SELECT * FROM x', 'EXPLAIN SELECT 1', 'INSERT INTO seen VALUES (0)', 'BEGIN', 'COMMIT', '/* c */ SELECT 1', 'SELECT 1 -- for update',
      // Calls: harmless ones, and ones that make a read more however they are written.
      'SELECT abalance FROM t WHERE aid IN (1, 2)', 'SELECT coalesce(max(aid), 0) FROM t', 'SELECT now(), upper($$nextval($$)', 'SELECT x FROM (SELECT 1 AS x) s',
      "SELECT nextval ('like_pg_seq')", `SELECT "nextval"('like_pg_seq')`, "SELECT nextval/* c */('like_pg_seq')", "SELECT nextval -- c\n('like_pg_seq')",
      "SELECT NextVal('like_pg_seq')", "SELECT currval('like_pg_seq')", "SELECT setval('like_pg_seq', 5)", "SELECT set_config('application_name', 'x', false)",
      'SELECT inet_server_port()', "SELECT 1 FROM t WHERE aid = (SELECT lastval())",
    ];
    const extended = [
      'SELECT $1::int AS v', "SELECT nextval('like_pg_seq') + $1", 'SELECT x FROM seen WHERE x = $1 FOR SHARE', 'SELECT $1::text || $$;$$', 'SELECT count(*) + $1 FROM t',
    ];
    const router = new Router([]);
    const admin = new pg.Client(direct());
    await admin.connect();
    await admin.query('CREATE SEQUENCE IF NOT EXISTS like_pg_seq; CREATE TABLE IF NOT EXISTS t (aid int, abalance int)');
    await admin.end();
    for (const native of [true, false]) {
      const fx = await proxy({ load_balance: false, native_forwarding: native });
      const c = await fx.connect();
      try {
        await c.query('SELECT 1');
        await c.query('SELECT 2');
        if (native) assert.equal(fx.proxy.stats().clients.native, 1);
        // Statement by statement: what the router counts (0 or 1), and what was counted.
        const got: [string, number, number][] = [];
        const run = async (q: string, values?: unknown[]) => {
          const b = fx.proxy.stats().selectCounts[0]!;
          await c.query(q, values);
          got.push([q, router.route(q).read ? 1 : 0, fx.proxy.stats().selectCounts[0]! - b]);
        };
        for (const q of simple) await run(q);
        for (const q of extended) await run(q, [1]);
        assert.deepEqual(got.filter(([, want, n]) => want !== n), [], `select_cnt on the ${native ? 'native' : 'JavaScript'} path: [statement, router, counted]`);
      } finally {
        await c.end();
      }
    }
  });
});
