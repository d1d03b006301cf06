import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCluster } from '../support/pg.js';
import { clusterConfig, FAST_HEALTH, startPeer, waitFor } from '../failover/support.js';

test('builtin failover: kill -9 of the primary promotes the standby with the most WAL, the other follows it (its slot created), writes succeed; the old primary stays down, across a restart too', async () => {
  const cluster = await createCluster({ standbys: 2, slots: true });
  const dir = mkdtempSync(join(tmpdir(), 'pgwd-fo-'));
  const statusFile = join(dir, 'status.json');
  const config = clusterConfig(cluster, { failover: { status_file: statusFile } });
  let peer = await startPeer(config);
  try {
    const [p, s1, s2] = cluster.nodes as [typeof cluster.primary, typeof cluster.primary, typeof cluster.primary];
    assert.equal(peer.registry.primary()?.id, 0, 'startup finds the primary');
    assert.deepEqual(peer.registry.list().map((b) => [b.status, b.role]), [['up', 'primary'], ['up', 'standby'], ['up', 'standby']]);

    // standby1 stops receiving WAL, so standby2 holds more: the lowest id is not the best.
    await s1.sql(`ALTER SYSTEM SET primary_conninfo = ''`);
    await s1.sql('SELECT pg_reload_conf()');
    await waitFor('standby1 receiver gone', async () => (await s1.sql('SELECT count(*)::int AS n FROM pg_stat_wal_receiver'))[0]!.n === 0);
    await p.sql('CREATE TABLE t (id int primary key, at text)');
    await p.sql(`INSERT INTO t SELECT g, 'before' FROM generate_series(1, 100) g`);
    await s2.waitReplay(await p.currentLsn());

    const t0 = Date.now();
    await p.kill9();
    const result = await waitFor('failover result', () => peer.results.find((r) => r.kind === 'node_down' && r.ids.includes(0)), 20_000);
    const promotedAfter = Date.parse(result.newPrimaryAt!) - t0;
    console.log(`# kill -9 → new primary in registry after ${promotedAfter} ms (detected ${Date.parse(result.detectedAt!) - t0} ms; request took ${result.durationMs} ms incl. follow check); health ${JSON.stringify({ ...FAST_HEALTH, password: undefined })}`);
    assert.equal(result.ok, true, JSON.stringify(result.steps));
    assert.equal(result.newPrimary, 2, result.candidate?.summary);
    assert.equal(result.candidate?.id, 2);
    assert.match(result.candidate!.rejected.find((r) => r.id === 1)!.reason, /less WAL/);
    assert.equal(peer.registry.primary()?.id, 2);
    assert.equal(peer.registry.get(0).status, 'down');
    assert.equal(await s2.isInRecovery(), false);

    // standby1 now streams from standby2 and gets everything, the rows written before the kill too.
    const repl = await waitFor('standby1 streams from the new primary', async () => {
      const r = await s2.sql<{ state: string }>('SELECT state FROM pg_stat_replication');
      return r.length === 1 && r[0]!.state === 'streaming' ? r : undefined;
    }, 15_000, 100);
    assert.equal(repl.length, 1);
    assert.deepEqual(await s2.sql(`SELECT slot_name, active FROM pg_replication_slots`), [{ slot_name: 'standby1', active: true }]);
    await s2.sql(`INSERT INTO t SELECT g, 'after' FROM generate_series(101, 110) g`);
    await s1.waitReplay(await s2.currentLsn(), 15_000);
    assert.deepEqual(await s1.sql('SELECT count(*)::int AS n FROM t'), [{ n: 110 }]);
    assert.ok(result.steps.some((s) => s.name === 'follow check' && s.backend === 1 && s.ok), JSON.stringify(result.steps));

    // The old primary comes back as a primary: it is a false primary and stays detached.
    await p.start();
    await waitFor('old primary seen alive', () => peer.registry.get(0).pgStatus === 'up' && peer.registry.get(0).pgRole === 'primary', 10_000, 50);
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(peer.registry.get(0).status, 'down');
    assert.equal(peer.registry.primary()?.id, 2);

    // Restart of the peer: the status file keeps node 0 down although it answers as a primary.
    await peer.stop();
    assert.equal(JSON.parse(readFileSync(statusFile, 'utf8')).backends[0].status, 'down');
    peer = await startPeer(config);
    assert.equal(peer.registry.get(0).status, 'down');
    assert.equal(peer.registry.primary()?.id, 2);
    assert.equal(peer.registry.get(1).status, 'up');

    // The operator attaches it: refused, it is a second primary.
    const att = await peer.failover.attach(0);
    assert.equal(att.ok, false);
    assert.equal(peer.registry.get(0).status, 'down');
    assert.match(att.steps.map((s) => s.detail).join(' '), /second primary/);
  } finally {
    await peer.stop();
    await cluster.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a standby dies: no promotion, reads move off it, failover_command notified; it returns and auto_failback attaches it; an operator detach is respected', async () => {
  const cluster = await createCluster({ standbys: 2 });
  const dir = mkdtempSync(join(tmpdir(), 'pgwd-fo-'));
  const rec = join(dir, 'calls');
  const config = clusterConfig(cluster, {
    failover: {
      auto_failback: true,
      failover_command: `echo failover %d %m %P %H %r >> ${rec}`,
      failback_command: `echo failback %d %h %p %m >> ${rec}`,
    },
  });
  const peer = await startPeer(config);
  try {
    const s1 = cluster.standbys[0]!;
    assert.deepEqual(peer.registry.readableStandbys(config.proxy.max_lag_bytes).map((b) => b.id), [1, 2]);
    await s1.kill9();
    peer.health.checkNow(1, 'test: proxy saw its connection break');
    const r = await waitFor('node_down result', () => peer.results.find((x) => x.kind === 'node_down'), 10_000);
    assert.equal(r.ok, true, JSON.stringify(r.steps));
    assert.equal(peer.registry.get(1).status, 'down');
    assert.equal(peer.registry.primary()?.id, 0, 'no promotion');
    assert.equal(await cluster.primary.isInRecovery(), false);
    assert.deepEqual(peer.registry.readableStandbys(config.proxy.max_lag_bytes).map((b) => b.id), [2]);
    const p = cluster.primary;
    assert.equal(readFileSync(rec, 'utf8'), `failover 1 0 0 ${p.host} ${p.port}\n`);

    await s1.start();
    // The registry says up as soon as it is attached; the result comes after failback_command.
    const fb = await waitFor('auto_failback', () => peer.results.find((x) => x.kind === 'node_up'), 15_000, 50);
    assert.match(fb.reason, /auto_failback/);
    assert.equal(peer.registry.get(1).status, 'up');
    assert.equal(peer.registry.get(1).role, 'standby');
    assert.match(readFileSync(rec, 'utf8'), new RegExp(`failback 1 ${s1.host} ${s1.port} 0\\n$`));

    // An operator's detach is not undone by auto_failback; attach is.
    await peer.failover.detach(2);
    assert.equal(peer.registry.get(2).status, 'down');
    await new Promise((res) => setTimeout(res, 1500));
    assert.equal(peer.registry.get(2).status, 'down');
    const a = await peer.failover.attach(2);
    assert.equal(a.ok, true);
    assert.equal(peer.registry.get(2).status, 'up');
    assert.equal(existsSync(rec), true);
    assert.equal(peer.failover.status().history.length >= 4, true);
  } finally {
    await peer.stop();
    await cluster.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
});
