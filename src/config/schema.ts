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
    period_ms: positiveMs.default(1000),
    timeout_ms: positiveMs.default(2000),
    connect_timeout_ms: positiveMs.default(2000),
    max_retries: z.number().int().min(0).default(1),
    retry_delay_ms: ms.default(200),
    user: z.string().min(1).default('postgres'),
    password: z.string().optional(),
    database: z.string().min(1).default('postgres'),
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
    user: z.string().min(1),
    password: z.string(),
    database: z.string().min(1),
  })
  .partial()
  .strict();

export const backendSchema = z
  .object({
    name: z.string().min(1).optional(),
    host: z.string().min(1),
    port: port.default(5432),
    weight: z.number().min(0).default(1),
    data_dir: z.string().default(''),
    priority: z.number().int().default(0),
    failover: z.enum(['allow', 'disallow']).default('allow'),
    health_check: healthCheckOverride.optional(),
  })
  .strict();

const tlsSchema = z
  .object({
    cert_file: z.string().min(1),
    key_file: z.string().min(1),
    ca_file: z.string().min(1).optional(),
  })
  .strict();

export const proxySchema = z
  .object({
    host: z.string().min(1).default('0.0.0.0'),
    port: port.default(9999),
    workers: z.number().int().min(1).max(64).default(1),
    max_clients: z.number().int().min(1).default(1000),
    tls: tlsSchema.optional(),
    load_balance: z.boolean().default(true),
    native_forwarding: z.boolean().default(true),
    max_lag_bytes: size.default(16 * 1024 * 1024),
    write_functions: z.array(z.string().min(1)).default(['nextval', 'setval', 'pg_advisory_lock', 'pg_advisory_xact_lock', 'lo_create', 'lo_import', 'lo_unlink']),
    pool: z
      .object({
        max_per_backend: z.number().int().min(1).default(100),
        idle_timeout_ms: ms.default(300_000),
        acquire_timeout_ms: positiveMs.default(5000),
        reset_query: z.string().default('DISCARD ALL'),
      })
      .strict()
      .default({ max_per_backend: 100, idle_timeout_ms: 300_000, acquire_timeout_ms: 5000, reset_query: 'DISCARD ALL' }),
  })
  .strict();

export const authSchema = z
  .object({
    method: z.enum(['scram-sha-256', 'md5', 'trust']).default('scram-sha-256'),
    users_file: z.string().min(1).optional(),
  })
  .strict();

export const adminSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: port.default(9898),
    token: z.string().optional(),
  })
  .strict();

export const failoverSchema = z
  .object({
    promote: z.enum(['builtin', 'command']).default('builtin'),
    failover_command: z.string().default(''),
    follow_primary_command: z.string().default(''),
    failback_command: z.string().default(''),
    command_timeout_ms: positiveMs.default(60_000),
    detach_false_primary: z.boolean().default(true),
    auto_failback: z.boolean().default(false),
    synchronous: z.enum(['auto', 'off']).default('off'),
    failover_on_backend_error: z.boolean().default(true),
    status_file: z.string().default(''),
    // Used by the builtin follow step to point standbys at the new primary.
    replication_user: z.string().default('replicator'),
    replication_password: z.string().optional(),
  })
  .strict();

export const peerSchema = z
  .object({
    name: z.string().min(1),
    host: z.string().min(1),
    port: port.default(9000),
    admin_url: z.string().url().optional(),
    // Leadership moves to the highest-priority peer that is healthy and up to date.
    priority: z.number().int().default(0),
  })
  .strict();

export const vipSchema = z
  .object({
    address: z.string().min(1),
    interface: z.string().min(1).default('eth0'),
    escalation_command: z.string().min(1),
    de_escalation_command: z.string().min(1),
    command_timeout_ms: positiveMs.default(10_000),
  })
  .strict();

export const watchdogSchema = z
  .object({
    name: z.string().min(1).optional(),
    auth_key: z.string().optional(),
    peers: z.array(peerSchema).superRefine(uniqueBy((p) => p.name, 'name', 'duplicate peer name', 'watchdog.peers')).default([]),
    require_consensus: z.boolean().default(true),
    failover_when_quorum_exists: z.boolean().default(true),
    tick_ms: positiveMs.default(100),
    election_timeout_ticks: z.number().int().min(2).default(10),
    heartbeat_ticks: z.number().int().min(1).default(1),
    data_dir: z.string().default(''),
    interlock_timeout_ms: positiveMs.default(60_000),
    trusted_servers: z.array(z.string().min(1)).default([]),
    vip: vipSchema.optional(),
    // wss between peers: this peer's certificate and key; ca_file verifies the others'.
    tls: tlsSchema.optional(),
    // A peer cut off from the majority longer than the leader lease: refuse writes (and say
    // to connect through the VIP), or keep routing them as pgpool does.
    isolated_writes: z.enum(['refuse', 'allow']).default('refuse'),
  })
  .strict();

export const configSchema = z
  .object({
    log: z.object({ level: logLevel.default('info') }).strict().default({ level: 'info' }),
    proxy: proxySchema.default(() => proxySchema.parse({})),
    auth: authSchema.default(() => authSchema.parse({})),
    admin: adminSchema.default(() => adminSchema.parse({})),
    backends: z
      .array(backendSchema)
      .min(1, 'at least one backend is required')
      .superRefine(uniqueBy((b) => `${b.host}:${b.port}`, undefined, 'duplicate backend', 'backends')),
    health_check: healthCheckSchema.default(() => healthCheckSchema.parse({})),
    failover: failoverSchema.default(() => failoverSchema.parse({})),
    watchdog: watchdogSchema.default(() => watchdogSchema.parse({})),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    if (cfg.watchdog.name !== undefined && cfg.watchdog.peers.length > 0 && !cfg.watchdog.peers.some((p) => p.name === cfg.watchdog.name)) {
      ctx.addIssue({ code: 'custom', path: ['watchdog', 'name'], message: `"${cfg.watchdog.name}" is not one of watchdog.peers` });
    }
    if (cfg.watchdog.peers.length >= 2 && !cfg.watchdog.auth_key) {
      ctx.addIssue({ code: 'custom', path: ['watchdog', 'auth_key'], message: 'required when watchdog.peers has two or more peers (it authenticates them to each other)' });
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
