// The configuration schema: every key pgwatchdog reads, its type, its default.
// Objects are strict so a misspelt key is refused instead of silently ignored.
import { z } from 'zod';

const port = z.number().int().min(1).max(65535);
const ms = z.number().int().min(0);
const positiveMs = z.number().int().min(1);

// Sizes accept bytes or a string with a unit ("16MB"), as PostgreSQL operators write them.
const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };
const size = z.unknown().transform((v, ctx): number => {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  const m = typeof v === 'string' ? /^\s*(\d+)\s*([kmgt]?b)?\s*$/i.exec(v) : null;
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a size (bytes, or a number with kB, MB, GB, TB)` });
    return z.NEVER;
  }
  return Number(m[1]) * SIZE_UNITS[(m[2] ?? 'b').toLowerCase()]!;
});

/** An array refinement that reports the second and later items sharing a key, at their own path. */
function uniqueBy<T>(key: (item: T) => string, field: string | undefined, what: string, listPath: string) {
  return (items: T[], ctx: z.RefinementCtx) => {
    const first = new Map<string, number>();
    items.forEach((item, i) => {
      const k = key(item);
      const j = first.get(k);
      if (j === undefined) first.set(k, i);
      else ctx.addIssue({ code: 'custom', path: field ? [i, field] : [i], message: `${what} "${k}" (also ${listPath}[${j}])` });
    });
  };
}

const logLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

export const healthCheckSchema = z
  .object({
    period_ms: positiveMs.default(1000).describe('Time between two checks of a backend, in ms.'),
    timeout_ms: positiveMs.default(2000).describe('One check (`SELECT pg_is_in_recovery()` with the WAL sample, after a login when the check logs in anew) gives up after this many ms.'),
    connect_timeout_ms: positiveMs.default(2000).describe('Connecting to the backend for a check gives up after this many ms.'),
    max_retries: z.number().int().min(0).default(1).describe('Failed checks retried before the backend is declared down (down after 1 + max_retries failures).'),
    retry_delay_ms: ms.default(200).describe('Pause between a failed check and its retry, in ms.'),
    fresh_login_every: z
      .number()
      .int()
      .min(1)
      .default(30)
      .describe(
        'Checks run over a connection kept open between them; every this many checks of a backend, the check logs in over a new connection instead (1: every check, as pgpool-II does). A kept connection cannot see a server that refuses new connections (max_connections reached, smart shutdown, pg_hba.conf); a round started by a backend error always logs in anew.',
      ),
    user: z.string().min(1).default('postgres').describe('User the checks log in as. The builtin promotion, follow and switchover run as this user too, so with `failover.promote: builtin` it must be a superuser.'),
    password: z.string().optional().describe('Password of `user` (use `${ENV_VAR}`).'),
    database: z.string().min(1).default('postgres').describe('Database the checks connect to.'),
  })
  .strict();

// A backend may override any health-check key; unset keys fall back to the global section.
const healthCheckOverride = z
  .object({
    period_ms: positiveMs,
    timeout_ms: positiveMs,
    connect_timeout_ms: positiveMs,
    max_retries: z.number().int().min(0),
    retry_delay_ms: ms,
    fresh_login_every: z.number().int().min(1),
    user: z.string().min(1),
    password: z.string(),
    database: z.string().min(1),
  })
  .partial()
  .strict();

export const backendSchema = z
  .object({
    name: z.string().min(1).optional().describe('A name for logs, `SHOW POOL_NODES` and the API.'),
    host: z.string().min(1).describe('Host name or address of the PostgreSQL server.'),
    port: port.default(5432).describe('Port of the PostgreSQL server.'),
    weight: z.number().min(0).default(1).describe('Load-balancing weight: the share of sessions whose reads go to this node (0: never chosen for reads).'),
    data_dir: z.string().default('').describe('The server\'s data directory, passed to commands as `%D` / `%R`.'),
    priority: z.number().int().default(0).describe('Promotion tie-breaker among equally advanced standbys (higher wins).'),
    failover: z.enum(['allow', 'disallow']).default('allow').describe('`disallow`: never promoted and never failed over automatically.'),
    health_check: healthCheckOverride.optional().describe('Overrides of the `health_check` keys for this backend; unset keys fall back to the global section.'),
  })
  .strict();

const tlsSchema = z
  .object({
    cert_file: z.string().min(1).describe('Server certificate (PEM), relative to the config file.'),
    key_file: z.string().min(1).describe('Private key of the certificate (PEM), relative to the config file.'),
    ca_file: z.string().min(1).optional().describe('CA bundle (PEM) sent with the certificate chain.'),
  })
  .strict();

export const proxySchema = z
  .object({
    host: z.string().min(1).default('0.0.0.0').describe('Address the proxy listens on (0.0.0.0: every address, the VIP included).'),
    port: port.default(9999).describe('Port applications connect to.'),
    workers: z.number().int().min(1).max(64).default(1).describe('Processes sharing the port (node:cluster); 1 runs everything in the peer\'s process.'),
    max_clients: z.number().int().min(1).default(1000).describe('Client connections served at once; more are refused.'),
    tls: tlsSchema.optional().describe('TLS for clients: SSLRequest is answered `S` when set, `N` otherwise.'),
    load_balance: z.boolean().default(true).describe('Send a session\'s reads to a load-balance node chosen by `weight` at session start.'),
    native_forwarding: z.boolean().default(true).describe('Hand sessions on the primary alone to the native forwarding addon (when built).'),
    failover_sessions: z
      .enum(['keep', 'end'])
      .default('keep')
      .describe(
        '`keep`: a session between transactions whose primary (or load-balance standby) is lost or leaves service waits, then continues on the new primary (or on the primary) with its startup parameters, SETs, prepared statements and LISTENs re-created; the client sees a pause. A statement sent as the primary died that it never read (its first reply is FATAL 57P01 `terminating connection due to unexpected postmaster exit`) is sent to the new primary, once. A session inside a transaction or COPY, or holding temporary objects, advisory locks, WITH HOLD cursors or a session-level set_config, still ends with 57P01, and the log says why. A backend ended on its own (pg_terminate_backend) while its server keeps serving still ends the session. `end`: every such session ends with 57P01.',
      ),
    max_lag_bytes: size.default(16 * 1024 * 1024).describe('A standby further behind the primary than this gets no reads (bytes, or a size such as `16MB`).'),
    causal_reads: z
      .boolean()
      .default(true)
      .describe(
        'With load balancing: after a session\'s write commits, its reads go to its standby only once that standby has replayed past the commit (the primary\'s WAL insert position sampled after it); until then to the primary. `false`: reads right after a write may miss it on an asynchronous standby.',
      ),
    causal_sample_ms: positiveMs
      .default(10)
      .describe('While a session waits for causal reads, the replication monitor samples the backend it waits on (WAL positions only) at most this often (ms), instead of every `health_check.period_ms`.'),
    write_functions: z.array(z.string().min(1)).default(['nextval', 'setval', 'pg_advisory_lock', 'pg_advisory_xact_lock', 'lo_create', 'lo_import', 'lo_unlink']).describe('Functions whose calls send a statement to the primary.'),
    pool: z
      .object({
        max_per_backend: z.number().int().min(1).default(100).describe('Pooled connections per (user, database, backend).'),
        idle_timeout_ms: ms.default(300_000).describe('A pooled connection idle this long (ms) is closed.'),
        acquire_timeout_ms: positiveMs.default(5000).describe('A session waiting longer (ms) for a backend connection gets an error.'),
        reset_query: z.string().default('DISCARD ALL').describe('Run on a connection a session gives back (skipped after plain reads and transaction control).'),
      })
      .strict()
      .default({ max_per_backend: 100, idle_timeout_ms: 300_000, acquire_timeout_ms: 5000, reset_query: 'DISCARD ALL' }).describe('Backend connection pools, one per (user, database, backend).'),
    takeover: z
      .object({
        socket: z.string().default('').describe('Unix socket where a running peer waits for its successor (`pgwatchdog restart`, `start --takeover`); empty: `<tmpdir>/pgwatchdog-<proxy.port>.takeover.sock`.'),
        session_wait_ms: ms.default(10_000).describe('During a takeover, how long (ms) a session inside a transaction, COPY or a running statement may take to reach a point where it can move; then it is ended with an error that says so.'),
      })
      .strict()
      .default({ socket: '', session_wait_ms: 10_000 })
      .describe('Online restart: how a new process takes the listener, the sessions and their backend connections over from the running one.'),
  })
  .strict();

export const authSchema = z
  .object({
    method: z.enum(['scram-sha-256', 'md5', 'trust']).default('scram-sha-256').describe('How clients authenticate to the proxy.'),
    users_file: z.string().min(1).optional().describe('Users file in pgbouncer\'s format (`"user" "password or SCRAM secret"`), relative to the config file; required unless `method` is `trust`.'),
  })
  .strict();

export const adminSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1').describe('Address of the admin HTTP API, dashboard and /metrics.'),
    port: port.default(9898).describe('Port of the admin HTTP API.'),
    token: z.string().optional().describe('Bearer token required for POST actions (attach, detach, promote, transfer); use `${ENV_VAR}`.'),
  })
  .strict();

export const failoverSchema = z
  .object({
    promote: z.enum(['builtin', 'command']).default('builtin').describe('`builtin`: `pg_promote()` on the most advanced standby; `command`: `failover_command` promotes.'),
    failover_command: z.string().default('').describe('Run when a backend fails (with `promote: builtin`, afterwards, as a notification hook). Placeholders: see Command placeholders.'),
    follow_primary_command: z.string().default('').describe('Run once per remaining standby after a promotion (empty: builtin follow via `ALTER SYSTEM SET primary_conninfo`).'),
    failback_command: z.string().default('').describe('Run when a backend is attached again.'),
    command_timeout_ms: positiveMs.default(60_000).describe('A command, promotion or follow step running longer (ms) is stopped and counted as failed.'),
    detach_false_primary: z.boolean().default(true).describe('Detach a second primary that appears, never writing to it.'),
    auto_failback: z.boolean().default(false).describe('Re-attach a down standby that streams from the primary again.'),
    synchronous: z.enum(['auto', 'off']).default('off').describe('`auto`: clear `synchronous_standby_names` while every synchronous standby is down, restore it after.'),
    failover_on_backend_error: z.boolean().default(true).describe('A broken backend connection triggers an immediate health recheck (never a failover on one error alone).'),
    status_file: z.string().default('').describe('Backend states are kept here across restarts (empty: not kept).'),
    // Used by the builtin follow step to point standbys at the new primary.
    replication_user: z.string().default('replicator').describe('Builtin follow: standbys reconnect to the new primary as this user.'),
    replication_password: z.string().optional().describe('Password of `replication_user` (use `${ENV_VAR}`).'),
  })
  .strict();

export const peerSchema = z
  .object({
    name: z.string().min(1).describe('The peer\'s name (`start --name`); unique.'),
    host: z.string().min(1).describe('Host name or address the other peers reach it at.'),
    port: port.default(9000).describe('Watchdog WebSocket port.'),
    admin_url: z.string().url().optional().describe('Its admin API URL, when not `http://host:admin.port`.'),
    priority: z.number().int().default(0).describe('Leadership moves to the highest-priority peer that is healthy and up to date.'),
  })
  .strict();

