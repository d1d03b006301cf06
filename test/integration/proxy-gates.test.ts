// The proxy honours the registry's routing gates (src/proxy/gates.ts): a statement that starts
// outside a transaction and needs a held backend waits until the hold is lifted (or runs out),
// new sessions wait before their first checkout, and a peer that refuses writes answers them
// with 25006 while reads go on — on the JavaScript path, with native forwarding, and in
// worker processes. Real PostgreSQL, real clients (pg, psql).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createCluster, type PgCluster, SUPERUSER, SUPERUSER_PASSWORD } from '../support/pg.js';
import { startProxy, psql, serverPort, type ProxyFixture } from '../support/proxy.js';
import { OPEN_GATES, type RoutingGates } from '../../src/backends/registry.js';
import * as splice from '../../src/proxy/splice.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** True when `p` settles within `ms`. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await sleep(ms);
  return done;
}

const holdPrimary = (ms = 60_000): RoutingGates => ({ held: [{ id: 0, reason: 'test: failover of the primary', untilMs: Date.now() + ms }], refuseWrites: null });
const REFUSE: RoutingGates = { held: [], refuseWrites: 'test: cut off from the majority' };
const MESSAGE = 'cannot execute a write on isolated pgwatchdog peer: test: cut off from the majority';
const HINT = 'Connect through the virtual IP (or another peer) to write.';

function refused(e: unknown): boolean {
  const err = e as { code?: string; message?: string; hint?: string };
  assert.equal(err.code, '25006');
  assert.equal(err.message, MESSAGE);
  assert.equal(err.hint, HINT);
  return true;
}

