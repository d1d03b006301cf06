import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { parseConfig } from '../../src/config/index.js';
import { BackendRegistry } from '../../src/backends/registry.js';
import { HealthChecker, type HealthDownEvent, type HealthUpEvent } from '../../src/backends/health.js';
import { ReplicationMonitor } from '../../src/backends/replication.js';
import { silentLogger } from '../../src/log.js';
import { createCluster } from '../support/pg.js';
import { FAST_HEALTH, waitFor } from '../failover/support.js';

test('health check: a black-holed backend is declared down within timeout×(retries+1)+retries×delay, without delaying a healthy one', async () => {
  // Accepts TCP and never says a word: the startup packet goes unanswered, as with a hung server.
  const sockets: Socket[] = [];
  const hole = createServer((s) => {
    sockets.push(s);
    s.pause();
  });
  await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r));
  const holePort = (hole.address() as { port: number }).port;
  const cluster = await createCluster({ standbys: 0 });
  const hc = { ...FAST_HEALTH, period_ms: 500, timeout_ms: 500, max_retries: 1, retry_delay_ms: 200 };
  const config = parseConfig(
    {
      auth: { method: 'trust' },
      // The hole's settings come from a per-backend override of a slower global section.
      backends: [
        { host: '127.0.0.1', port: holePort, health_check: { timeout_ms: hc.timeout_ms, max_retries: hc.max_retries, retry_delay_ms: hc.retry_delay_ms } },
        { host: cluster.primary.host, port: cluster.primary.port },
      ],
      health_check: { ...hc, timeout_ms: 5000, max_retries: 3, retry_delay_ms: 1000 },
    },
    'test',
  );
  const registry = new BackendRegistry(config);
  const health = new HealthChecker({ config, registry, logger: silentLogger });
  const downs: (HealthDownEvent & { ms: number })[] = [];
  const ups: (HealthUpEvent & { ms: number })[] = [];
  try {
    const t0 = Date.now();
    health.on('down', (e) => downs.push({ ...e, ms: Date.now() - t0 }));
    health.on('up', (e) => ups.push({ ...e, ms: Date.now() - t0 }));
    health.start();
    await waitFor('the black hole declared down', () => downs.length > 0, 5000);
    const bound = hc.timeout_ms * (hc.max_retries + 1) + hc.max_retries * hc.retry_delay_ms;
    console.log(`# black-holed port declared down after ${downs[0]!.ms} ms (bound ${bound} ms, settings ${JSON.stringify({ ...hc, password: undefined })})`);
    assert.equal(downs[0]!.id, 0);
    assert.equal(downs[0]!.attempts, 2);
    assert.ok(downs[0]!.ms >= bound - 50, `not before its retries: ${downs[0]!.ms} ms`);
    // The timeouts end the attempts (no wait for the OS's TCP timeout); the slack is for timers
    // firing late on a loaded 2-core machine: the printed figure is the measure, not this bound.
    assert.ok(downs[0]!.ms <= bound + 1500, `within the bound: ${downs[0]!.ms} ms > ${bound} ms`);
    // Backends are checked concurrently: the healthy one answered before the hung one's first
    // attempt could even time out (checked one after the other, it would come after it).
    assert.equal(ups[0]?.id, 1);
    assert.ok(ups[0]!.ms < hc.timeout_ms, `healthy backend checked after ${ups[0]!.ms} ms, not before the hung one's first timeout (${hc.timeout_ms} ms)`);
    assert.equal(registry.get(0).pgStatus, 'down');
    assert.equal(registry.get(1).pgStatus, 'up');
    assert.equal(registry.get(1).pgRole, 'primary');
    assert.equal(downs.length, 1, 'down is reported once, not every period');
  } finally {
    await health.stop();
    for (const s of sockets) s.destroy();
    hole.close();
    await cluster.teardown();
  }
});

