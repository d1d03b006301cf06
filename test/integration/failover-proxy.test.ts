// Failover seen by a client of a real peer process: kill -9 of the primary, and writes
// through the proxy succeed again on the promoted standby.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createCluster, SUPERUSER, SUPERUSER_PASSWORD } from '../support/pg.js';
import { startPeerProcess } from '../support/peer.js';
import { waitFor } from '../failover/support.js';

const HEALTH = { period_ms: 500, timeout_ms: 1000, connect_timeout_ms: 1000, max_retries: 1, retry_delay_ms: 200 };

test('through the proxy: kill -9 of the primary moves its idle sessions (failover_sessions keep), new sessions write on the promoted standby, the other standby follows', async () => {
  const cluster = await createCluster({ standbys: 2 });
  try {
    const peer = await startPeerProcess(cluster, { health_check: HEALTH });
    try {
      await peer.waitForLog((l) => l.msg === 'peer ready');
      const client = () => new pg.Client({ host: peer.host, port: peer.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
      const a = client();
      await a.connect();
      await a.query('CREATE TABLE fo (id serial primary key, at timestamptz default now())');
      await a.query('INSERT INTO fo DEFAULT VALUES');
      let aErr: { code?: string; message: string } | undefined;
      a.on('error', (e) => (aErr ??= e as { code?: string; message: string }));
      await cluster.waitReplicated();

      await cluster.primary.kill9();
      const t0 = Date.now();
      let committedAfter = -1;
      let attempts = 0;
      while (committedAfter < 0 && Date.now() - t0 < 20_000) {
        const c = client();
        c.on('error', () => undefined);
        attempts++;
        try {
          await c.connect();
          await c.query('INSERT INTO fo DEFAULT VALUES');
          committedAfter = Date.now() - t0;
        } catch {
          await new Promise((r) => setTimeout(r, 10));
        } finally {
          await c.end().catch(() => undefined);
        }
      }
      console.log(`# through the proxy: first committed write ${committedAfter} ms after kill -9 (${attempts} attempts; health ${JSON.stringify(HEALTH)})`);
      assert.ok(committedAfter >= 0, 'a write committed after the failover');

      // The session that was idle on the dead primary carries on (on the new primary: below).
      assert.equal(aErr, undefined, 'the idle session saw no error');

      const done = await peer.waitForLog((l) => l.msg?.startsWith('failover request finished') && l.kind === 'node_down');
      assert.equal(done.ok, true, JSON.stringify(done));
      const newPrimary = done.newPrimary as number;
      assert.ok(newPrimary === 1 || newPrimary === 2);
      const np = cluster.nodes[newPrimary]!;
      const other = cluster.nodes[3 - newPrimary]!;
      assert.equal(await np.isInRecovery(), false);
      const c = client();
      await c.connect();
      const port = (await c.query<{ p: number }>('INSERT INTO fo DEFAULT VALUES RETURNING current_setting($$port$$)::int AS p')).rows[0]!.p;
      assert.equal(port, np.port, 'writes go to the new primary');
      const nodes = (await c.query<{ node_id: string; status: string; role: string }>('SHOW POOL_NODES')).rows;
      assert.equal(nodes.find((n) => n.node_id === '0')!.status, 'down');
      assert.equal(nodes.find((n) => n.node_id === String(newPrimary))!.role, 'primary');
      await c.end();
      await waitFor('the other standby streams from the new primary', async () => (await np.sql<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'`))[0]!.n === 1, 15_000, 100);
      await other.waitReplay(await np.currentLsn());
      const moved = (await a.query<{ p: number }>('INSERT INTO fo DEFAULT VALUES RETURNING current_setting($$port$$)::int AS p')).rows[0]!.p;
      assert.equal(moved, np.port, 'the moved session writes on the new primary');
      await a.end().catch(() => undefined);
    } finally {
      await peer.stop();
    }
  } finally {
    await cluster.teardown();
  }
});

test('a close_idle request closes the idle pooled connections to that backend and no others', async () => {
  const { clusterConfig, startPeer } = await import('../failover/support.js');
  const cluster = await createCluster({ standbys: 1 });
  try {
    const peer = await startPeer(clusterConfig(cluster, { backends: [{ weight: 0 }, { weight: 1 }] }));
    try {
      const { host, port } = peer.proxyAddress!;
      const c = new pg.Client({ host, port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres', application_name: 'closeidle' });
      await c.connect();
      await c.query('SELECT 1');
      await c.end();
      // The session's two connections went back to the pools: one on each backend.
      const pooled = (n: typeof cluster.primary) =>
        n.sql<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'closeidle'");
      const idleOn = async (n: typeof cluster.primary) => (await pooled(n))[0]!.n;
      await waitFor('pooled connections on both backends', async () => (await idleOn(cluster.primary)) >= 1 && (await idleOn(cluster.standbys[0]!)) >= 1, 10_000);
      const primaryBefore = await idleOn(cluster.primary);
      const r = await peer.failover.request({ kind: 'close_idle', ids: [1], reason: 'test' });
      assert.equal(r.ok, true);
      await waitFor('standby pool emptied', async () => (await idleOn(cluster.standbys[0]!)) === 0, 10_000);
      assert.equal(await idleOn(cluster.primary), primaryBefore, 'the primary pool is untouched');
    } finally {
      await peer.stop();
    }
  } finally {
    await cluster.teardown();
  }
});
