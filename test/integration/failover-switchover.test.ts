import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createCluster, SUPERUSER, SUPERUSER_PASSWORD } from '../support/pg.js';
import { clusterConfig, startPeer, waitFor, type TestPeer } from '../failover/support.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Inserts rows with increasing ids into whatever the registry says is the primary,
 * reconnecting on errors; remembers the ids whose COMMIT was acknowledged. */
function writer(peer: TestPeer) {
  const acked: number[] = [];
  let next = 1;
  let errors = 0;
  let stop = false;
  const done = (async () => {
    let client: pg.Client | null = null;
    while (!stop) {
      try {
        if (!client) {
          const p = peer.registry.primary();
          if (!p) {
            await sleep(5);
            continue;
          }
          client = new pg.Client({ host: p.host, port: p.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
          client.on('error', () => undefined);
          await client.connect();
        }
        const id = next++;
        await client.query('INSERT INTO w (id) VALUES ($1)', [id]);
        acked.push(id);
      } catch {
        errors++;
        const c: pg.Client | null = client;
        client = null;
        c?.end().catch(() => undefined);
        await sleep(5);
      }
    }
    await (client as pg.Client | null)?.end().catch(() => undefined);
  })();
  return {
    acked,
    get errors() {
      return errors;
    },
    async stop() {
      stop = true;
      await done;
    },
  };
}

test('switchover: the primary is shut down cleanly first, the chosen standby promoted, zero committed rows lost; the other standby follows; an idle proxy session moves with its SET (failover_sessions keep)', async () => {
  const cluster = await createCluster({ standbys: 2 });
  const peer = await startPeer(clusterConfig(cluster));
  try {
    const [p, s1, s2] = cluster.nodes as [typeof cluster.primary, typeof cluster.primary, typeof cluster.primary];
    await p.sql('CREATE TABLE w (id int primary key)');
    await cluster.waitReplicated();
    // A session through the proxy, idle across the switchover.
    const { host, port } = peer.proxyAddress!;
    const kept = new pg.Client({ host, port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
    const keptErrors: Error[] = [];
    kept.on('error', (e) => keptErrors.push(e));
    await kept.connect();
    await kept.query("SET work_mem = '6MB'");
    const w = writer(peer);
    await waitFor('writes flowing', () => w.acked.length > 200, 10_000);
    const before = w.acked.length;
    const r = await peer.failover.promote(1, { switchover: true });
    await waitFor('writes on the new primary', () => w.acked.length > before + 200, 10_000);
    await w.stop();
    console.log(`# switchover: ${r.durationMs} ms, new primary in registry ${Date.parse(r.newPrimaryAt!) - Date.parse(r.startedAt)} ms after start; ${w.acked.length} acknowledged rows, ${w.errors} failed attempts`);
    assert.equal(r.ok, true, JSON.stringify(r.steps, null, 1));
    assert.equal(r.newPrimary, 1);
    assert.equal(r.oldPrimary, 0);
    assert.equal(peer.registry.primary()?.id, 1);
    assert.equal(peer.registry.get(0).status, 'down');
    assert.equal(p.pid(), undefined, 'old primary is shut down');
    assert.ok(r.steps.some((s) => s.name === 'shutdown old primary' && s.ok));
    const k = (await kept.query<{ wm: string; port: number }>("SELECT current_setting('work_mem') AS wm, current_setting('port')::int AS port FROM pg_class LIMIT 1 FOR UPDATE")).rows[0]!;
    assert.deepEqual(keptErrors, [], 'the idle session saw no error');
    assert.equal(k.port, s1.port, 'the session moved to the new primary');
    assert.equal(k.wm, '6MB', 'with its SET');
    await kept.end();

    const rows = await s1.sql<{ id: number }>('SELECT id FROM w ORDER BY id');
    const have = new Set(rows.map((x) => x.id));
    const lost = w.acked.filter((id) => !have.has(id));
    assert.deepEqual(lost, [], `${lost.length} acknowledged rows lost`);
    assert.ok(rows.length >= w.acked.length);

    await waitFor('standby2 follows node 1', async () => {
      const x = await s1.sql<{ state: string }>('SELECT state FROM pg_stat_replication');
      return x.length === 1 && x[0]!.state === 'streaming';
    }, 15_000, 100);
    await s2.waitReplay(await s1.currentLsn());
    assert.deepEqual(await s2.sql('SELECT count(*)::int AS n FROM w'), [{ n: rows.length }]);
  } finally {
    await peer.stop();
    await cluster.teardown();
  }
});

test('synchronous: auto — the sync standby is killed under a write load: synchronous_standby_names is cleared, writes resume; restored when it streams again', async () => {
  const cluster = await createCluster({ standbys: 1, sync: 'first' });
  const peer = await startPeer(clusterConfig(cluster, { failover: { synchronous: 'auto', auto_failback: true } }));
  try {
    const [p, s1] = cluster.nodes as [typeof cluster.primary, typeof cluster.primary];
    const [orig] = await p.sql<{ s: string }>(`SELECT current_setting('synchronous_standby_names') AS s`);
    assert.match(orig!.s, /FIRST 1/);
    await p.sql('CREATE TABLE w (id int primary key)');
    const w = writer(peer);
    await waitFor('writes flowing', () => w.acked.length > 100, 10_000);
    await s1.kill9();
    const killedAt = Date.now();
    const at = w.acked.length;
    await waitFor('writes resume', () => w.acked.length > at + 50, 15_000, 10);
    console.log(`# synchronous: auto — writes resumed ${Date.now() - killedAt} ms after kill -9 of the sync standby`);
    await w.stop();
    const [now] = await p.sql<{ s: string }>(`SELECT current_setting('synchronous_standby_names') AS s`);
    assert.equal(now!.s, '');
    // Writes resume on the reload, a moment before the engine records what it did.
    const st = await waitFor('engine status says cleared', () => (/cleared/.test(peer.failover.status().synchronous.last ?? '') ? peer.failover.status().synchronous : undefined), 5000);
    assert.equal(st.savedStandbyNames, orig!.s);

    await s1.start();
    await waitFor('synchronous replication restored', async () => (await p.sql<{ s: string }>(`SELECT current_setting('synchronous_standby_names') AS s`))[0]!.s === orig!.s, 20_000, 100);
    await waitFor('engine status says restored', () => /restored/.test(peer.failover.status().synchronous.last ?? ''), 5000);
    assert.equal(peer.failover.status().synchronous.savedStandbyNames, null);
    await waitFor('sync state back', async () => (await p.sql<{ s: string }>('SELECT sync_state AS s FROM pg_stat_replication'))[0]?.s === 'sync', 10_000, 100);
    await p.sql('INSERT INTO w VALUES (-1)'); // commits again with the standby synchronous
  } finally {
    await peer.stop();
    await cluster.teardown();
  }
});
