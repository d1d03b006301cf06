// Causal reads through real peer processes, in front of a primary and a standby that applies
// WAL 300 ms late (recovery_min_apply_delay): a session reads its own writes every time, while
// its reads go back to the standby once the standby has replayed them; another connection,
// through another peer, reads a write once it names the writer's LSN
// (SET pgwatchdog.read_after_lsn). Control runs with causal reads off (or without the SET)
// show the delay does make reads miss: the tests fail without the feature.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createCluster, type PgCluster } from '../support/pg.js';
import { startPeerProcess, type PeerProcess } from '../support/peer.js';

const APPLY_DELAY_MS = 300;

function client(peer: PeerProcess): pg.Client {
  return new pg.Client({ host: peer.host, port: peer.port, user: 'postgres', database: 'postgres' });
}

/** select_cnt per node id, from SHOW POOL_NODES through the peer. */
async function selectCounts(peer: PeerProcess): Promise<number[]> {
  const c = client(peer);
  await c.connect();
  try {
    const r = await c.query<{ node_id: string; select_cnt: string }>('SHOW POOL_NODES');
    return r.rows.map((x) => Number(x.select_cnt));
  } finally {
    await c.end();
  }
}

/** Waits until the peer routes: a primary and a standby, both up. */
async function waitRouting(peer: PeerProcess): Promise<void> {
  const end = Date.now() + 20_000;
  for (;;) {
    const c = client(peer);
    try {
      await c.connect();
      const r = await c.query<{ status: string; role: string }>('SHOW POOL_NODES');
      if (r.rows.length === 2 && r.rows.every((x) => x.status === 'up') && r.rows[0]!.role === 'primary' && r.rows[1]!.role === 'standby') return;
    } catch {
      // not serving yet
    } finally {
      await c.end().catch(() => undefined);
    }
    if (Date.now() > end) throw new Error(`peer on ${peer.port} does not route to a primary and a standby`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * `clients` sessions each insert `iterations` rows and read each one back at once; half of
 * them use the extended protocol. Returns the reads that did not see their row.
 */
async function insertThenSelect(peer: PeerProcess, table: string, clients: number, iterations: number): Promise<number> {
  let misses = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, id) => {
      const c = client(peer);
      await c.connect();
      try {
        const extended = id % 2 === 1;
        for (let i = 0; i < iterations; i++) {
          if (extended) await c.query(`INSERT INTO ${table} VALUES ($1, $2)`, [id, i]);
          else await c.query(`INSERT INTO ${table} VALUES (${id}, ${i})`);
          const r = extended ? await c.query(`SELECT count(*)::int AS n FROM ${table} WHERE s = $1 AND i = $2`, [id, i]) : await c.query(`SELECT count(*)::int AS n FROM ${table} WHERE s = ${id} AND i = ${i}`);
          if (r.rows[0].n !== 1) misses++;
        }
      } finally {
        await c.end();
      }
    }),
  );
  return misses;
}

