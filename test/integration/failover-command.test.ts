import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCluster, SUPERUSER, SUPERUSER_PASSWORD } from '../support/pg.js';
import { parseLsn } from '../../src/backends/lsn.js';
import { clusterConfig, startPeer, waitFor } from '../failover/support.js';

const scripts = fileURLToPath(new URL('../../scripts/', import.meta.url));
const ARGS = '%d %h %p %D %m %H %M %P %r %R %N %S %T';

test('promote: command — failover_command gets every placeholder right and promotes the candidate; follow_primary_command repoints the other standby', async () => {
  const cluster = await createCluster({ standbys: 2 });
  const dir = mkdtempSync(join(tmpdir(), 'pgwd-cmd-'));
  const rec = join(dir, 'args');
  // The sample scripts use libpq's environment for credentials.
  process.env.PGUSER = SUPERUSER;
  process.env.PGPASSWORD = SUPERUSER_PASSWORD;
  const config = clusterConfig(cluster, {
    // Equal WAL on both standbys: priority breaks the tie in favour of node 2.
    backends: [{}, {}, { priority: 5 }],
    failover: {
      promote: 'command',
      failover_command: `printf '%%s\\n' ${ARGS} > ${rec}; ${join(scripts, 'failover.sh')} ${ARGS}`,
      follow_primary_command: `${join(scripts, 'follow_primary.sh')} %d %h %p %D %m %H %M %P %r %R`,
    },
  });
  const peer = await startPeer(config);
  try {
    const [p, , s2] = cluster.nodes as [typeof cluster.primary, typeof cluster.primary, typeof cluster.primary];
    await p.sql('CREATE TABLE t (id int)');
    await p.sql('INSERT INTO t VALUES (1)');
    await cluster.waitReplicated();
    await p.kill9();
    const r = await waitFor('failover result', () => peer.results.find((x) => x.kind === 'node_down'), 30_000);
    assert.equal(r.ok, true, JSON.stringify(r.steps, null, 1));
    assert.equal(r.newPrimary, 2);
    assert.equal(peer.registry.primary()?.id, 2);
    assert.equal(await s2.isInRecovery(), false);

    const args = readFileSync(rec, 'utf8').split('\n').slice(0, -1);
    assert.deepEqual(args, ['0', p.host, String(p.port), p.dataDir, '2', s2.host, '0', '0', String(s2.port), s2.dataDir, p.host, String(p.port), '0']);
    const fo = r.steps.find((s) => s.name === 'failover_command')!;
    assert.match(fo.detail, /exit 0.*node 2 promoted/s);
    const fp = r.steps.find((s) => s.name === 'follow_primary_command' && s.backend === 1)!;
    assert.ok(fp.ok, fp.detail);

    await waitFor('standby1 streams from node 2', async () => {
      const rows = await s2.sql<{ application_name: string; state: string }>('SELECT application_name, state FROM pg_stat_replication');
      return rows.length === 1 && rows[0]!.state === 'streaming' && rows[0]!.application_name === 'standby1';
    }, 15_000, 100);
    await s2.sql('INSERT INTO t VALUES (2)');
  } finally {
    delete process.env.PGUSER;
    delete process.env.PGPASSWORD;
    await peer.stop();
    await cluster.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('no standby qualifies (all lag past max_lag_bytes): no promotion, said in the log and the status', async () => {
  const cluster = await createCluster({ standbys: 1 });
  const config = clusterConfig(cluster, { proxy: { max_lag_bytes: 1024 } });
  const peer = await startPeer(config);
  try {
    const [p, s1] = cluster.nodes as [typeof cluster.primary, typeof cluster.primary];
    await s1.sql(`ALTER SYSTEM SET primary_conninfo = ''`);
    await s1.sql('SELECT pg_reload_conf()');
    await waitFor('receiver gone', async () => (await s1.sql('SELECT count(*)::int AS n FROM pg_stat_wal_receiver'))[0]!.n === 0);
    await p.sql(`CREATE TABLE big AS SELECT g FROM generate_series(1, 50000) g`);
    peer.replication.refresh();
    // The monitor has seen the primary's last position: lag is measured from it.
    const last = parseLsn(await p.currentLsn())!;
    await waitFor('primary LSN seen by the monitor', () => (peer.registry.get(0).lsn ?? 0n) >= last, 5000);
    await p.kill9();
    const r = await waitFor('failover result', () => peer.results.find((x) => x.kind === 'node_down'), 20_000);
    assert.equal(r.ok, false);
    assert.equal(r.newPrimary, null);
    assert.match(r.summary, /no promotion: no standby qualifies.*node 1 lags \d+ bytes/);
    assert.equal(await s1.isInRecovery(), true, 'nothing promoted');
    const st = peer.failover.status();
    assert.match(st.noCandidate!.summary, /max_lag_bytes 1024/);
    assert.equal(st.primary, null);
  } finally {
    await peer.stop();
    await cluster.teardown();
  }
});