export const vipSchema = z
  .object({
    address: z.string().min(1).describe('The virtual IP (with prefix, e.g. `10.0.0.100/24`), passed to commands as `%V`.'),
    interface: z.string().min(1).default('eth0').describe('Network interface, passed to commands as `%I`.'),
    escalation_command: z.string().min(1).describe('Brings the VIP up on the new coordinator (and removes it from the other hosts first).'),
    de_escalation_command: z.string().min(1).describe('Takes the VIP down when this peer stops being coordinator, loses quorum or shuts down.'),
    command_timeout_ms: positiveMs.default(10_000).describe('An escalation command running longer (ms) is stopped and counted as failed.'),
  })
  .strict();

export const watchdogSchema = z
  .object({
    name: z.string().min(1).optional().describe('This peer\'s name in `peers` (or `start --name`).'),
    auth_key: z.string().optional().describe('Shared secret, required with two or more peers; peers that do not know it are refused (use `${ENV_VAR}`).'),
    peers: z.array(peerSchema).superRefine(uniqueBy((p) => p.name, 'name', 'duplicate peer name', 'watchdog.peers')).default([]).describe('Every peer of the cluster, this one included; empty: a single peer decides alone.'),
    require_consensus: z.boolean().default(true).describe('A backend is failed over only when a majority of peers see it down.'),
    failover_when_quorum_exists: z.boolean().default(true).describe('Without quorum, nothing is failed over.'),
    tick_ms: positiveMs.default(100).describe('Raft tick, in ms.'),
    election_timeout_ticks: z.number().int().min(2).default(10).describe('Election timeout in ticks (randomised between this and twice this).'),
    heartbeat_ticks: z.number().int().min(1).default(3).describe('Leader heartbeat interval in ticks (the lease is renewed by them; a follower times out after election_timeout_ticks without one).'),
    data_dir: z.string().default('').describe('Durable Raft log and state, relative to the config file.'),
    interlock_timeout_ms: positiveMs.default(60_000).describe('Other peers hold routing this long (ms) for a failover that has not finished.'),
    trusted_servers: z.array(z.string().min(1)).default([]).describe('Hosts a peer pings; a peer that reaches none of them gives up the VIP.'),
    vip: vipSchema.optional().describe('The virtual IP the coordinator holds.'),
    tls: tlsSchema.optional().describe('wss between peers: this peer\'s `cert_file`/`key_file`; `ca_file` verifies the other peers\' certificates.'),
    isolated_writes: z.enum(['refuse', 'allow']).default('refuse').describe('A peer cut off from the majority longer than the lease: `refuse` writes (connect through the VIP) or `allow` them, as pgpool does.'),
  })
  .strict();

