// Compatibility with a second real driver, postgres.js (porsager/postgres): its behaviours —
// the extended protocol and named prepared statements, types, transactions and savepoints,
// cursors, COPY both ways, LISTEN/NOTIFY, errors, cancel, two-phase commit, multi-statement
// queries — run directly against PostgreSQL and through the proxy with load balancing off
// (native forwarding) and on, and every result must be the same.
//
// One difference is inherent to read balancing and not hidden here: a read right after a
// write in autocommit may go to an asynchronous standby that has not replayed the write yet.
// The load-balanced run waits for the standby to catch up before such a read (caughtUp), as
// an application reading its own writes must (README, "Read balancing").
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';
import pg from 'pg';
import postgres from 'postgres';
import { createCluster, type PgCluster, SUPERUSER, SUPERUSER_PASSWORD } from '../support/pg.js';
import { startProxy, type ProxyFixture } from '../support/proxy.js';

type Sql = postgres.Sql;

interface Target {
  name: string;
  port: number;
  /** Reads after writes must wait for the standby (load balancing on). */
  balanced: boolean;
}

interface Ctx {
  sql: Sql;
  /** A table of this run's own. */
  t: string;
  /** Resolves once a write made through `sql` can be read wherever reads go. */
  caughtUp(): Promise<void>;
  target: Target;
}

const codeOf = (e: unknown): string => (e as { code?: string }).code ?? String(e);

// Each behaviour returns plain data; the test compares it across targets.
const behaviours: [string, (c: Ctx) => Promise<unknown>][] = [
  [
    'extended protocol and named prepared statements, reused',
    async ({ sql }) => {
      const out: unknown[] = [];
      for (let i = 0; i < 4; i++) out.push(await sql`select ${i}::int as i, ${'x' + i}::text as s, ${i % 2 === 0} as b`);
      return out;
    },
  ],
  [
    'types: arrays, json, bytea, numeric, timestamps, nulls',
    async ({ sql }) =>
      sql`select ${'{1,2,3}'}::int[] as arr, array['a', null, 'c'] as texts, ${sql.json({ a: [1, 'two'] })}::jsonb as j, ${Buffer.from('ab\x00c')}::bytea as bin,
        ${'12345678901234567890.5'}::numeric as n, ${new Date(Date.UTC(2020, 1, 29, 12))}::timestamptz as ts, ${null}::int as nothing`,
  ],
  [
    'transactions: commit, rollback on error, savepoints',
    async ({ sql, t, caughtUp }) => {
      await sql`create table ${sql(t)} (id int primary key, v text)`;
      await sql.begin(async (tx) => {
        await tx`insert into ${sql(t)} values (1, 'a')`;
        await tx.savepoint(async (sp) => {
          await sp`insert into ${sql(t)} values (2, 'b')`;
        });
        await tx
          .savepoint(async (sp) => {
            await sp`insert into ${sql(t)} values (3, 'c')`;
            await sp`insert into ${sql(t)} values (1, 'dup')`;
          })
          .catch(() => undefined);
      });
      const failed = await sql
        .begin(async (tx) => {
          await tx`insert into ${sql(t)} values (4, 'd')`;
          await tx`select 1/0`;
        })
        .catch(codeOf);
      await caughtUp();
      return { failed, rows: await sql`select id, v from ${sql(t)} order by id` };
    },
  ],
  [
    'cursors',
    async ({ sql }) => {
      const batches: number[][] = [];
      for await (const rows of sql`select generate_series(1, 10) as x`.cursor(4)) batches.push(rows.map((r) => r.x as number));
      return batches;
    },
  ],
  [
    'COPY in and out',
    async ({ sql, t, caughtUp }) => {
      await sql`create table ${sql(t)} (id int, v text)`;
      const lines = Array.from({ length: 500 }, (_, i) => `${i}\trow ${i}\n`);
      await pipeline(Readable.from(lines), await sql`copy ${sql(t)} from stdin`.writable());
      await caughtUp();
      let out = '';
      await pipeline(
        await sql`copy ${sql(t)} to stdout`.readable(),
        new Writable({
          write(chunk: Buffer, _enc, cb) {
            out += chunk.toString();
            cb();
          },
        }),
      );
      return { same: out === lines.join(''), n: out.split('\n').length - 1 };
    },
  ],
  [
    'LISTEN and NOTIFY',
    async ({ sql, t }) => {
      const got: string[] = [];
      const heard = new Promise<void>((resolve) => {
        void sql.listen(t, (payload) => {
          got.push(payload);
          if (got.length === 2) resolve();
        });
      });
      // (listen resolves once its LISTEN ran: wait for that before notifying.)
      await new Promise((r) => setTimeout(r, 100));
      await sql.notify(t, 'one');
      await sql`select pg_notify(${t}, 'two')`;
      await heard;
      return got;
    },
  ],
  [
    'errors: codes, positions, and the connection goes on',
    async ({ sql, t }) => {
      await sql`create table ${sql(t)} (id int primary key)`;
      await sql`insert into ${sql(t)} values (1)`;
      const dup = await sql`insert into ${sql(t)} values (1)`.catch((e: postgres.PostgresError) => [e.code, e.constraint_name]);
      const syntax = await sql.unsafe('selec 1').catch((e: postgres.PostgresError) => [e.code, e.position]);
      const missing = await sql`select * from no_such_table_here`.catch((e: postgres.PostgresError) => e.code);
      const divide = await sql`select 1 / ${0}::int`.catch((e: postgres.PostgresError) => e.code);
      return { dup, syntax, missing, divide, after: await sql`select 42 as answer` };
    },
  ],
  [
    'cancel a running query',
    async ({ sql }) => {
      const q = sql`select pg_sleep(10)`;
      const timer = setTimeout(() => q.cancel(), 200);
      const code = await q.then(() => 'finished', codeOf);
      clearTimeout(timer);
      return { code, after: await sql`select 1 as one` };
    },
  ],
  [
    'the backend ends the session: one error, then a new connection',
    async ({ sql }) => {
      const code = await sql`select pg_terminate_backend(pg_backend_pid())`.then(() => 'survived', codeOf);
      // (postgres.js may still send the next query on the closing connection: what it sees
      // then must be what it sees from PostgreSQL.)
      const next = await sql`select 7 as seven`.then((r) => [...r], codeOf);
      await new Promise((r) => setTimeout(r, 100));
      return { code, next, after: await sql`select 8 as eight` };
    },
  ],
  [
    'two-phase commit',
    async ({ sql, t, caughtUp }) => {
      await sql`create table ${sql(t)} (id int)`;
      const gid = `gid_${t}`;
      await sql.begin(async (tx) => {
        await tx`insert into ${sql(t)} values (1)`;
        await tx.prepare(gid);
      });
      const pending = await sql`select gid from pg_prepared_xacts where gid = ${gid}`;
      await sql.unsafe(`commit prepared '${gid}'`);
      const gone = await sql`select gid from pg_prepared_xacts where gid = ${gid}`;
      await caughtUp();
      return { pending, gone, rows: await sql`select id from ${sql(t)}` };
    },
  ],
  [
    'simple protocol: several statements in one query',
    async ({ sql }) => (await sql.unsafe('select 1 as a; select 2 as b')).map((r) => [...(r as Iterable<postgres.Row>)]),
  ],
];

