// Native forwarding (src/proxy/splice.ts, native/splice.c): with load balancing off a session
// runs on the primary alone, and after two answered requests its bytes are moved by the C
// forwarding thread. These tests check that this really happens (splice.live()) and that
// what a client sees stays right: SHOW POOL_NODES and select_cnt, transactions and errors,
// prepared statements, COPY both ways, LISTEN/NOTIFY, cancel, a backend killed under the
// session, a failover, Terminate and pooled-connection reset, bad bytes and vanishing clients.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { createCluster, type PgCluster, SUPERUSER, SUPERUSER_PASSWORD, pgBin, run } from '../support/pg.js';
import { startProxy, libpqEnv, backendKey, cancelThroughProxy, until, type ProxyFixture } from '../support/proxy.js';
import * as splice from '../../src/proxy/splice.js';
import * as codec from '../../src/protocol/codec.js';
import { Router } from '../../src/proxy/router.js';

/** Answers two requests, after which the session is forwarded natively. */
async function settle(c: pg.Client): Promise<void> {
  await c.query('SELECT 1');
  await c.query('SELECT 2');
}

async function selectCnt(c: pg.Client): Promise<number> {
  const r = await c.query<{ node_id: string; select_cnt: string }>('SHOW POOL_NODES');
  return Number(r.rows.find((x) => x.node_id === '0')!.select_cnt);
}

/** Reads a raw connection until `marker` shows up in what arrived (or close/timeout). */
function readUntil(sock: net.Socket, marker: Buffer, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const done = (): void => {
      sock.removeListener('data', onData);
      resolve(got);
    };
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      if (got.includes(marker)) done();
    };
    sock.on('data', onData);
    sock.once('close', done);
    setTimeout(done, timeoutMs);
  });
}

const READY = Buffer.from('Z\0\0\0\x05I');

