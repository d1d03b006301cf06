// Shared set-up for the health/failover integration tests: a config over a test-bed
// cluster, and the registry → HealthChecker → FailoverEngine chain the peer builds.
import { parseConfig, type Config } from '../../src/config/index.js';
import { BackendRegistry } from '../../src/backends/registry.js';
import { HealthChecker } from '../../src/backends/health.js';
import { ReplicationMonitor } from '../../src/backends/replication.js';
import { FailoverEngine, type FailoverResult } from '../../src/failover/index.js';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { SUPERUSER, SUPERUSER_PASSWORD, type PgCluster, type PgNode } from '../support/pg.js';

// timeout 1 s, not 0.5: on a loaded 2-core test machine a slow fork + SCRAM must not fail a healthy primary over.
export const FAST_HEALTH = { period_ms: 500, timeout_ms: 1000, connect_timeout_ms: 1000, max_retries: 1, retry_delay_ms: 200, user: SUPERUSER, password: SUPERUSER_PASSWORD };

export function clusterConfig(cluster: PgCluster, over: { health_check?: object; failover?: object; proxy?: object; backends?: object[] } = {}): Config {
  return parseConfig(
    {
      auth: { method: 'trust' },
      backends: cluster.nodes.map((n, i) => ({ name: n.name, host: n.host, port: n.port, data_dir: n.dataDir, ...(over.backends?.[i] ?? {}) })),
      health_check: { ...FAST_HEALTH, ...over.health_check },
      failover: { replication_user: SUPERUSER, replication_password: SUPERUSER_PASSWORD, command_timeout_ms: 20_000, ...over.failover },
      proxy: { ...over.proxy },
    },
    'test',
  );
}

export function testLogger(): Logger {
  return process.env.TEST_LOG ? createLogger({ level: 'debug', pretty: false }) : silentLogger;
}

export interface Peer {
  config: Config;
  registry: BackendRegistry;
  health: HealthChecker;
  monitor: ReplicationMonitor;
  engine: FailoverEngine;
  results: FailoverResult[];
  stop(): Promise<void>;
}

/** What src/peer.ts builds, minus the proxy: registry → health → monitor → engine. */
export async function startPeer(config: Config, logger: Logger = testLogger()): Promise<Peer> {
  const registry = new BackendRegistry(config);
  const health = new HealthChecker({ config, registry, logger });
  const monitor = new ReplicationMonitor({ config, registry, logger, onConnectionLost: (id, err) => health.checkNow(id, `replication monitor connection lost: ${err.message}`) });
  const engine = new FailoverEngine({ config, registry, logger, health });
  const results: FailoverResult[] = [];
  engine.on('result', (r) => results.push(r));
  await engine.start();
  health.start();
  monitor.start();
  return {
    config,
    registry,
    health,
    monitor,
    engine,
    results,
    async stop() {
      await engine.stop();
      await health.stop();
      await monitor.stop();
    },
  };
}

export async function waitFor<T>(what: string, fn: () => T | undefined | false | null | Promise<T | undefined | false | null>, timeoutMs = 20_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Starts a server that was killed with -9. In containers whose init does not reap, the
 * dead postmaster lingers as a zombie and PostgreSQL (kill(pid, 0) succeeds on a zombie)
 * refuses to start over its postmaster.pid; the test bed's pid() already counts a zombie as
 * gone, so a stale lock file is removed when that is the case. */
export async function restartAfterKill(node: PgNode): Promise<void> {
  const pidFile = join(node.dataDir, 'postmaster.pid');
  if (existsSync(pidFile) && node.pid() === undefined) {
    rmSync(pidFile, { force: true });
    // the socket lock in unix_socket_directories (the cluster dir, the data dir's parent)
    rmSync(join(dirname(node.dataDir), `.s.PGSQL.${node.port}.lock`), { force: true });
  }
  await node.start();
}
