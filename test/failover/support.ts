// Shared set-up for the health/failover integration tests: a config over a test-bed
// cluster, and the registry → HealthChecker → FailoverEngine chain the peer builds.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig, type Config } from '../../src/config/index.js';
import type { FailoverResult } from '../../src/failover/index.js';
import { Peer } from '../../src/peer.js';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import { SUPERUSER, SUPERUSER_PASSWORD, type PgCluster } from '../support/pg.js';

// timeout 1 s, not 0.5: on a loaded 2-core test machine a slow fork + SCRAM must not fail a healthy primary over.
export const FAST_HEALTH = { period_ms: 500, timeout_ms: 1000, connect_timeout_ms: 1000, max_retries: 1, retry_delay_ms: 200, user: SUPERUSER, password: SUPERUSER_PASSWORD };

export function clusterConfig(cluster: PgCluster, over: { health_check?: object; failover?: object; proxy?: object; backends?: object[] } = {}): Config {
  // Clients are trusted; the users file gives the proxy the password to log into the backends.
  const usersFile = join(cluster.dir, 'userlist.txt');
  writeFileSync(usersFile, `"${SUPERUSER}" "${SUPERUSER_PASSWORD}"\n`);
  return parseConfig(
    {
      auth: { method: 'trust', users_file: usersFile },
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

/** A peer that also records every failover result its engine emitted, in order. */
export type TestPeer = Peer & { results: FailoverResult[] };

/** The real peer (src/peer.ts), its proxy and admin API on ephemeral loopback ports, with its results recorded. */
export async function startPeer(config: Config, logger: Logger = testLogger()): Promise<TestPeer> {
  config.proxy.host = '127.0.0.1';
  config.proxy.port = 0;
  config.admin.host = '127.0.0.1';
  config.admin.port = 0; // the admin API too: never the default 9898 that parallel tests would share
  const peer = new Peer(config, logger);
  const results: FailoverResult[] = [];
  peer.failover.on('result', (r) => results.push(r));
  await peer.start();
  return Object.assign(peer, { results });
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