export const configSchema = z
  .object({
    log: z.object({ level: logLevel.default('info').describe('Log level; `PGWATCHDOG_LOG_LEVEL` overrides it.') }).strict().default({ level: 'info' }).describe('Logging.'),
    proxy: proxySchema.default(() => proxySchema.parse({})).describe('The PostgreSQL proxy.'),
    auth: authSchema.default(() => authSchema.parse({})).describe('Client authentication.'),
    admin: adminSchema.default(() => adminSchema.parse({})).describe('The admin HTTP API.'),
    backends: z
      .array(backendSchema)
      .min(1, 'at least one backend is required')
      .superRefine(uniqueBy((b) => `${b.host}:${b.port}`, undefined, 'duplicate backend', 'backends')).describe('The PostgreSQL servers; a backend\'s id is its position in this list (0, 1, …), as in pgpool.'),
    health_check: healthCheckSchema.default(() => healthCheckSchema.parse({})).describe('Health checks: every peer checks every backend.'),
    failover: failoverSchema.default(() => failoverSchema.parse({})).describe('The failover engine.'),
    watchdog: watchdogSchema.default(() => watchdogSchema.parse({})).describe('The watchdog cluster of peers.'),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    if (cfg.watchdog.name !== undefined && cfg.watchdog.peers.length > 0 && !cfg.watchdog.peers.some((p) => p.name === cfg.watchdog.name)) {
      ctx.addIssue({ code: 'custom', path: ['watchdog', 'name'], message: `"${cfg.watchdog.name}" is not one of watchdog.peers` });
    }
    if (cfg.auth.method !== 'trust' && cfg.auth.users_file === undefined) {
      ctx.addIssue({ code: 'custom', path: ['auth', 'users_file'], message: `required when auth.method is ${cfg.auth.method}` });
    }
    if (cfg.failover.promote === 'command' && cfg.failover.failover_command === '') {
      ctx.addIssue({ code: 'custom', path: ['failover', 'failover_command'], message: 'required when failover.promote is "command"' });
    }
  });

export type Config = z.output<typeof configSchema>;
export type BackendConfig = z.output<typeof backendSchema>;
export type HealthCheckConfig = z.output<typeof healthCheckSchema>;
export type ProxyConfig = z.output<typeof proxySchema>;
export type FailoverConfig = z.output<typeof failoverSchema>;
export type WatchdogConfig = z.output<typeof watchdogSchema>;
export type PeerConfig = z.output<typeof peerSchema>;
export type VipConfig = z.output<typeof vipSchema>;

/** The health-check settings in force for one backend: its overrides over the global section. */
export function healthCheckFor(cfg: Config, backendId: number): HealthCheckConfig {
  const b = cfg.backends[backendId];
  if (!b) throw new Error(`no backend ${backendId} (have ${cfg.backends.length})`);
  return { ...cfg.health_check, ...b.health_check };
}