/** Rows in t_gates, read on the primary directly (a standby may not have replayed them yet). */
async function count(cluster: PgCluster): Promise<number> {
  const c = new pg.Client({ host: cluster.primary.host, port: cluster.primary.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
  await c.connect();
  try {
    return Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM t_gates')).rows[0]!.n);
  } finally {
    await c.end();
  }
}

/** A cluster and a proxy in front of it for one describe block, with an empty t_gates. */
function testBed(standbys: number, proxy: Record<string, unknown>): { cluster: PgCluster; fx: ProxyFixture } {
  const bed = {} as { cluster: PgCluster; fx: ProxyFixture };
  before(async () => {
    bed.cluster = await createCluster({ standbys });
    bed.fx = await startProxy(bed.cluster, { proxy });
    const c = await bed.fx.connect();
    await c.query('CREATE TABLE t_gates (x int)');
    await c.end();
  });
  after(async () => {
    await bed.fx?.stop();
    await bed.cluster?.teardown();
  });
  return bed;
}

describe('routing gates on the JavaScript path (load balancing)', () => {
  const bed = testBed(1, {});

  it('a write started while the primary is held waits, and runs when the hold is lifted; so does a new session; reads on the standby go on', async () => {
    const { cluster, fx } = bed;
    const c = await fx.connect();
    const other = await fx.connect();
    try {
      await c.query('SELECT 1');
      fx.registry.setGates(holdPrimary(), 'test: hold');
      const write = c.query('INSERT INTO t_gates VALUES (1)');
      const newSession = fx.connect();
      assert.equal(await settlesWithin(write, 800), false, 'the write waits while the primary is held');
      assert.equal(await settlesWithin(newSession, 10), false, 'a new session waits for its first checkout');
      assert.equal(await serverPort(other), cluster.nodes[1]!.port, 'a read on the standby is not held');
      fx.registry.setGates(OPEN_GATES, 'test: lifted');
      await write;
      const n = await newSession;
      assert.equal(await count(cluster), 1, 'the held write ran once, with no error');
      await n.end();
    } finally {
      fx.registry.setGates(OPEN_GATES, 'test: cleanup'); // before the clients end: a held session reads no Terminate
      await c.end();
      await other.end();
    }
  });

  it('a hold that runs out lets the statement go; inside a transaction nothing is held', async () => {
    const { fx } = bed;
    const c = await fx.connect();
    try {
      fx.registry.setGates(holdPrimary(700), 'test: short hold');
      const t0 = Date.now();
      await c.query('INSERT INTO t_gates VALUES (2)');
      assert.ok(Date.now() - t0 >= 500, 'it waited for the hold to run out');
      await c.query('BEGIN');
      await c.query('SELECT 1');
      fx.registry.setGates(holdPrimary(), 'test: hold');
      assert.equal(await settlesWithin(c.query('INSERT INTO t_gates VALUES (3)'), 1000), true, 'a write inside a transaction is not held');
      assert.equal(await settlesWithin(c.query('COMMIT'), 1000), true);
    } finally {
      fx.registry.setGates(OPEN_GATES, 'test: cleanup'); // before the clients end: a held session reads no Terminate
      await c.end();
    }
  });

  it('a read whose standby is held goes to the primary', async () => {
    const { cluster, fx } = bed;
    const c = await fx.connect();
    try {
      assert.equal(await serverPort(c), cluster.nodes[1]!.port);
      fx.registry.setGates({ held: [{ id: 1, reason: 'test: standby failing over', untilMs: Date.now() + 60_000 }], refuseWrites: null }, 'test: hold standby');
      assert.equal(await serverPort(c), cluster.nodes[0]!.port, 'read on the primary, not held');
      fx.registry.setGates(OPEN_GATES, 'test: lifted');
      assert.equal(await serverPort(c), cluster.nodes[1]!.port, 'back on its standby');
    } finally {
      fx.registry.setGates(OPEN_GATES, 'test: cleanup'); // before the clients end: a held session reads no Terminate
      await c.end();
    }
  });

  it('with writes refused, writes (simple, extended, prepared, in a transaction, psql) get 25006 and the session keeps serving', async () => {
    const { cluster, fx } = bed;
    const c = await fx.connect();
    try {
      const before = await count(cluster);
      fx.registry.setGates(REFUSE, 'test: isolated');
      await assert.rejects(c.query('INSERT INTO t_gates VALUES (10)'), refused);
      await assert.rejects(c.query('INSERT INTO t_gates VALUES ($1)', [11]), refused);
      await assert.rejects(c.query({ name: 'ins', text: 'INSERT INTO t_gates VALUES ($1)', values: [12] }), refused);
      assert.equal(await serverPort(c), cluster.nodes[1]!.port, 'reads go on, on the standby');
      assert.equal(await count(cluster), before, 'nothing was written');
      await c.query('BEGIN');
      await c.query('SELECT 1');
      await assert.rejects(c.query('UPDATE t_gates SET x = x'), refused);
      await assert.rejects(c.query('SELECT 1'), (e: { code?: string }) => e.code === '25P02', 'the transaction is aborted, as PostgreSQL would have it');
      await c.query('ROLLBACK');
      await assert.rejects(psql(fx, 'INSERT INTO t_gates VALUES (13)'), (e: Error) => e.message.includes(MESSAGE));
      assert.equal((await psql(fx, 'SELECT 42')).trim(), '42');
      fx.registry.setGates(OPEN_GATES, 'test: rejoined');
      await c.query({ name: 'ins', text: 'INSERT INTO t_gates VALUES ($1)', values: [14] });
      assert.equal(await count(cluster), before + 1, 'the prepared write runs once writes are allowed again');
    } finally {
      fx.registry.setGates(OPEN_GATES, 'test: cleanup'); // before the clients end: a held session reads no Terminate
      await c.end();
    }
  });
});

describe('routing gates with native forwarding (no load balancing)', () => {
  const bed = testBed(0, { load_balance: false });

  it('a natively forwarded session comes back to JavaScript for a gate: its write waits for a hold, then runs', async () => {
    const { cluster, fx } = bed;
    assert.ok(fx.proxy.nativeForwarding, 'the native addon is built');
    const c = await fx.connect();
    try {
      await c.query('SELECT 1');
      await c.query('SELECT 2');
      assert.equal(fx.proxy.stats().clients.native, 1, 'forwarded natively');
      fx.registry.setGates(holdPrimary(), 'test: hold');
      const write = c.query('INSERT INTO t_gates VALUES (1)');
      assert.equal(await settlesWithin(write, 800), false, 'the write waits');
      assert.equal(fx.proxy.stats().clients.native, 0, 'the session is back in JavaScript');
      fx.registry.setGates(OPEN_GATES, 'test: lifted');
      await write;
      assert.equal(await count(cluster), 1);
      await c.query('SELECT 3');
      assert.equal(fx.proxy.stats().clients.native, 1, 'forwarded natively again once the gates are open');
    } finally {
      fx.registry.setGates(OPEN_GATES, 'test: cleanup'); // before the clients end: a held session reads no Terminate
      await c.end();
    }
  });

  it('a pinned session with writes refused gets 25006 for its writes only, and stays in JavaScript while they are refused', async () => {
    const { cluster, fx } = bed;
    const c = await fx.connect();
    try {
      await c.query('SELECT 1');
      await c.query('SELECT 2');
      const base = splice.live();
      assert.ok(base >= 1);
      fx.registry.setGates(REFUSE, 'test: isolated');
      await assert.rejects(c.query('INSERT INTO t_gates VALUES (2)'), refused);
      const n = await count(cluster);
      await c.query('SELECT 4');
      await c.query('SELECT 5');
      assert.equal(fx.proxy.stats().clients.native, 0, 'not forwarded natively while writes are refused');
      await assert.rejects(c.query('DELETE FROM t_gates'), refused);
      assert.equal(await count(cluster), n);
      fx.registry.setGates(OPEN_GATES, 'test: rejoined');
      await c.query('INSERT INTO t_gates VALUES (3)');
      assert.equal(await count(cluster), n + 1);
    } finally {
      fx.registry.setGates(OPEN_GATES, 'test: cleanup'); // before the clients end: a held session reads no Terminate
      await c.end();
    }
  });
});

describe('routing gates in worker processes', () => {
  const bed = testBed(1, { workers: 2 });

  it('gates set in the main process reach the workers: writes refused, then held, then allowed', async () => {
    const { cluster, fx } = bed;
    const clients = await Promise.all([fx.connect(), fx.connect(), fx.connect(), fx.connect()]);
    try {
      fx.registry.setGates(REFUSE, 'test: isolated');
      await sleep(300); // the workers hear of it over IPC
      for (const c of clients) await assert.rejects(c.query('INSERT INTO t_gates VALUES (1)'), refused);
      for (const c of clients) assert.equal((await c.query('SELECT 7 AS v')).rows[0].v, 7, 'reads go on');
      fx.registry.setGates(holdPrimary(), 'test: hold');
      await sleep(300);
      const writes = clients.map((c, i) => c.query('INSERT INTO t_gates VALUES ($1)', [i]));
      assert.equal(await settlesWithin(Promise.race(writes), 800), false, 'every write waits');
      fx.registry.setGates(OPEN_GATES, 'test: lifted');
      await Promise.all(writes);
      assert.equal(await count(cluster), clients.length);
    } finally {
      fx.registry.setGates(OPEN_GATES, 'test: cleanup');
      await Promise.all(clients.map((c) => c.end()));
    }
  });
});