test('health check: kill -9 plus checkNow is confirmed down after the retries; the restarted server is up again; replication monitor reports WAL and lag', async () => {
  const cluster = await createCluster({ standbys: 1, sync: 'first' });
  const config = parseConfig(
    {
      auth: { method: 'trust' },
      backends: cluster.nodes.map((n) => ({ host: n.host, port: n.port })),
      health_check: { ...FAST_HEALTH, period_ms: 5000 },
    },
    'test',
  );
  const registry = new BackendRegistry(config);
  const health = new HealthChecker({ config, registry, logger: silentLogger });
  const monitor = new ReplicationMonitor({ config, registry, logger: silentLogger });
  const downs: HealthDownEvent[] = [];
  health.on('down', (e) => downs.push(e));
  try {
    health.start();
    monitor.start();
    // Roles as decided by the engine (here by hand): the monitor needs to know the primary.
    registry.update(0, { status: 'up', role: 'primary' }, 'test');
    registry.update(1, { status: 'up', role: 'standby' }, 'test');
    await waitFor('both up', () => registry.get(0).pgStatus === 'up' && registry.get(1).pgStatus === 'up');
    assert.equal(registry.get(1).pgRole, 'standby');
    monitor.refresh();
    await waitFor('replication state of the standby', () => registry.get(1).replicationState === 'streaming' && registry.get(1).syncState === 'sync', 10_000);
    assert.ok(registry.get(0).lsn !== null && registry.get(1).lsn !== null);
    assert.ok(registry.get(1).lagBytes !== null && registry.get(1).lagBytes! >= 0);

    // A standby that stops replaying shows lag in bytes.
    await cluster.standbys[0]!.sql('SELECT pg_wal_replay_pause()');
    await cluster.primary.sql('CREATE TABLE filler AS SELECT g, repeat(\'x\', 100) AS t FROM generate_series(1, 20000) g');
    monitor.refresh();
    await waitFor('lag in bytes', () => (registry.get(1).lagBytes ?? 0) > 1_000_000, 10_000);
    await cluster.standbys[0]!.sql('SELECT pg_wal_replay_resume()');

    // period 5 s: only checkNow can make detection fast.
    const t0 = Date.now();
    await cluster.standbys[0]!.kill9();
    health.checkNow(1, 'test: backend connection broke');
    health.checkNow(1, 'test: a second error coalesces');
    await waitFor('standby down', () => downs.length > 0, 3000);
    const ms = Date.now() - t0;
    console.log(`# kill -9 + checkNow: down confirmed after ${ms} ms (retry_delay_ms ${FAST_HEALTH.retry_delay_ms}, max_retries ${FAST_HEALTH.max_retries})`);
    assert.ok(ms >= FAST_HEALTH.retry_delay_ms, 'the retry confirmed it, not the first error alone');
    assert.ok(ms < 2500, `checkNow did not wait for the 5 s period: ${ms} ms`);
    assert.equal(downs[0]!.attempts, 2);
    // Whichever starts the round first: the checkNow, or the kept connection's loss.
    assert.match(downs[0]!.trigger, /connection broke|health-check connection lost/);

    const ups: HealthUpEvent[] = [];
    health.on('up', (e) => ups.push(e));
    await cluster.standbys[0]!.start();
    health.checkNow(1, 'test: restarted');
    await waitFor('standby up again', () => ups.find((u) => u.id === 1), 10_000, 100);
    assert.equal(registry.get(1).pgStatus, 'up');
  } finally {
    await health.stop();
    await monitor.stop();
    await cluster.teardown();
  }
});

