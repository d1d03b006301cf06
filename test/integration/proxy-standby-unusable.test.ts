// Session state that exists on the primary only: after it, the session's reads must stay on
// the primary, or a real standby answers "relation does not exist" / "cannot use
// serializable mode in a hot standby".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCluster } from '../support/pg.js';
import { startProxy, serverPort } from '../support/proxy.js';

test('temp tables and serializable sessions keep their reads on the primary; other sessions still use the standby', async () => {
  const cluster = await createCluster({ standbys: 1 });
  try {
    const fx = await startProxy(cluster);
    try {
      const standbyPort = cluster.standbys[0]!.port;
      const temp = await fx.connect();
      const other = await fx.connect();
      const serial = await fx.connect();
      try {
        assert.equal(await serverPort(temp), standbyPort, 'before: reads on the standby');
        await temp.query('CREATE TEMP TABLE scratch (x int)');
        await temp.query('INSERT INTO scratch VALUES (1), (2)');
        const rows = await temp.query<{ n: string }>('SELECT count(*) AS n FROM scratch');
        assert.equal(rows.rows[0]!.n, '2', 'the temp table is read where it lives');
        assert.equal(await serverPort(temp), cluster.primary.port, 'after a temp table every read stays on the primary');

        assert.equal(await serverPort(other), standbyPort, 'another session is unaffected');

        await serial.query('SET default_transaction_isolation = serializable');
        assert.equal(await serverPort(serial), cluster.primary.port, 'serializable reads cannot run on a hot standby');
        await serial.query('SELECT 1');

        // The same through the extended protocol: a named statement creates it, a
        // parameterised read finds it.
        const ext = await fx.connect();
        try {
          assert.equal(await serverPort(ext), standbyPort);
          await ext.query({ name: 'mk', text: 'CREATE TEMP TABLE ext_scratch (x int)' });
          await ext.query({ text: 'INSERT INTO ext_scratch VALUES ($1)', values: [7] });
          const r = await ext.query<{ x: number; p: number }>({ text: 'SELECT x, current_setting($$port$$)::int AS p FROM ext_scratch WHERE x > $1', values: [0] });
          assert.deepEqual(r.rows, [{ x: 7, p: cluster.primary.port }]);
        } finally {
          await ext.end();
        }
      } finally {
        await Promise.all([temp.end(), other.end(), serial.end()]);
      }
    } finally {
      await fx.stop();
    }
  } finally {
    await cluster.teardown();
  }
});
