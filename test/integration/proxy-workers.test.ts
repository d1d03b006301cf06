// proxy.workers > 1: node:cluster workers share the port; registry changes made in the main
// process reach them; cancel requests reach the worker that owns the session whichever
// worker accepts the cancel connection.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createCluster } from '../support/pg.js';
import { startProxy, serverPort, cancelThroughProxy } from '../support/proxy.js';

it('runs sessions in worker processes, mirrors the registry, routes cancels across workers', { timeout: 120_000 }, async () => {
  const cluster = await createCluster({ standbys: 2 });
  const fx = await startProxy(cluster, { proxy: { workers: 2 } });
  const clients: pg.Client[] = [];
  try {
    // Sessions work and land on standbys for reads, primary for writes.
    for (let i = 0; i < 8; i++) clients.push(await fx.connect());
    // Each session's standby, seen before it writes (after a write its reads wait on the
    // primary for the standby to replay it: causal reads).
    const ports: number[] = [];
    for (const c of clients) {
      ports.push(await serverPort(c));
      assert.ok(cluster.standbys.some((s) => s.port === ports.at(-1)));
      const w = await c.query<{ p: number }>("SELECT current_setting($$port$$)::int AS p FROM pg_class LIMIT 1 FOR UPDATE");
      assert.equal(w.rows[0]!.p, cluster.primary.port);
    }
    // Stats come from both workers.
    await new Promise((r) => setTimeout(r, 1500));
    const st = fx.proxy.stats();
    assert.equal(st.workers, 2);
    assert.equal(st.clients.total, 8);

    // Cancels: sent on fresh connections, which the cluster spreads over both workers.
    for (let i = 0; i < 4; i++) assert.equal(await cancelThroughProxy(fx, clients[i]!, 'SELECT pg_sleep(30)', 200), '57014', `cancel ${i}`);

    // A registry change in the main process reaches the workers' sessions.
    const errors = clients.map(() => undefined as { code?: string } | undefined);
    clients.forEach((c, i) => c.on('error', (e) => (errors[i] ??= e as { code?: string })));
    // failover_sessions keep: sessions on the failed standby read on the primary from then on.
    fx.registry.update(1, { status: 'down' }, 'test: standby1 failed');
    await new Promise((r) => setTimeout(r, 500));
    for (const [i, c] of clients.entries()) {
      assert.equal(errors[i], undefined, `session ${i}: no error`);
      if (ports[i] === cluster.standbys[0]!.port) assert.equal(await serverPort(c), cluster.primary.port, `session ${i} on the failed standby reads on the primary`);
    }
  } finally {
    for (const c of clients) await c.end().catch(() => {});
    await fx.stop();
    await cluster.teardown();
  }
});

it('forwards sessions natively in worker processes, with cancels and failover reaching them', { timeout: 120_000 }, async () => {
  const cluster = await createCluster({ standbys: 1 });
  const fx = await startProxy(cluster, { proxy: { workers: 2, load_balance: false } });
  const clients: pg.Client[] = [];
  try {
    for (let i = 0; i < 8; i++) clients.push(await fx.connect());
    for (const [i, c] of clients.entries()) {
      for (let k = 0; k < 3; k++) assert.equal((await c.query('SELECT $1::int + $2::int AS v', [i, k])).rows[0].v, i + k);
    }
    // Worker stats arrive once a second.
    await new Promise((r) => setTimeout(r, 1500));
    const st = fx.proxy.stats();
    assert.equal(st.clients.total, 8);
    assert.equal(st.clients.native, 8, 'every settled session is forwarded natively');
    // Each worker answers SHOW POOL_NODES with the whole proxy's select_cnt.
    await new Promise((r) => setTimeout(r, 1100));
    for (const c of clients) {
      const r = await c.query<{ node_id: string; select_cnt: string }>('SHOW POOL_NODES');
      const n = Number(r.rows.find((x) => x.node_id === '0')!.select_cnt);
      assert.ok(n >= 24, `select_cnt ${n} counts all 24 SELECTs, whichever worker ran them`);
    }

    // Cancels reach natively forwarded sessions from whichever worker takes the request.
    for (let i = 0; i < 4; i++) assert.equal(await cancelThroughProxy(fx, clients[i]!, 'SELECT pg_sleep(30)', 200), '57014', `cancel ${i}`);

    // The primary leaving service (failover_sessions keep): every session, in both workers,
    // waits, and continues on a fresh connection once a primary is routable again.
    const errors = clients.map(() => undefined as { code?: string } | undefined);
    clients.forEach((c, i) => c.on('error', (e) => (errors[i] ??= e as { code?: string })));
    const pids = await Promise.all(clients.map(async (c) => (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number));
    fx.registry.update(0, { status: 'down' }, 'test: primary detached');
    await new Promise((r) => setTimeout(r, 500));
    const after = Promise.all(clients.map(async (c) => (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number));
    await new Promise((r) => setTimeout(r, 300));
    fx.registry.update(0, { status: 'up' }, 'test: primary back');
    const moved = await after;
    assert.deepEqual(errors, clients.map(() => undefined));
    moved.forEach((p, i) => assert.notEqual(p, pids[i], `session ${i} moved to a fresh connection`));
  } finally {
    for (const c of clients) await c.end().catch(() => {});
    await fx.stop();
    await cluster.teardown();
  }
});

it('holds max_clients for the whole proxy, not per worker', { timeout: 60_000 }, async () => {
  const cluster = await createCluster({ standbys: 0 });
  const fx = await startProxy(cluster, { proxy: { workers: 2, max_clients: 4 } });
  const held: pg.Client[] = [];
  try {
    for (let i = 0; i < 4; i++) held.push(await fx.connect());
    // Workers learn of each other's clients from the stats they report each second.
    await new Promise((r) => setTimeout(r, 2200));
    for (let i = 0; i < 4; i++) {
      await assert.rejects(fx.connect(), (e: { code?: string }) => e.code === '53300', 'a fifth client is refused, whichever worker takes it');
    }
    await held.pop()!.end();
    await new Promise((r) => setTimeout(r, 2200));
    const again = await fx.connect();
    held.push(again);
    assert.equal((await again.query('SELECT 1 AS x')).rows[0].x, 1, 'room again once a client left');
  } finally {
    for (const c of held) await c.end().catch(() => {});
    await fx.stop();
    await cluster.teardown();
  }
});
