// Test helpers for the proxy: a Proxy in front of a test-bed cluster, with roles set in the
// registry (as the health checker would), plus runners for psql and pgbench through it.
import net from 'node:net';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { parseConfig, type Config } from '../../src/config/index.js';
import { BackendRegistry } from '../../src/backends/registry.js';
import { silentLogger, createLogger, type Logger } from '../../src/log.js';
import { createProxy, type ProxyService } from '../../src/proxy/index.js';
import * as codec from '../../src/protocol/codec.js';
import { type PgCluster, SUPERUSER, SUPERUSER_PASSWORD, pgBin, run } from './pg.js';

export interface ProxyFixture {
  proxy: ProxyService;
  registry: BackendRegistry;
  config: Config;
  host: string;
  port: number;
  dir: string;
  /** pg client config through the proxy, as the superuser. */
  client(extra?: Partial<pg.ClientConfig>): pg.ClientConfig;
  connect(extra?: Partial<pg.ClientConfig>): Promise<pg.Client>;
  stop(): Promise<void>;
}

export interface ProxyFixtureOptions {
  auth?: 'trust' | 'md5' | 'scram-sha-256';
  /** Lines of the users file; default: the superuser with its plain password. */
  users?: string[];
  proxy?: Record<string, unknown>;
  /** Standbys get weight 1, the primary this (default 0: reads go to standbys only). */
  primaryWeight?: number;
  logger?: Logger;
  /** More backends after the cluster's nodes (e.g. one where nothing listens), all standbys. */
  extraBackends?: { host: string; port: number; weight?: number }[];
  onBackendError?: (id: number, err: Error) => void;
}

export async function startProxy(cluster: PgCluster, opts: ProxyFixtureOptions = {}): Promise<ProxyFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'pgwd-proxy-'));
  const usersFile = join(dir, 'userlist.txt');
  writeFileSync(usersFile, (opts.users ?? [`"${SUPERUSER}" "${SUPERUSER_PASSWORD}"`]).join('\n') + '\n');
  const config = parseConfig(
    {
      log: { level: 'silent' },
      proxy: { host: '127.0.0.1', port: 1, ...opts.proxy },
      auth: { method: opts.auth ?? 'trust', users_file: usersFile },
      backends: [
        ...cluster.nodes.map((n, i) => ({ name: n.name, host: n.host, port: n.port, weight: i === 0 ? (opts.primaryWeight ?? 0) : 1 })),
        ...(opts.extraBackends ?? []).map((b, i) => ({ name: `extra${i}`, host: b.host, port: b.port, weight: b.weight ?? 1 })),
      ],
    },
    'test-config',
  );
  // Port 0 is not a valid config value for operators, but the proxy takes it (ephemeral port).
  if (opts.proxy?.port === undefined) config.proxy.port = 0;
  const registry = new BackendRegistry(config);
  config.backends.forEach((_, i) => registry.update(i, { status: 'up', role: i === 0 ? 'primary' : 'standby', pgStatus: 'up', pgRole: i === 0 ? 'primary' : 'standby' }, 'test'));
  const logger = opts.logger ?? (process.env.PROXY_TEST_LOG ? createLogger({ level: 'debug', pretty: false }) : silentLogger);
  const proxy = createProxy({ config, registry, logger, ...(opts.onBackendError ? { onBackendError: opts.onBackendError } : {}) });
  const a = await proxy.listen();
  const fx: ProxyFixture = {
    proxy,
    registry,
    config,
    host: '127.0.0.1',
    port: a.port,
    dir,
    client: (extra = {}) => ({ host: '127.0.0.1', port: a.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres', ...extra }),
    connect: async (extra = {}) => {
      const c = new pg.Client(fx.client(extra));
      await c.connect();
      return c;
    },
    stop: async () => {
      await proxy.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return fx;
}

/** libpq environment for client tools through the proxy. */
export function libpqEnv(fx: ProxyFixture, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(fx.port), PGUSER: SUPERUSER, PGPASSWORD: SUPERUSER_PASSWORD, PGDATABASE: 'postgres', PGSSLMODE: 'disable', ...extra };
}

export function psql(fx: ProxyFixture, sql: string, extra: Record<string, string> = {}): Promise<string> {
  return run(pgBin('psql'), ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-c', sql], { asPostgres: false, env: libpqEnv(fx, extra) });
}

export function pgbench(fx: ProxyFixture, args: string[]): Promise<string> {
  return run(pgBin('pgbench'), args, { asPostgres: false, env: libpqEnv(fx) });
}

/** Sums a backend's share from `SELECT current_setting($$port$$)::int` answers. */
export async function serverPort(c: pg.Client): Promise<number> {
  const r = await c.query<{ p: number }>("SELECT current_setting($$port$$)::int AS p");
  return r.rows[0]!.p;
}

/** The BackendKeyData a pg client was given at startup. */
export function backendKey(c: pg.Client): { processID: number; secretKey: number } {
  return c as unknown as { processID: number; secretKey: number };
}

/**
 * Runs `sql` on `c` and, `afterMs` later, sends a CancelRequest for it to the proxy on a
 * fresh connection. Resolves to the query's SQLSTATE (null if it succeeded), or 'timeout'
 * when it is still running 10 s later.
 */
export async function cancelThroughProxy(fx: ProxyFixture, c: pg.Client, sql: string, afterMs = 300): Promise<string | null> {
  const q = c.query(sql).then(
    () => null,
    (e: { code?: string }) => e.code ?? String(e),
  );
  await new Promise((r) => setTimeout(r, afterMs));
  const s = net.connect({ host: fx.host, port: fx.port });
  await once(s, 'connect');
  const { processID, secretKey } = backendKey(c);
  s.end(codec.cancelRequest(processID, secretKey));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((r) => (timer = setTimeout(() => r('timeout'), 10_000)));
  try {
    return await Promise.race([q, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `cond` every 10 ms until it holds; fails with `what` after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