describe('postgres.js (a second real driver) through the proxy, compared with PostgreSQL', () => {
  let cluster: PgCluster;
  let off: ProxyFixture;
  let on: ProxyFixture;
  let admin: pg.Client;
  let standbyAdmin: pg.Client;
  const targets: Target[] = [];

  before(async () => {
    cluster = await createCluster({ standbys: 1, settings: { max_prepared_transactions: 10 } });
    off = await startProxy(cluster, { proxy: { load_balance: false } });
    on = await startProxy(cluster, { proxy: { load_balance: true } });
    targets.push({ name: 'postgresql', port: cluster.primary.port, balanced: false });
    targets.push({ name: 'proxy_lb_off', port: off.port, balanced: false });
    targets.push({ name: 'proxy_lb_on', port: on.port, balanced: true });
    const conn = (port: number): pg.ClientConfig => ({ host: '127.0.0.1', port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
    admin = new pg.Client(conn(cluster.primary.port));
    await admin.connect();
    standbyAdmin = new pg.Client(conn(cluster.nodes[1]!.port));
    await standbyAdmin.connect();
  });
  after(async () => {
    await admin?.end();
    await standbyAdmin?.end();
    await off?.stop();
    await on?.stop();
    await cluster?.teardown();
  });

  /** Waits until the standby has replayed everything the primary has written so far. */
  async function caughtUp(): Promise<void> {
    const lsn = (await admin.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!.l;
    const end = Date.now() + 5000;
    for (;;) {
      const r = await standbyAdmin.query<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn]);
      if (r.rows[0]!.ok) return;
      if (Date.now() > end) throw new Error('the standby did not replay the primary’s writes within 5 s');
      await new Promise((res) => setTimeout(res, 10));
    }
  }

  behaviours.forEach(([name, run], i) => {
    it(name, async () => {
      const results: Record<string, unknown> = {};
      for (const target of targets) {
        const sql = postgres({ host: '127.0.0.1', port: target.port, user: SUPERUSER, pass: SUPERUSER_PASSWORD, database: 'postgres', max: 1, onnotice: () => {}, connect_timeout: 5 });
        try {
          const ctx: Ctx = { sql, t: `pgjs_${i}_${target.name}`, caughtUp: target.balanced ? caughtUp : async () => {}, target };
          // (Names made from the target's name, such as constraint names, read the same everywhere.)
          const got = await run(ctx).catch((e: Error) => {
            throw new Error(`${name}, on ${target.name}: ${e.message}`, { cause: e });
          });
          results[target.name] = JSON.parse(JSON.stringify(got).replaceAll(target.name, 'TARGET'));
        } finally {
          await sql.end({ timeout: 5 });
        }
      }
      assert.deepEqual(results.proxy_lb_off, results.postgresql, 'load balancing off');
      assert.deepEqual(results.proxy_lb_on, results.postgresql, 'load balancing on');
    });
  });
});