test('health check: checks reuse one connection between fresh logins; a backend killed with -9 is noticed by the kept connection, with no checkNow and a long period', async () => {
  const cluster = await createCluster({ standbys: 0 });
  const fresh = 4;
  const config = parseConfig(
    {
      auth: { method: 'trust' },
      backends: [{ host: cluster.primary.host, port: cluster.primary.port }],
      health_check: { ...FAST_HEALTH, period_ms: 100, fresh_login_every: fresh },
    },
    'test',
  );
  const registry = new BackendRegistry(config);
  const health = new HealthChecker({ config, registry, logger: silentLogger });
  const downs: HealthDownEvent[] = [];
  health.on('down', (e) => downs.push(e));
  const checkPids = async () =>
    (await cluster.primary.sql<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgwatchdog health check'")).map((r) => r.pid);
  try {
    health.start();
    await waitFor('up', () => registry.get(0).pgStatus === 'up');
    // Over 2 s (about 20 checks), the checks' server processes: one per fresh login, so
    // about 20 / fresh_login_every of them, where a connection per check would show ~20.
    const seen = new Set<number>();
    const checksBefore = health.view(0).checks;
    const end = Date.now() + 2000;
    while (Date.now() < end) {
      for (const pid of await checkPids()) seen.add(pid);
      await new Promise((r) => setTimeout(r, 20));
    }
    const checks = health.view(0).checks - checksBefore;
    console.log(`# ${checks} checks over 2 s used ${seen.size} server connection(s) (fresh_login_every ${fresh})`);
    assert.ok(checks >= 8, `checks ran: ${checks}`);
    assert.ok(seen.size <= Math.ceil(checks / fresh) + 1, `${seen.size} connections for ${checks} checks`);

    // A long period now: only the kept connection's loss can start a round soon.
    health.reconfigure(parseConfig({ auth: { method: 'trust' }, backends: [{ host: cluster.primary.host, port: cluster.primary.port }], health_check: { ...FAST_HEALTH, period_ms: 60_000 } }, 'test'));
    await new Promise((r) => setTimeout(r, 300)); // the loop now sleeps 60 s
    const t0 = Date.now();
    await cluster.primary.kill9();
    await waitFor('down', () => downs.length > 0, 5000);
    const ms = Date.now() - t0;
    console.log(`# kill -9 with a 60 s period: down confirmed after ${ms} ms (trigger: ${downs[0]!.trigger})`);
    assert.match(downs[0]!.trigger, /health-check connection lost/);
    assert.equal(downs[0]!.attempts, 2);
    assert.ok(ms < 3000, `noticed without waiting for the period: ${ms} ms`);
  } finally {
    await health.stop();
    await cluster.teardown();
  }
});

test('health check: a backend that refuses new connections while the kept one works is declared down at the next fresh login', async () => {
  const cluster = await createCluster({ standbys: 0 });
  await cluster.primary.sql('CREATE DATABASE hc');
  const fresh = 5;
  const period = 200;
  const config = parseConfig(
    {
      auth: { method: 'trust' },
      backends: [{ host: cluster.primary.host, port: cluster.primary.port }],
      health_check: { ...FAST_HEALTH, period_ms: period, fresh_login_every: fresh, database: 'hc' },
    },
    'test',
  );
  const registry = new BackendRegistry(config);
  const health = new HealthChecker({ config, registry, logger: silentLogger });
  const downs: HealthDownEvent[] = [];
  health.on('down', (e) => downs.push(e));
  try {
    health.start();
    await waitFor('up', () => registry.get(0).pgStatus === 'up');
    // Sessions already in "hc" keep working; new ones are refused (as with max_connections
    // reached, a smart shutdown or a pg_hba.conf change).
    await cluster.primary.sql('ALTER DATABASE hc WITH ALLOW_CONNECTIONS false');
    const t0 = Date.now();
    await waitFor('down', () => downs.length > 0, 10_000);
    const ms = Date.now() - t0;
    console.log(`# new connections refused: down confirmed after ${ms} ms (period ${period} ms, fresh_login_every ${fresh}): ${downs[0]!.error}`);
    assert.match(downs[0]!.error, /not currently accepting connections/);
    // At most fresh_login_every checks on the kept connection, then the fresh login and its retry.
    assert.ok(ms <= fresh * (period + 100) + FAST_HEALTH.retry_delay_ms + 2000, `within the fresh-login bound: ${ms} ms`);
    assert.equal(registry.get(0).pgStatus, 'down');
  } finally {
    await health.stop();
    await cluster.teardown();
  }
});
