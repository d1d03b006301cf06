// An idle peer stays quiet: with no traffic and nothing changing on the backends, the
// replication monitor's samples (each with a new send time) emit no registry 'change', so
// nothing is logged, gossiped or mirrored to proxy workers per sample.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import cluster from 'node:cluster';
import { BackendRegistry } from '../../src/backends/registry.js';
import { HealthChecker } from '../../src/backends/health.js';
import { ReplicationMonitor } from '../../src/backends/replication.js';
import { createProxy } from '../../src/proxy/index.js';
import { silentLogger } from '../../src/log.js';
import { createCluster } from '../support/pg.js';
import { clusterConfig, waitFor } from '../failover/support.js';

test('an idle peer: samples go on, but no registry change and no message to the proxy workers', async () => {
  const pgc = await createCluster({ standbys: 1 });
  const config = clusterConfig(pgc, { health_check: { period_ms: 100 }, proxy: { workers: 2, host: '127.0.0.1' } });
  config.proxy.port = 0; // (ephemeral: not a value operators may configure)
  const registry = new BackendRegistry(config);
  const health = new HealthChecker({ config, registry, logger: silentLogger });
  const monitor = new ReplicationMonitor({ config, registry, logger: silentLogger });
  monitor.follow(health);
  const proxy = createProxy({ config, registry, logger: silentLogger });
  const sent: string[] = [];
  try {
    health.start();
    monitor.start();
    registry.update(0, { status: 'up', role: 'primary' }, 'test');
    registry.update(1, { status: 'up', role: 'standby' }, 'test');
    await proxy.listen();
    // Everything the supervisor sends its workers from now on.
    for (const w of Object.values(cluster.workers ?? {})) {
      if (!w) continue;
      const send = w.send.bind(w);
      w.send = ((m: { type: string }, ...rest: never[]) => {
        sent.push(m.type);
        return send(m, ...rest);
      }) as typeof w.send;
    }
    await waitFor('replication settled', () => registry.get(1).replicationState === 'streaming' && registry.get(1).lagBytes === 0 && registry.get(1).lagMs === 0, 30_000);
    await new Promise((r) => setTimeout(r, 500));
    const changes: string[] = [];
    let samples = 0;
    registry.on('change', (c) => changes.push(`${c.id}: ${c.reason} ${JSON.stringify(c.after, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`));
    registry.on('sampled', () => samples++);
    sent.length = 0;
    await new Promise((r) => setTimeout(r, 1500));
    console.log(`# idle 1.5 s: ${samples} samples, ${changes.length} registry changes, ${sent.filter((t) => t !== 'others').length} registry messages to workers`);
    assert.ok(samples >= 10, `the monitor kept sampling: ${samples}`);
    assert.deepEqual(changes, [], 'no registry change while nothing changes');
    assert.deepEqual(sent.filter((t) => t === 'registry' || t === 'sampled'), [], 'nothing mirrored to the workers');
  } finally {
    await proxy.close();
    await monitor.stop();
    await health.stop();
    await pgc.teardown();
  }
});
