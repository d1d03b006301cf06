import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCluster } from '../support/pg.js';

test('test bed: a row written on the primary is read on every standby, and teardown leaves nothing', async () => {
  const t0 = Date.now();
  const cluster = await createCluster({ standbys: 2 });
  const upMs = Date.now() - t0;
  try {
    assert.equal(await cluster.primary.isInRecovery(), false);
    for (const s of cluster.standbys) assert.equal(await s.isInRecovery(), true);
    await cluster.primary.sql('CREATE TABLE t (id int primary key, v text)');
    await cluster.primary.sql(`INSERT INTO t VALUES (1, 'written on primary')`);
    await cluster.waitReplicated();
    for (const s of cluster.standbys) {
      const rows = await s.sql<{ v: string }>('SELECT v FROM t WHERE id = 1');
      assert.deepEqual(rows, [{ v: 'written on primary' }], `${s.name} reads the row`);
    }
    const repl = await cluster.primary.sql<{ application_name: string; state: string }>(
      'SELECT application_name, state FROM pg_stat_replication ORDER BY application_name',
    );
    assert.deepEqual(repl.map((r) => [r.application_name, r.state]), [['standby1', 'streaming'], ['standby2', 'streaming']]);
  } finally {
    const t1 = Date.now();
    await cluster.teardown();
    console.log(`# test bed: primary + 2 standbys up in ${upMs} ms, torn down in ${Date.now() - t1} ms`);
  }
  const { existsSync } = await import('node:fs');
  assert.equal(existsSync(cluster.dir), false, 'temp dir removed');
  for (const n of cluster.nodes) assert.equal(n.pid(), undefined, `${n.name} stopped`);
});

test('test bed: kill -9, restart, promote and synchronous replication', async () => {
  const cluster = await createCluster({ standbys: 1, sync: 'first', slots: true });
  try {
    const [sync] = await cluster.primary.sql<{ sync_state: string }>('SELECT sync_state FROM pg_stat_replication');
    assert.equal(sync?.sync_state, 'sync');
    await cluster.primary.kill9();
    assert.equal(cluster.primary.pid(), undefined);
    const standby = cluster.standbys[0]!;
    await standby.promote();
    assert.equal(await standby.isInRecovery(), false);
    await standby.sql('CREATE TABLE after_promote (x int)');
  } finally {
    await cluster.teardown();
  }
});