describe('causal reads (a standby 300 ms behind)', () => {
  let cluster: PgCluster;
  let causal: PeerProcess;
  let plain: PeerProcess;
  let workers: PeerProcess;

  before(async () => {
    cluster = await createCluster({ standbys: 1 });
    await cluster.primary.sql('CREATE TABLE loop_t (s int, i int, PRIMARY KEY (s, i))');
    await cluster.primary.sql('CREATE TABLE plain_t (s int, i int, PRIMARY KEY (s, i))');
    await cluster.primary.sql('CREATE TABLE across_t (i int PRIMARY KEY)');
    await cluster.waitReplicated();
    const standby = cluster.standbys[0]!;
    standby.appendConf({ recovery_min_apply_delay: `${APPLY_DELAY_MS}ms` });
    await standby.sql('SELECT pg_reload_conf()');
    // Reads to the standby only (weight 0 on the primary), so every session has a standby leg.
    const backends = cluster.nodes.map((n, i) => ({ name: n.name, host: n.host, port: n.port, data_dir: n.dataDir, weight: i === 0 ? 0 : 1 }));
    const env = { PGWATCHDOG_LOG_LEVEL: 'info' };
    [causal, plain, workers] = await Promise.all([
      startPeerProcess(cluster, { backends }, { env }),
      startPeerProcess(cluster, { backends, proxy: { causal_reads: false } }, { env }),
      // A second peer with causal reads on, its proxy in two worker processes: the monitor's
      // samples and the sessions' requests for them cross process boundaries.
      startPeerProcess(cluster, { backends, proxy: { workers: 2 } }, { env }),
    ]);
    await Promise.all([causal, plain, workers].map(waitRouting));
  });

  after(async () => {
    await Promise.all([causal, plain, workers].map((p) => p?.stop()));
    await cluster?.teardown();
  });

  it('control: with causal_reads off, a read right after a write misses it on the delayed standby', async (t) => {
    const misses = await insertThenSelect(plain, 'plain_t', 10, 10);
    t.diagnostic(`causal_reads off: ${misses} of 100 reads missed their session's row`);
    assert.ok(misses > 50, `expected most of 100 reads to miss their row without causal reads, ${misses} did`);
  });

  it('20 sessions × 200 insert-then-select never miss their row; reads return to the standby once it has replayed', async (t) => {
    const before = await selectCounts(causal);
    const misses = await insertThenSelect(causal, 'loop_t', 20, 200);
    assert.equal(misses, 0, 'every read saw the row its session had just written');
    const during = await selectCounts(causal);
    // Every read followed its own write by less than the apply delay: all went to the primary.
    assert.ok(during[0]! - before[0]! >= 4000, `reads during the loop on the primary: ${during[0]! - before[0]!}`);

    // Writes stop; once the standby has replayed them, the sessions' reads go back to it (the
    // first read of each may still go to the primary while a fresh sample is taken).
    await cluster.waitReplicated();
    await Promise.all(
      Array.from({ length: 20 }, async (_, id) => {
        const c = client(causal);
        await c.connect();
        try {
          await c.query(`INSERT INTO loop_t VALUES (${id}, 1000)`);
          // Once the standby has replayed this last write (seen on the servers directly), 50
          // reads at once: the first may go to the primary until the monitor's samples show
          // the replay; the others go to the standby.
          await cluster.standbys[0]!.waitReplay(await cluster.primary.currentLsn());
          for (let i = 0; i < 50; i++) {
            const r = await c.query(`SELECT count(*)::int AS n FROM loop_t WHERE s = ${id}`);
            assert.equal(r.rows[0].n, 201);
          }
        } finally {
          await c.end();
        }
      }),
    );
    const afterCounts = await selectCounts(causal);
    const onStandby = afterCounts[1]! - during[1]!;
    const onPrimary = afterCounts[0]! - during[0]!;
    t.diagnostic(`loop: 0 of 4000 reads missed, ${during[0]! - before[0]!} on the primary; after catching up: ${onStandby} of 1000 reads on the standby`);
    assert.equal(onStandby + onPrimary, 1000, `1000 reads counted: ${onPrimary} on the primary + ${onStandby} on the standby`);
    assert.ok(onStandby >= 800, `most reads after catching up land on the standby: ${onStandby} of 1000 (primary ${onPrimary})`);
  });

  it('another connection through another peer reads a write once it names the writer\'s LSN', async (t) => {
    const w = client(causal);
    const r = client(workers);
    await Promise.all([w.connect(), r.connect()]);
    try {
      let missesWithout = 0;
      for (let i = 0; i < 10; i++) {
        await w.query(`INSERT INTO across_t VALUES (${i})`);
        const got = await r.query(`SELECT count(*)::int AS n FROM across_t WHERE i = ${i}`);
        if (got.rows[0].n !== 1) missesWithout++;
      }
      t.diagnostic(`without read_after_lsn: ${missesWithout} of 10 reads through the other peer missed the write`);
      assert.ok(missesWithout >= 5, `control: without the LSN the other connection misses the write (${missesWithout} of 10 did)`);

      for (let i = 100; i < 140; i++) {
        await w.query(`INSERT INTO across_t VALUES (${i})`);
        // The writer's position after its commit: PostgreSQL's own function, routed to the primary.
        const lsn = (await w.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')).rows[0]!.lsn;
        // Half through the extended protocol (a named statement), half as a simple query.
        if (i % 2 === 0) await r.query(`SET pgwatchdog.read_after_lsn = '${lsn}'`);
        else await r.query({ name: `set_lsn_${i}`, text: `SET pgwatchdog.read_after_lsn = '${lsn}'` });
        const got = await r.query(`SELECT count(*)::int AS n FROM across_t WHERE i = ${i}`);
        assert.equal(got.rows[0].n, 1, `row ${i} seen after read_after_lsn ${lsn}`);
      }
      // A bad value is refused with a clear error; the session goes on.
      await assert.rejects(r.query("SET pgwatchdog.read_after_lsn = 'soon'"), (e: { code?: string; message: string }) => e.code === '22023' && /pgwatchdog\.read_after_lsn/.test(e.message));
      await assert.rejects(r.query("SET pgwatchdog.no_such = '1'"), (e: { code?: string }) => e.code === '42704');
      assert.equal((await r.query('SELECT 1 AS one')).rows[0].one, 1);
    } finally {
      await Promise.all([w.end(), r.end()]);
    }
  });
});