describe('native forwarding', () => {
  let cluster: PgCluster;
  let fx: ProxyFixture;
  const direct = (): pg.ClientConfig => ({ host: cluster.primary.host, port: cluster.primary.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });

  before(async () => {
    cluster = await createCluster({ standbys: 1 });
    fx = await startProxy(cluster, { proxy: { load_balance: false } });
    assert.ok(splice.available(), 'the native addon is built (npm install runs node-gyp)');
    assert.ok(fx.proxy.nativeForwarding);
  });
  after(async () => {
    await fx?.stop();
    await cluster?.teardown();
  });

  it('takes a settled session over, and gives it back for SHOW POOL_NODES with select_cnt counted', async () => {
    const base = splice.live();
    const c = await fx.connect();
    try {
      await c.query('SELECT 1');
      assert.equal(splice.live(), base, 'not after one request');
      await c.query('SELECT 2');
      assert.equal(splice.live(), base + 1, 'forwarded natively after two');
      assert.equal(fx.proxy.stats().clients.native, 1);
      const before = await selectCnt(c);
      assert.equal(splice.live(), base, 'SHOW POOL_NODES is answered by JavaScript');
      for (let i = 0; i < 5; i++) assert.equal((await c.query('SELECT $1::int AS v', [i])).rows[0].v, i);
      for (let i = 0; i < 5; i++) await c.query(`  with x as (select ${i}) select * from x`);
      await c.query('CREATE TEMP TABLE t_native (x int)');
      assert.equal(splice.live(), base + 1, 'forwarded natively again');
      assert.equal(await selectCnt(c), before + 10, 'SELECT and WITH counted, DDL not');
      const v = await c.query('show   pool_version');
      assert.match(String(Object.values(v.rows[0])[0]), /pgwatchdog/);
    } finally {
      await c.end();
    }
    await until(() => splice.live() === base, 'the session to come back on Terminate');
  });

  it('counts long writes by their first word and forwards them without a give-back; long reads go to JavaScript', async () => {
    const c = await fx.connect();
    const router = new Router([]);
    try {
      await c.query('CREATE TEMP TABLE t_long (s text)');
      await settle(c);
      assert.equal(fx.proxy.stats().clients.native, 1);
      const long = 'x'.repeat(40_000); // longer than the forwarding buffer (32 KB), too
      // Written natively, statement by statement: none of these is held whole or given back.
      const writes: [string, unknown[]?][] = [
        [`INSERT INTO t_long VALUES ('${long}')`],
        [`  update t_long set s = '${long}y' where s <> ''`],
        [`INSERT INTO t_long VALUES ($1)`, [long]],
        [`DELETE FROM t_long WHERE s = '${'z'.repeat(9000)}'`],
      ];
      for (const [q, values] of writes) {
        const local = splice.givenBack(splice.REASON.localQuery);
        const cnt = fx.proxy.stats().selectCounts[0]!;
        await c.query(q, values);
        assert.equal(splice.givenBack(splice.REASON.localQuery), local, `not given back: ${q.slice(0, 30)}…`);
        assert.equal(fx.proxy.stats().selectCounts[0]! - cnt, 0, 'not a read');
        assert.equal(fx.proxy.stats().clients.native, 1);
      }
      // A read-like text longer than CLASSIFY_MAX goes to JavaScript, which counts it as the router does.
      const read = `SELECT count(s) FROM t_long WHERE s <> '${'w'.repeat(9000)}'`;
      const local = splice.givenBack(splice.REASON.localQuery);
      const cnt = fx.proxy.stats().selectCounts[0]!;
      assert.equal((await c.query(read)).rows[0].count, '2');
      assert.equal(splice.givenBack(splice.REASON.localQuery), local + 1, 'given back');
      assert.equal(fx.proxy.stats().selectCounts[0]! - cnt, router.route(read).read ? 1 : 0);
    } finally {
      await c.end();
    }
  });

  it('counts reads that call harmless functions natively; a call of a write function, configured ones too, goes to JavaScript', async () => {
    const admin = new pg.Client(direct());
    await admin.connect();
    await admin.query('CREATE OR REPLACE FUNCTION bump_audit(int) RETURNS int LANGUAGE sql AS $$ SELECT $1 $$');
    await admin.end();
    const writeFunctions = ['bump_*'];
    const own = await startProxy(cluster, { proxy: { load_balance: false, write_functions: writeFunctions } });
    const router = new Router(writeFunctions);
    const c = await own.connect();
    try {
      await settle(c);
      assert.equal(own.proxy.stats().clients.native, 1);
      const cases: [string, boolean][] = [
        // [statement, goes to JavaScript]
        ['SELECT count(*) FROM pg_class', true], // (pg_… names: node-local views and functions)
        ['SELECT count(*), max(length(table_name)) FROM information_schema.tables t, (VALUES (1)) v(x)', false],
        ['SELECT now(), length($$x$$), abs(-1) WHERE 1 IN (1, 2)', false],
        ['SELECT bump_audit(1)', true],
        ['SELECT BUMP_AUDIT (2)', true],
        ['SELECT public.bump_audit(3)', true],
        ['SELECT "bump_audit"(4)', true],
      ];
      for (const [q, toJs] of cases) {
        const local = splice.givenBack(splice.REASON.localQuery);
        const cnt = own.proxy.stats().selectCounts[0]!;
        await c.query(q);
        assert.equal(splice.givenBack(splice.REASON.localQuery) - local, toJs ? 1 : 0, `given back: ${q}`);
        assert.equal(own.proxy.stats().selectCounts[0]! - cnt, router.route(q).read ? 1 : 0, `select_cnt: ${q}`);
        assert.equal(own.proxy.stats().clients.native, 1, `native again after ${q}`);
      }
    } finally {
      await c.end();
      await own.stop();
    }
  });

  it('leaves every session on the JavaScript path with proxy.native_forwarding off', async () => {
    const off = await startProxy(cluster, { proxy: { load_balance: false, native_forwarding: false } });
    const base = splice.live();
    const c = await off.connect();
    try {
      for (let i = 0; i < 4; i++) await c.query('SELECT 1');
      assert.equal(splice.live(), base);
      assert.equal(off.proxy.stats().clients.native, 0);
      assert.equal(fx.proxy.stats().clients.native, 0, 'no session on the other proxy either');
    } finally {
      await c.end();
      await off.stop();
    }
  });

  it('keeps transactions, errors and prepared statements right', async () => {
    const c = await fx.connect();
    try {
      await settle(c);
      await c.query('CREATE TEMP TABLE tx (id int primary key, v text)');
      await c.query('BEGIN');
      await c.query("INSERT INTO tx VALUES (1, 'a')");
      assert.equal((await c.query('SELECT count(*)::int AS n FROM tx')).rows[0].n, 1);
      await assert.rejects(c.query("INSERT INTO tx VALUES (1, 'dup')"), (e: { code?: string }) => e.code === '23505');
      await assert.rejects(c.query('SELECT 1'), (e: { code?: string }) => e.code === '25P02', 'aborted transaction');
      await c.query('ROLLBACK');
      assert.equal((await c.query('SELECT count(*)::int AS n FROM tx')).rows[0].n, 0);
      for (let i = 0; i < 3; i++) {
        const r = await c.query({ name: 'plus', text: 'SELECT $1::int + 1 AS n', values: [i] });
        assert.equal(r.rows[0].n, i + 1);
      }
      // The status the proxy reports itself (SHOW POOL_…) follows the transaction.
      await c.query('BEGIN');
      await c.query('SHOW POOL_VERSION');
      await c.query("INSERT INTO tx VALUES (2, 'b')");
      await c.query('COMMIT');
      assert.equal((await c.query('SELECT v FROM tx')).rows[0].v, 'b');
    } finally {
      await c.end();
    }
  });

  it('moves COPY both ways with psql in one session', { timeout: 60_000 }, async () => {
    const file = join(fx.dir, 'in.csv');
    const rows = 200_000;
    writeFileSync(file, Array.from({ length: rows }, (_, i) => `${i},${'y'.repeat(40)}`).join('\n') + '\n');
    const out = join(fx.dir, 'out.csv');
    const script = ['SELECT 1;', 'SELECT 2;', 'CREATE TEMP TABLE cp (id int, v text);', `\\copy cp FROM '${file}' WITH (FORMAT csv)`, 'SELECT count(*), sum(length(v)) FROM cp;', `\\copy cp TO '${out}' WITH (FORMAT csv)`].join('\n');
    const got = await run(pgBin('psql'), ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1'], { asPostgres: false, env: libpqEnv(fx), input: script });
    assert.match(got, new RegExp(`^${rows}\\|${rows * 40}$`, 'm'));
    assert.equal(statSync(out).size, statSync(file).size);
  });

  it('delivers NOTIFY to a natively forwarded listener', async () => {
    const listener = await fx.connect();
    const notifier = await fx.connect();
    try {
      await listener.query('LISTEN native_ch');
      await settle(listener);
      const base = splice.live();
      assert.ok(base >= 1);
      const got = new Promise<pg.Notification>((resolve) => listener.once('notification', resolve));
      await notifier.query("NOTIFY native_ch, 'hello'");
      const n = await got;
      assert.equal(n.payload, 'hello');
      assert.equal(n.processId, backendKey(notifier).processID, 'the notifying backend, by the pid its client was given');
    } finally {
      await listener.end();
      await notifier.end();
    }
  });

  it('cancels a running query, and ends the session with an error when its backend is killed', async () => {
    const c = await fx.connect();
    try {
      await settle(c);
      assert.equal(await cancelThroughProxy(fx, c, 'SELECT pg_sleep(30)'), '57014');
      assert.equal((await c.query('SELECT 3 AS x')).rows[0].x, 3);

      let clientErr: Error | undefined;
      c.on('error', (e) => (clientErr = e));
      const admin = new pg.Client(direct());
      await admin.connect();
      try {
        await admin.query('SELECT pg_terminate_backend($1)', [backendKey(c).processID]);
      } finally {
        await admin.end();
      }
      // The backend's FATAL reaches the idle client as an 'error' event.
      await until(() => clientErr !== undefined, 'the client to hear of it');
      assert.match(String(clientErr), /terminat/);
      await assert.rejects(c.query('SELECT 4'));
    } finally {
      await c.end().catch(() => {});
    }
    const d = await fx.connect();
    try {
      assert.equal((await d.query('SELECT 5 AS x')).rows[0].x, 5, 'the proxy keeps serving');
    } finally {
      await d.end();
    }
  });

  it('resets the pooled connection after a natively forwarded session', async () => {
    // A proxy of its own, so that its pool holds this one connection only.
    const own = await startProxy(cluster, { proxy: { load_balance: false } });
    try {
      const a = await own.connect();
      const pidA = backendKey(a).processID;
      await settle(a);
      assert.equal(own.proxy.stats().clients.native, 1);
      await a.query("SET application_name = 'leaky'");
      await a.query("SET work_mem = '7MB'");
      await a.query('PREPARE leftover AS SELECT 1');
      await a.end();
      // Back in the pool once the reset query has run.
      await until(() => own.proxy.stats().clients.total === 0 && own.proxy.stats().pools[0]!.idle === 1, 'the connection to be reset and pooled');
      const b = await own.connect();
      try {
        assert.equal(backendKey(b).processID, pidA, 'the same backend connection was reused');
        assert.equal((await b.query('SHOW work_mem')).rows[0].work_mem, '4MB');
        assert.equal((await b.query('SHOW application_name')).rows[0].application_name, '');
        assert.equal((await b.query('SELECT count(*)::int AS n FROM pg_prepared_statements')).rows[0].n, 0);
      } finally {
        await b.end();
      }
    } finally {
      await own.stop();
    }
  });

  it('failover_sessions end: ends natively forwarded sessions with 57P01 when the primary leaves service', async () => {
    const own = await startProxy(cluster, { proxy: { load_balance: false, failover_sessions: 'end' } });
    try {
      const c = await own.connect();
      let err: { code?: string } | undefined;
      c.on('error', (e) => (err ??= e as { code?: string }));
      try {
        await settle(c);
        const base = splice.live();
        own.registry.update(0, { status: 'down' }, 'test: primary detached');
        await until(() => err !== undefined, 'the session to end');
        assert.equal(err?.code, '57P01', String(err));
        assert.equal(splice.live(), base - 1);
      } finally {
        own.registry.update(0, { status: 'up' }, 'test: primary back');
        await c.end().catch(() => {});
      }
      const d = await own.connect();
      try {
        assert.equal((await d.query('SELECT 6 AS x')).rows[0].x, 6);
      } finally {
        await d.end();
      }
    } finally {
      await own.stop();
    }
  });

  it('failover_sessions keep: a natively forwarded session whose primary leaves service waits, then moves with the SETs and PREPAREs it ran natively', async () => {
    const c = await fx.connect();
    const errors: Error[] = [];
    c.on('error', (e) => errors.push(e));
    try {
      await settle(c);
      // State-changing statements go back to JavaScript (recorded), and the session forwards natively again.
      await c.query("SET work_mem = '5MB'");
      await c.query('PREPARE twice (int) AS SELECT $1 * 2 AS v');
      await c.query('SELECT 3');
      await until(() => fx.proxy.stats().clients.native >= 1, 'the session to forward natively again');
      // SET pgwatchdog.… on a native session is the proxy's (answered, not sent to PostgreSQL).
      await assert.rejects(c.query("SET pgwatchdog.read_after_lsn = 'nonsense'"), (e: { code?: string }) => e.code === '22023');
      const pidBefore = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
      fx.registry.update(0, { status: 'down' }, 'test: primary detached');
      const pending = c.query("SELECT current_setting('work_mem') AS wm, pg_backend_pid() AS p");
      await new Promise((r) => setTimeout(r, 300));
      fx.registry.update(0, { status: 'up' }, 'test: primary back');
      const r = (await pending).rows[0] as { wm: string; p: number };
      assert.equal(r.wm, '5MB');
      assert.notEqual(r.p, pidBefore, 'a fresh backend connection');
      assert.equal((await c.query('EXECUTE twice(21)')).rows[0].v, 42);
      assert.deepEqual(errors, []);
    } finally {
      fx.registry.update(0, { status: 'up' }, 'test: primary back');
      await c.end().catch(() => {});
    }
  });

  it('reads messages split at every byte, SHOW POOL_ and Terminate included', { timeout: 60_000 }, async () => {
    const base = splice.live();
    const s = net.connect({ host: fx.host, port: fx.port });
    await once(s, 'connect');
    s.setNoDelay(true);
    const frames: Buffer[] = [];
    s.on('data', (d: Buffer) => frames.push(d));
    const received = (): Buffer => Buffer.concat(frames);
    /** Writes `b` a byte at a time, letting each byte reach the proxy as its own read. */
    const trickle = async (b: Buffer): Promise<void> => {
      for (let i = 0; i < b.length; i++) {
        s.write(b.subarray(i, i + 1));
        await new Promise((r) => setTimeout(r, 1));
      }
    };
    const readies = (): number => {
      let n = 0;
      for (let at = received().indexOf('Z\0\0\0\x05'); at >= 0; at = received().indexOf('Z\0\0\0\x05', at + 1)) n++;
      return n;
    };
    s.write(codec.startupMessage({ user: SUPERUSER, database: 'postgres' }));
    await until(() => readies() === 1, 'startup');
    s.write(codec.query('SELECT 1'));
    await until(() => readies() === 2, 'first query');
    s.write(codec.query('SELECT 2'));
    await until(() => readies() === 3, 'second query');
    assert.equal(splice.live(), base + 1, 'forwarded natively');
    // A query, a SHOW POOL_NODES (given back to JavaScript once its first word is in), an
    // extended-protocol batch, each split at every byte.
    await trickle(codec.query("SELECT 'split' || 'query'"));
    await until(() => readies() === 4, 'the split query');
    assert.match(received().toString('latin1'), /splitquery/);
    await trickle(codec.query('  SHOW\n  POOL_VERSION'));
    await until(() => readies() === 5, 'SHOW POOL_VERSION');
    assert.match(received().toString('latin1'), /pgwatchdog/);
    await trickle(codec.query('SELECT 3'));
    await until(() => readies() === 6, 'a query after the give-back');
    assert.equal(splice.live(), base + 1, 'forwarded natively again');
    // A statement settled by its first word (forwarded as it arrives) and a read held whole.
    await trickle(codec.query("SET application_name = 'trickled'"));
    await until(() => readies() === 7, 'the split SET');
    await trickle(codec.query('SHOW application_name'));
    await until(() => readies() === 8, 'the split SHOW');
    assert.match(received().toString('latin1'), /trickled/);
    assert.equal(splice.live(), base + 1, 'still forwarded natively');
    const z = (t: string): Buffer => Buffer.from(t + '\0');
    const msg = (type: string, body: Buffer): Buffer => {
      const b = Buffer.alloc(5 + body.length);
      b.write(type, 0, 'latin1');
      b.writeInt32BE(4 + body.length, 1);
      body.copy(b, 5);
      return b;
    };
    await trickle(
      Buffer.concat([
        msg('P', Buffer.concat([z('st'), z('SELECT $1::text || $1::text AS doubled'), Buffer.from([0, 0])])),
        msg('B', Buffer.concat([z(''), z('st'), Buffer.from([0, 0, 0, 1, 0, 0, 0, 3]), Buffer.from('abc'), Buffer.from([0, 0])])),
        msg('E', Buffer.concat([z(''), Buffer.from([0, 0, 0, 0])])),
        msg('S', Buffer.alloc(0)),
      ]),
    );
    await until(() => readies() === 9, 'the extended batch');
    assert.match(received().toString('latin1'), /abcabc/);
    await trickle(codec.terminate());
    await until(() => s.readableEnded || s.destroyed, 'the proxy to close the connection after Terminate');
    await until(() => splice.live() === base && fx.proxy.stats().clients.total === 0, 'the session to end');
  });

  it('answers bad bytes with an error, forgets vanished clients, and keeps serving', async () => {
    const base = splice.live();
    const raw = async (): Promise<net.Socket> => {
      const s = net.connect({ host: fx.host, port: fx.port });
      await once(s, 'connect');
      s.write(codec.startupMessage({ user: SUPERUSER, database: 'postgres' }));
      await readUntil(s, READY);
      for (const q of ['SELECT 1', 'SELECT 2']) {
        s.write(codec.query(q));
        await readUntil(s, READY);
      }
      return s;
    };
    // An unknown message type, then garbage.
    const bad = await raw();
    assert.equal(splice.live(), base + 1);
    bad.write(Buffer.concat([Buffer.from([0x7a, 0, 0, 0, 8, 1, 2, 3, 4]), Buffer.alloc(64, 0xff)]));
    const reply = await readUntil(bad, Buffer.from('08P01'));
    assert.equal(reply[0], 0x45, 'an ErrorResponse');
    assert.match(reply.toString('latin1'), /08P01/);
    // A length no message may have.
    const huge = await raw();
    huge.write(Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff]));
    assert.match((await readUntil(huge, Buffer.from('08P01'))).toString('latin1'), /08P01/);
    // Clients that vanish: one idle, one mid-query, one mid-message.
    const idle = await raw();
    const busy = await raw();
    const half = await raw();
    busy.write(codec.query('SELECT pg_sleep(0.3), repeat(\'z\', 100000) FROM generate_series(1, 20)'));
    half.write(codec.query('SELECT 1').subarray(0, 6));
    await new Promise((r) => setTimeout(r, 50));
    idle.destroy();
    busy.destroy();
    half.destroy();
    bad.destroy();
    huge.destroy();
    await until(() => splice.live() === base && fx.proxy.stats().clients.total === 0, 'every session to end', 10_000);
    const clients = await Promise.all(Array.from({ length: 4 }, () => fx.connect()));
    try {
      for (const [i, c] of clients.entries()) {
        await settle(c);
        assert.equal((await c.query('SELECT $1::int * 2 AS v', [i])).rows[0].v, i * 2);
      }
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });
});
