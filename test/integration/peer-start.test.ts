// `pgwatchdog start` as an operator runs it: a real peer process in front of a real
// primary and standby; psql through it; clean shutdown on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createCluster, pgBin } from '../support/pg.js';
import { startPeerProcess } from '../support/peer.js';

function psql(port: number, sql: string): { code: number | null; out: string; err: string } {
  const r = spawnSync(pgBin('psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-XqAt', '-c', sql], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { code: r.status, out: r.stdout.trim(), err: r.stderr };
}

test('pgwatchdog start: finds the primary, proxies psql, routes reads to the standby, stops cleanly', async () => {
  const cluster = await createCluster({ standbys: 1 });
  try {
    // Weight 0 on the primary: every read goes to the standby (pgpool's backend_weight semantics).
    const peer = await startPeerProcess(cluster, {
      backends: cluster.nodes.map((n, i) => ({ name: n.name, host: n.host, port: n.port, weight: i === 0 ? 0 : 1 })),
    });
    try {
      const ready = await peer.waitForLog((l) => l.msg === 'peer ready');
      const backends = ready.backends as { id: number; status: string; role: string }[];
      assert.deepEqual(
        backends.map((b) => [b.status, b.role]),
        [['up', 'primary'], ['up', 'standby']],
        `the peer found the primary and the standby before it said ready: ${JSON.stringify(backends)}`,
      );
      const w = psql(peer.port, 'CREATE TABLE peer_start (x int); INSERT INTO peer_start VALUES (1); SELECT current_setting($$port$$)::int');
      assert.equal(w.code, 0, w.err);
      assert.equal(w.out, String(cluster.primary.port), 'a multi-statement write ran on the primary');
      await cluster.waitReplicated();
      const r = psql(peer.port, 'SELECT current_setting($$port$$)::int');
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, String(cluster.standbys[0]!.port), 'a read went to the standby');
      const show = psql(peer.port, 'SHOW POOL_NODES');
      assert.equal(show.code, 0, show.err);
      assert.equal(show.out.split('\n').length, 2, 'one row per backend');
    } finally {
      const t0 = Date.now();
      const code = await peer.stop();
      assert.equal(code, 0, `SIGTERM stops the peer with exit code 0 (took ${Date.now() - t0} ms; last logs: ${peer.logs.slice(-6).map((l) => l.msg).join(' | ')})`);
      assert.ok(peer.logs.some((l) => l.msg === 'peer stopped'));
    }
  } finally {
    await cluster.teardown();
  }
});

test('pgwatchdog start refuses an invalid config and an unknown --name with exit code 1', async () => {
  const cluster = await createCluster({ standbys: 0 });
  try {
    await assert.rejects(startPeerProcess(cluster, { proxy: { port: 'nope' } }), /proxy\.port/);
    await assert.rejects(
      startPeerProcess(cluster, { watchdog: { peers: [{ name: 'a', host: '127.0.0.1' }] } }, { args: ['--name', 'zz'] }),
      /--name zz is not one of watchdog.peers/,
    );
    await assert.rejects(
      startPeerProcess(cluster, { watchdog: { peers: [{ name: 'a', host: '127.0.0.1' }, { name: 'b', host: '127.0.0.1' }] } }, { args: ['--name', 'a'] }),
      /watchdog\.auth_key: required to join a watchdog cluster of 2 peers/,
    );
  } finally {
    await cluster.teardown();
  }
});
