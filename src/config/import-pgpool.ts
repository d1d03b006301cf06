// Converts a pgpool-II 4.x pgpool.conf into a pgwatchdog configuration tree. Pure: text in,
// { tree, skipped, notes } out; the CLI reads and writes the files. Every setting the file sets
// is either carried over or listed in `skipped` with the reason, so an operator sees exactly
// what the migration leaves behind. Settings the file does not set keep pgwatchdog's defaults.
import { isAbsolute, resolve } from 'node:path';
import { stringify } from 'yaml';

export interface Skipped {
  key: string;
  value: string;
  why: string;
}

export interface ImportResult {
  /** The pgwatchdog configuration (only the keys the pgpool file decided). */
  tree: Record<string, unknown>;
  /** Settings of the file that were carried over (by their pgpool names), in file order. */
  carried: string[];
  /** Settings of the file that were not carried over, in file order. */
  skipped: Skipped[];
  /** Behaviour that differs although the setting was carried. */
  notes: string[];
}

export class PgpoolConfError extends Error {}

interface Setting {
  value: string;
  line: number;
}

/** Parses pgpool.conf syntax (PostgreSQL's GUC file format): `name [=] value [# comment]`. */
export function parsePgpoolConf(text: string): Map<string, Setting> {
  const out = new Map<string, Setting>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?\s*(.*)$/.exec(raw);
    if (!m || raw.trimStart().startsWith('#')) {
      if (raw.trim() !== '' && !raw.trimStart().startsWith('#')) throw new PgpoolConfError(`line ${i + 1}: cannot parse "${raw.trim()}"`);
      return;
    }
    const rest = m[2]!;
    let value: string;
    let after: string;
    if (rest.startsWith("'")) {
      value = '';
      let j = 1;
      for (; j < rest.length; j++) {
        const c = rest[j]!;
        if (c === "'" && rest[j + 1] === "'") {
          value += "'";
          j++;
        } else if (c === '\\' && j + 1 < rest.length) value += rest[++j];
        else if (c === "'") break;
        else value += c;
      }
      if (j >= rest.length) throw new PgpoolConfError(`line ${i + 1}: unterminated quoted value for ${m[1]}`);
      after = rest.slice(j + 1);
    } else {
      const t = /^([^\s#]*)(.*)$/.exec(rest)!;
      value = t[1]!;
      after = t[2]!;
    }
    if (after.trim() !== '' && !after.trim().startsWith('#')) throw new PgpoolConfError(`line ${i + 1}: unexpected "${after.trim()}" after the value of ${m[1]}`);
    // pgpool takes the last of repeated settings, as PostgreSQL does.
    const key = m[1]!.toLowerCase();
    out.delete(key);
    out.set(key, { value, line: i + 1 });
  });
  return out;
}

const BOOL: Record<string, boolean> = { on: true, off: false, true: true, false: false, yes: true, no: false, '1': true, '0': false };
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };
/** The placeholders pgpool expands in failover/failback/follow-primary commands; pgwatchdog has all of them. */
const PGPOOL_PLACEHOLDERS = new Set(['d', 'h', 'p', 'D', 'm', 'H', 'M', 'P', 'r', 'R', 'N', 'S', '%']);

// Settings with no counterpart, grouped by why. A key is matched whole or, with a trailing
// digit suffix (per-node settings), by its stem.
const NO_COUNTERPART: [string, string[]][] = [
  ['PCP is replaced by the admin HTTP API (admin.host/admin.port; the pcp_* tools do not speak it)', ['pcp_listen_addresses', 'pcp_port', 'pcp_socket_dir']],
  ['pgwatchdog listens on TCP only', ['socket_dir', 'unix_socket_directories', 'unix_socket_group', 'unix_socket_permissions', 'pcp_socket_dir']],
  ['pgwatchdog has no pre-forked children: one event loop serves every client (proxy.workers adds processes)', ['child_life_time', 'child_max_connections', 'reserved_connections', 'listen_backlog_multiplier', 'serialize_accept', 'process_management_mode', 'process_management_strategy', 'min_spare_children', 'max_spare_children']],
  ['pool_hba.conf and pool_passwd are not read: write the users file (auth.users_file, pgbouncer\'s userlist.txt format) and pick auth.method', ['enable_pool_hba', 'pool_passwd', 'allow_clear_text_frontend_auth', 'authentication_timeout', 'pool_key']],
  ['only these TLS settings are carried: ssl, ssl_cert, ssl_key, ssl_ca_cert (Node\'s defaults apply to the rest)', ['ssl_ca_cert_dir', 'ssl_crl_file', 'ssl_ciphers', 'ssl_prefer_server_ciphers', 'ssl_ecdh_curve', 'ssl_dh_params_file', 'ssl_passphrase_command']],
  ['pgwatchdog logs JSON lines on stdout (log.level only); route them with your service manager', ['log_destination', 'log_line_prefix', 'log_connections', 'log_disconnections', 'log_hostname', 'log_statement', 'log_per_node_statement', 'log_client_messages', 'log_standby_delay', 'syslog_facility', 'syslog_ident', 'log_error_verbosity', 'client_min_messages', 'logging_collector', 'log_directory', 'log_filename', 'log_file_mode', 'log_truncate_on_rotation', 'log_rotation_age', 'log_rotation_size', 'log_backend_messages', 'notice_per_node_statement', 'pid_file_name', 'logdir']],
  ['the pool is per (user, database, backend) with no per-child slots; proxy.pool.max_per_backend bounds it', ['max_pool', 'connection_cache']],
  ['pgwatchdog runs streaming replication only: native replication mode has no counterpart', ['replicate_select', 'insert_lock', 'lobj_lock_table', 'replication_stop_on_mismatch', 'failover_if_affected_tuples_mismatch', 'replication_mode', 'replication_timeout']],
  ['routing is by statement class (reads to the load-balance node, writes to the primary); this pgpool routing rule has no counterpart', ['ignore_leading_white_space', 'read_only_function_list', 'primary_routing_query_pattern_list', 'database_redirect_preference_list', 'app_name_redirect_preference_list', 'allow_sql_comments', 'statement_level_load_balance', 'black_query_pattern_list', 'black_function_list', 'white_function_list', 'black_memqcache_table_list', 'white_memqcache_table_list', 'prefer_lower_delay_standby', 'delay_threshold_by_time', 'user_redirect_preference_list', 'load_balance_on_timeout']],
  ['a session reads its own writes by causal reads (proxy.causal_reads): after a write commits its reads wait on the primary until its standby has replayed it, instead of pgpool\'s pinning of the transaction, session or tables to the primary', ['disable_load_balance_on_write', 'dml_adaptive_object_relationship_list']],
  ['pgwatchdog\'s replication monitor logs in with the health-check credentials and runs on the health-check schedule', ['sr_check_period', 'sr_check_user', 'sr_check_password', 'sr_check_database']],
  ['pgwatchdog has no online recovery: rebuild a failed node (pg_rewind or a new base backup) and `pgwatchdog attach N`', ['recovery_user', 'recovery_password', 'recovery_1st_stage_command', 'recovery_2nd_stage_command', 'recovery_timeout', 'client_idle_limit_in_recovery']],
  ['pgwatchdog finds the primary on every health check; there is no separate search', ['search_primary_node_timeout']],
  ['a backend shut down cleanly is seen by the health check like any failure', ['failover_on_backend_shutdown']],
  ['auto_failback acts on the next health check of a standby that streams again', ['auto_failback_interval']],
  ['peers watch each other through Raft over the watchdog WebSockets (watchdog.tick_ms, election_timeout_ticks), not a separate life check', ['wd_lifecheck_method', 'wd_interval', 'heartbeat_hostname', 'heartbeat_port', 'heartbeat_device', 'heartbeat_destination', 'heartbeat_destination_port', 'heartbeat_device', 'wd_heartbeat_port', 'wd_heartbeat_keepalive', 'wd_heartbeat_deadtime', 'wd_life_point', 'wd_lifecheck_query', 'wd_lifecheck_dbname', 'wd_lifecheck_user', 'wd_lifecheck_password', 'wd_monitoring_interfaces_list']],
  ['the cluster is the fixed list watchdog.peers, agreed by Raft; peers are not added or removed by timeouts', ['wd_remove_shutdown_nodes', 'wd_lost_node_removal_timeout', 'wd_no_show_node_removal_timeout', 'wd_ipc_socket_dir']],
  ['decisions are taken by Raft majority: with an even number of peers half the votes is not a majority, and one peer cannot vote twice', ['enable_consensus_with_half_votes', 'allow_multiple_failover_requests_from_node']],
  ['pgwatchdog has no query cache', ['memory_cache_enabled', 'memqcache_method', 'memqcache_memcached_host', 'memqcache_memcached_port', 'memqcache_total_size', 'memqcache_max_num_cache', 'memqcache_expire', 'memqcache_auto_cache_invalidation', 'memqcache_maxcache', 'memqcache_cache_block_size', 'memqcache_oiddir', 'cache_safe_memqcache_table_list', 'cache_unsafe_memqcache_table_list', 'clear_memqcache_on_escalation']],
  ['pgwatchdog has no relation cache: it does not parse table names', ['relcache_expire', 'relcache_size', 'check_temp_table', 'check_unlogged_table', 'enable_shared_relcache', 'relcache_query_target']],
  ['a session that sits idle is not cut off in this version', ['client_idle_limit', 'idle_session_timeout']],
  ['pgwatchdog runs `ping` from its PATH to probe trusted_servers (iputils-ping)', ['ping_path']],
  ['the peer\'s number is its place in watchdog.peers (start --name PEER picks it)', ['pgpool_node_id']],
];
const NO_COUNTERPART_BY_KEY = new Map<string, string>(NO_COUNTERPART.flatMap(([why, keys]) => keys.map((k) => [k, why] as [string, string])));

class Converter {
  readonly skipped: Skipped[] = [];
  readonly notes: string[] = [];
  private readonly used = new Set<string>();
  private readonly skippedKeys = new Set<string>();

  constructor(
    readonly settings: Map<string, Setting>,
    private readonly confDir: string,
  ) {}

  /** A setting's value, marking it as handled. */
  get(key: string): string | undefined {
    const s = this.settings.get(key);
    if (s) this.used.add(key);
    return s?.value;
  }

  /** Records a setting as not carried (once: the first reason given is the one that counts). */
  skip(key: string, why: string): void {
    const s = this.settings.get(key);
    if (!s || this.skippedKeys.has(key)) return;
    this.skippedKeys.add(key);
    this.used.add(key);
    this.skipped.push({ key, value: s.value, why });
  }

  bool(key: string): boolean | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    const b = BOOL[v.toLowerCase()];
    if (b === undefined) this.skip(key, `"${v}" is not a boolean (on/off)`);
    return b;
  }

  /** An integer, with PostgreSQL-style units when the value has one; `unitMs` is the unit of a bare number. */
  millis(key: string, unitMs: number): number | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    const m = /^\s*(-?\d+)\s*(ms|s|min|h|d)?\s*$/.exec(v);
    if (!m) {
      this.skip(key, `"${v}" is not a number${unitMs === 1 ? ' of milliseconds' : ''}`);
      return undefined;
    }
    return Number(m[1]) * (m[2] ? UNIT_MS[m[2]]! : unitMs);
  }

  int(key: string): number | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    if (!/^\s*-?\d+\s*$/.test(v)) {
      this.skip(key, `"${v}" is not an integer`);
      return undefined;
    }
    return Number(v);
  }

  /** A path in pgpool.conf, relative to the pgpool.conf's directory, made absolute. */
  path(p: string): string {
    return isAbsolute(p) ? p : resolve(this.confDir, p);
  }

  handled(key: string): boolean {
    return this.used.has(key);
  }

  carried(): string[] {
    return [...this.settings.keys()].filter((k) => this.used.has(k) && !this.skippedKeys.has(k));
  }

  /** Every setting not handled yet, with its reason. */
  finish(): void {
    for (const [key, s] of this.settings) {
      if (this.used.has(key)) continue;
      const stem = key.replace(/\d+$/, '');
      const why = NO_COUNTERPART_BY_KEY.get(key) ?? NO_COUNTERPART_BY_KEY.get(stem) ?? 'not a pgpool-II 4.x setting this converter knows';
      this.skipped.push({ key, value: s.value, why });
    }
    this.skipped.sort((a, b) => this.settings.get(a.key)!.line - this.settings.get(b.key)!.line);
  }

  /** Numbered settings (`backend_hostname0`, `hostname1` …): the indexes present, ascending. */
  indexes(stem: string): number[] {
    const re = new RegExp(`^${stem}(\\d+)$`);
    const ids = new Set<number>();
    for (const k of this.settings.keys()) {
      const m = re.exec(k);
      if (m) ids.add(Number(m[1]));
    }
    return [...ids].sort((a, b) => a - b);
  }
}

function logLevel(v: string): string | undefined {
  const l = v.toLowerCase();
  if (/^debug[1-5]$/.test(l)) return 'debug';
  return { info: 'info', notice: 'info', log: 'info', warning: 'warn', error: 'error', fatal: 'fatal', panic: 'fatal' }[l];
}

/** Checks a failover/failback/follow command's placeholders; returns the reason it cannot be carried, if any. */
function placeholderProblem(cmd: string): string | undefined {
  for (let i = 0; i < cmd.length; i++) {
    if (cmd[i] !== '%') continue;
    const c = cmd[++i];
    if (c === undefined) return 'it ends with a lone "%"';
    if (!PGPOOL_PLACEHOLDERS.has(c)) return `placeholder "%${c}" has no counterpart (pgwatchdog expands %d %h %p %D %m %H %M %P %r %R %N %S %T %%)`;
  }
  return undefined;
}

/** A command pgpool runs verbatim, for a pgwatchdog template: literal % doubled, pgpool's $_IP_$ as %V. */
function vipTemplate(cmd: string): string {
  return cmd.replaceAll('%', '%%').replaceAll('$_IP_$', '%V');
}

function convertProxy(c: Converter, tree: Record<string, Record<string, unknown>>): void {
  const proxy: Record<string, unknown> = {};
  const listen = c.get('listen_addresses');
  if (listen !== undefined) {
    const addrs = listen.split(',').map((a) => a.trim()).filter(Boolean);
    const first = addrs[0];
    if (first === undefined) c.skip('listen_addresses', 'empty: pgpool then listens on its unix socket only, pgwatchdog always on TCP');
    else {
      proxy.host = first === '*' ? '0.0.0.0' : first === 'localhost' ? '127.0.0.1' : first;
      if (addrs.length > 1) c.notes.push(`listen_addresses lists ${addrs.length} addresses; proxy.host takes one (${first}): use 0.0.0.0 to listen on all`);
    }
  }
  const port = c.int('port');
  if (port !== undefined) proxy.port = port;
  const children = c.int('num_init_children');
  if (children !== undefined) {
    // pgpool serves at most num_init_children clients at once, each holding at most one connection per backend.
    proxy.max_clients = children;
    proxy.pool = { max_per_backend: children };
  }
  const lb = c.bool('load_balance_mode');
  if (lb !== undefined) proxy.load_balance = lb;
  const delay = c.get('delay_threshold');
  if (delay !== undefined) {
    if (!/^\d+$/.test(delay)) c.skip('delay_threshold', `"${delay}" is not a number of bytes`);
    else if (Number(delay) === 0) c.notes.push(`delay_threshold = 0 (pgpool: no lag limit): pgwatchdog keeps proxy.max_lag_bytes at its default`);
    else proxy.max_lag_bytes = Number(delay);
  }
  const write = c.get('write_function_list');
  if (write !== undefined && write.trim() !== '') {
    const names = write.split(',').map((f) => f.trim()).filter(Boolean);
    const plain = names.filter((f) => /^[A-Za-z_][A-Za-z0-9_.]*$/.test(f));
    if (plain.length > 0) proxy.write_functions = plain;
    if (plain.length < names.length) c.notes.push(`write_function_list: regular expressions are not carried (${names.filter((f) => !plain.includes(f)).join(', ')}); proxy.write_functions takes function names`);
  }
  const life = c.millis('connection_life_time', 1000);
  if (life !== undefined) {
    if (life > 0) ((proxy.pool ??= {}) as Record<string, unknown>).idle_timeout_ms = life;
    else c.notes.push('connection_life_time = 0 (pgpool: cached connections never expire): proxy.pool.idle_timeout_ms keeps its default');
  }
  const reset = c.get('reset_query_list');
  if (reset !== undefined) {
    // The proxy rolls back an open transaction itself before the reset, so ABORT is not needed.
    const queries = reset.split(';').map((q) => q.trim()).filter((q) => q !== '' && !/^abort$/i.test(q));
    ((proxy.pool ??= {}) as Record<string, unknown>).reset_query = queries.join('; ');
  }
  if (c.bool('ssl')) {
    const cert = c.get('ssl_cert');
    const key = c.get('ssl_key');
    const ca = c.get('ssl_ca_cert');
    if (!cert || !key) c.skip('ssl', 'ssl = on needs ssl_cert and ssl_key');
    else proxy.tls = { cert_file: c.path(cert), key_file: c.path(key), ...(ca ? { ca_file: c.path(ca) } : {}) };
  } else {
    for (const k of ['ssl_cert', 'ssl_key', 'ssl_ca_cert']) c.skip(k, 'ssl is off');
  }
  if (Object.keys(proxy).length > 0) tree.proxy = proxy;
}

const HC_KEYS: [string, string, 'ms' | 's' | 'int' | 'str'][] = [
  ['health_check_period', 'period_ms', 's'],
  ['health_check_timeout', 'timeout_ms', 's'],
  ['connect_timeout', 'connect_timeout_ms', 'ms'],
  ['health_check_max_retries', 'max_retries', 'int'],
  ['health_check_retry_delay', 'retry_delay_ms', 's'],
  ['health_check_user', 'user', 'str'],
  ['health_check_password', 'password', 'str'],
  ['health_check_database', 'database', 'str'],
];

/** The health-check section for the global keys (suffix '') or one backend's overrides (suffix 'N'). */
function convertHealthCheck(c: Converter, suffix: string): Record<string, unknown> {
  const hc: Record<string, unknown> = {};
  for (const [pg, ours, kind] of HC_KEYS) {
    const key = pg + suffix;
    if (kind === 'str') {
      const v = c.get(key);
      if (v === undefined) continue;
      if (v === '') {
        if (ours === 'password') c.skip(key, 'empty: pgpool then takes the password from pool_passwd; set health_check.password (as ${ENV_VAR})');
        else if (ours === 'database') c.skip(key, 'empty: pgpool then tries postgres and template1; pgwatchdog checks health_check.database (default postgres)');
        else c.skip(key, 'empty');
      } else if (ours === 'password' && /^(md5|AES|SCRAM-SHA-256\$)/.test(v)) {
        c.skip(key, 'an encrypted or hashed password cannot log in: set health_check.password to the plain password (as ${ENV_VAR})');
      } else hc[ours] = v;
      continue;
    }
    const n = kind === 'int' ? c.int(key) : c.millis(key, kind === 's' ? 1000 : 1);
    if (n === undefined) continue;
    if (n < 0) c.skip(key, 'negative');
    else if (n === 0 && ours === 'period_ms') c.skip(key, '0 turns pgpool\'s health check off; pgwatchdog always checks (period_ms keeps its default, 1000)');
    else if (n === 0 && ours !== 'max_retries' && ours !== 'retry_delay_ms') c.skip(key, `0 means no timeout in pgpool; pgwatchdog always bounds a check (${ours} keeps its default)`);
    else hc[ours] = n;
  }
  return hc;
}

function convertBackends(c: Converter): Record<string, unknown>[] {
  const ids = c.indexes('backend_hostname');
  const out: Record<string, unknown>[] = [];
  for (const id of ids) {
    const host = c.get(`backend_hostname${id}`)!;
    if (host === '') {
      c.skip(`backend_hostname${id}`, 'empty: no backend');
      continue;
    }
    if (id !== out.length) c.notes.push(`backend ${id} becomes backend ${out.length}: pgwatchdog numbers backends by their place in the list`);
    if (host.startsWith('/')) {
      c.skip(`backend_hostname${id}`, 'a unix socket directory: pgwatchdog reaches backends over TCP');
      continue;
    }
    const b: Record<string, unknown> = { host };
    const name = c.get(`backend_application_name${id}`);
    if (name) b.name = name;
    const port = c.int(`backend_port${id}`);
    if (port !== undefined) b.port = port;
    const w = c.get(`backend_weight${id}`);
    if (w !== undefined) {
      if (Number.isFinite(Number(w)) && Number(w) >= 0) b.weight = Number(w);
      else c.skip(`backend_weight${id}`, `"${w}" is not a non-negative number`);
    }
    const dir = c.get(`backend_data_directory${id}`);
    if (dir) b.data_dir = dir;
    const flag = c.get(`backend_flag${id}`);
    if (flag !== undefined) {
      const flags = flag.split('|').map((f) => f.trim().toUpperCase());
      if (flags.includes('DISALLOW_TO_FAILOVER')) b.failover = 'disallow';
      if (flags.includes('ALWAYS_PRIMARY') || flags.includes('ALWAYS_MASTER')) {
        b.failover = 'disallow';
        c.notes.push(`backend ${id}: ${flag} — pgwatchdog has no "always primary" node; it is marked failover: disallow and its role is read from the server`);
      }
      const unknown = flags.filter((f) => !['ALLOW_TO_FAILOVER', 'DISALLOW_TO_FAILOVER', 'ALWAYS_PRIMARY', 'ALWAYS_MASTER'].includes(f));
      if (unknown.length > 0) c.notes.push(`backend_flag${id}: ${unknown.join(', ')} not understood`);
    }
    const hc = convertHealthCheck(c, String(id));
    if (Object.keys(hc).length > 0) b.health_check = hc;
    out.push(b);
  }
  for (const stem of ['backend_port', 'backend_weight', 'backend_data_directory', 'backend_flag', 'backend_application_name']) {
    for (const id of c.indexes(stem)) if (!c.handled(`${stem}${id}`)) c.skip(`${stem}${id}`, `no backend_hostname${id}`);
  }
  return out;
}

function convertFailover(c: Converter, tree: Record<string, unknown>): void {
  const f: Record<string, unknown> = {};
  const cmd = (pgKey: string, ours: string) => {
    const v = c.get(pgKey);
    if (v === undefined || v === '') return;
    const problem = placeholderProblem(v);
    if (problem) c.skip(pgKey, problem);
    else f[ours] = v;
  };
  cmd('failover_command', 'failover_command');
  cmd('follow_primary_command', 'follow_primary_command');
  cmd('follow_master_command', 'follow_primary_command'); // pgpool 4.1 and earlier
  cmd('failback_command', 'failback_command');
  // In pgpool the failover command is what promotes; without one nothing is promoted.
  if (f.failover_command) f.promote = 'command';
  else c.notes.push('no failover_command: pgpool would promote nothing, pgwatchdog promotes the most advanced standby itself (failover.promote: builtin); set failover.promote: command to keep your own script in charge');
  for (const [pg, ours] of [
    ['failover_on_backend_error', 'failover_on_backend_error'],
    ['detach_false_primary', 'detach_false_primary'],
    ['auto_failback', 'auto_failback'],
  ] as const) {
    const b = c.bool(pg);
    if (b !== undefined) f[ours] = b;
  }
  if (f.failover_on_backend_error === true) c.notes.push('failover_on_backend_error: pgwatchdog rechecks the backend at once on an error instead of failing it over on the error alone');
  if (Object.keys(f).length > 0) tree.failover = f;
}

function convertWatchdog(c: Converter, tree: Record<string, unknown>): void {
  const wdKeys = [...c.settings.keys()].filter((k) =>
    /^(wd_|other_pgpool_|other_wd_|hostname\d|pgpool_port\d|heartbeat_|delegate_ip|if_|arping_|trusted_servers|ping_path|failover_require_consensus|failover_when_quorum_exists|enable_consensus_with_half_votes|allow_multiple_failover_requests_from_node|clear_memqcache_on_escalation)/.test(k),
  );
  const use = c.bool('use_watchdog');
  if (!use) {
    for (const k of wdKeys) c.skip(k, 'use_watchdog is off');
    return;
  }
  const wd: Record<string, unknown> = {};
  const peers: { name: string; host: string; port?: number; priority?: number }[] = [];
  const proxyPort = c.settings.get('port')?.value;
  const addPeer = (host: string, wdPort: number | undefined, pgpoolPort: string | undefined, pgpoolPortKey: string) => {
    peers.push({ name: host, host, ...(wdPort !== undefined ? { port: wdPort } : {}) });
    if (pgpoolPort !== undefined && pgpoolPort !== (proxyPort ?? '9999')) {
      c.skip(pgpoolPortKey, `every peer's proxy listens on proxy.port (${proxyPort ?? 9999}); a peer on another port needs its own config file`);
    }
  };
  const hostIds = c.indexes('hostname');
  if (hostIds.length > 0) {
    // pgpool 4.2+: every node of the cluster, this one included, as hostnameN/wd_portN/pgpool_portN.
    for (const id of hostIds) {
      const host = c.get(`hostname${id}`)!;
      const wdPort = c.int(`wd_port${id}`);
      const pgPort = c.get(`pgpool_port${id}`);
      if (host === '') {
        for (const k of [`hostname${id}`, `wd_port${id}`, `pgpool_port${id}`]) c.skip(k, 'empty hostname: no peer');
        continue;
      }
      addPeer(host, wdPort, pgPort, `pgpool_port${id}`);
    }
    for (const stem of ['wd_port', 'pgpool_port']) for (const id of c.indexes(stem)) if (!c.handled(`${stem}${id}`)) c.skip(`${stem}${id}`, `no hostname${id}`);
    c.notes.push('watchdog.name is not set: start each peer with --name (its host name as listed in watchdog.peers)');
  } else {
    // pgpool 4.1 and earlier: this node (wd_hostname/wd_port) and the others (other_pgpool_hostnameN …).
    const self = c.get('wd_hostname');
    if (self) {
      addPeer(self, c.int('wd_port'), undefined, 'port');
      wd.name = self;
    }
    for (const id of c.indexes('other_pgpool_hostname')) {
      const host = c.get(`other_pgpool_hostname${id}`)!;
      const wdPort = c.int(`other_wd_port${id}`);
      const pgPort = c.get(`other_pgpool_port${id}`);
      if (host === '') {
        for (const k of [`other_pgpool_hostname${id}`, `other_wd_port${id}`, `other_pgpool_port${id}`]) c.skip(k, 'empty hostname: no peer');
        continue;
      }
      addPeer(host, wdPort, pgPort, `other_pgpool_port${id}`);
    }
  }
  // Names must be unique; peers sharing a host (a test rig) are told apart by their port.
  const counts = new Map<string, number>();
  for (const p of peers) counts.set(p.host, (counts.get(p.host) ?? 0) + 1);
  for (const p of peers) if (counts.get(p.host)! > 1) p.name = `${p.host}-${p.port ?? 9000}`;
  if (typeof wd.name === 'string') wd.name = peers[0]!.name;
  // wd_priority is the priority of the node this file configures: known only when the file
  // names that node (wd_hostname, pgpool 4.1 and earlier).
  const priority = c.int('wd_priority');
  if (priority !== undefined) {
    if (typeof wd.name === 'string') peers[0]!.priority = priority;
    else c.skip('wd_priority', "it is this pgpool node's own priority, and this file does not say which of hostnameN this node is: set watchdog.peers[].priority on that peer");
  }
  if (peers.length > 0) wd.peers = peers;
  if (peers.length === 1) c.notes.push('only one watchdog peer: decisions need a majority, so run three');

  const key = c.get('wd_authkey');
  if (key) wd.auth_key = key;
  else c.notes.push('no wd_authkey: set watchdog.auth_key (as ${ENV_VAR}) so only your peers can join');
  for (const [pg, ours] of [
    ['failover_require_consensus', 'require_consensus'],
    ['failover_when_quorum_exists', 'failover_when_quorum_exists'],
  ] as const) {
    const b = c.bool(pg);
    if (b !== undefined) wd[ours] = b;
  }
  const trusted = c.get('trusted_servers');
  if (trusted) wd.trusted_servers = trusted.split(',').map((s) => s.trim()).filter(Boolean);

  const vip = c.get('delegate_ip');
  const withPath = (cmd: string, dirKey: string): string => {
    // pgpool prefixes a relative command's first word with if_cmd_path / arping_path.
    const dir = c.get(dirKey);
    return dir && !cmd.trimStart().startsWith('/') ? `${dir.replace(/\/$/, '')}/${cmd.trimStart()}` : cmd;
  };
  const up = c.get('if_up_cmd');
  const down = c.get('if_down_cmd');
  const arping = c.get('arping_cmd');
  const esc = c.get('wd_escalation_command');
  const deEsc = c.get('wd_de_escalation_command');
  if (vip) {
    const escalation = [esc ? vipTemplate(esc) : '', up ? vipTemplate(withPath(up, 'if_cmd_path')) : ''].filter(Boolean).join(' && ');
    // pgpool only warns when arping fails; so does this (the address is up already).
    const announce = arping ? ` && { ${vipTemplate(withPath(arping, 'arping_path'))} || true; }` : '';
    const deEscalation = [deEsc ? `${vipTemplate(deEsc)}` : '', down ? vipTemplate(withPath(down, 'if_cmd_path')) : ''].filter(Boolean).join('; ');
    if (escalation === '' || deEscalation === '') {
      c.notes.push('delegate_ip is set but if_up_cmd/if_down_cmd (or the escalation commands) are empty: write watchdog.vip.escalation_command and de_escalation_command');
      c.skip('delegate_ip', 'no commands to bring the address up and down');
    } else {
      const dev = /\bdev\s+(\S+)/.exec(up ?? '')?.[1];
      wd.vip = { address: vip, ...(dev ? { interface: dev.replace(/:.*$/, '') } : {}), escalation_command: escalation + announce, de_escalation_command: deEscalation };
      c.notes.push('watchdog.vip: pgpool ran wd_escalation_command, if_up_cmd and arping_cmd in turn; pgwatchdog runs escalation_command, which chains them (review it)');
    }
  }
  // What the VIP conversion did not take: empty settings, and everything when there is no VIP.
  for (const k of ['delegate_ip', 'if_cmd_path', 'arping_path', 'if_up_cmd', 'if_down_cmd', 'arping_cmd', 'wd_escalation_command', 'wd_de_escalation_command']) {
    if (c.settings.get(k)?.value === '') c.skip(k, 'empty');
    else if (!vip) c.skip(k, 'no delegate_ip: pgwatchdog runs escalation commands as part of watchdog.vip');
    else if (!c.handled(k)) c.skip(k, 'not used: the command it serves is not set');
  }
  tree.watchdog = wd;
}

/**
 * Converts pgpool.conf text. `confFile` locates relative paths (ssl_cert …), which pgpool
 * reads relative to its configuration directory.
 */
export function importPgpoolConf(text: string, confFile: string): ImportResult {
  const c = new Converter(parsePgpoolConf(text), resolve(confFile, '..'));
  const tree: Record<string, unknown> = {};

  // pgpool 4.1 and earlier: master_slave_mode + master_slave_sub_mode = 'stream'.
  if (c.bool('master_slave_mode') === false) c.skip('master_slave_mode', 'pgwatchdog runs streaming replication only (master_slave_mode = on, sub mode stream)');
  const mode = c.get('backend_clustering_mode');
  const subMode = c.get('master_slave_sub_mode');
  if (mode !== undefined && mode !== 'streaming_replication') {
    c.skip('backend_clustering_mode', 'pgwatchdog runs streaming replication only');
    c.notes.push(`backend_clustering_mode = ${mode}: the result assumes streaming replication`);
  }
  if (subMode !== undefined && subMode !== 'stream') c.skip('master_slave_sub_mode', 'pgwatchdog runs streaming replication only');

  const level = c.get('log_min_messages');
  if (level !== undefined) {
    const l = logLevel(level);
    if (l) tree.log = { level: l };
    else c.skip('log_min_messages', `"${level}" is not a pgpool log level`);
  }
  convertProxy(c, tree as Record<string, Record<string, unknown>>);
  // pool_passwd and pool_hba.conf are not converted (their formats differ); the users file is.
  tree.auth = { method: 'scram-sha-256', users_file: 'userlist.txt' };
  c.notes.push('auth: clients log in with scram-sha-256 against userlist.txt next to this file (pgbouncer format: "user" "password or SCRAM secret"); write it from your pool_passwd, or choose auth.method');
  tree.backends = convertBackends(c);
  const hc = convertHealthCheck(c, '');
  if (Object.keys(hc).length > 0) tree.health_check = hc;
  convertFailover(c, tree);
  convertWatchdog(c, tree);
  c.finish();
  return { tree, carried: c.carried(), skipped: c.skipped, notes: c.notes };
}

/** Values of these settings are secrets: never echoed into the output or the terminal. */
const SECRET = /password$|authkey|passphrase/;

/** The YAML file: a header, the configuration, and what was left behind as comments. */
export function renderImport(result: ImportResult, source: string, version: string): string {
  const lines = [
    `# pgwatchdog configuration converted from ${source} by \`pgwatchdog import-pgpool-conf\` ${version}.`,
    '# Review it (the notes at the end), then: pgwatchdog check-config -c THIS_FILE',
    '# Secrets belong in the environment: replace them with ${ENV_VAR}.',
    stringify(result.tree, { lineWidth: 0 }).trimEnd(),
  ];
  if (result.skipped.length > 0) {
    lines.push('', `# Not carried over from ${source} (${result.skipped.length}):`);
    for (const s of result.skipped) lines.push(`#   ${describeSkipped(s)}`);
  }
  if (result.notes.length > 0) {
    lines.push('', '# Notes:');
    for (const n of result.notes) lines.push(`#   ${n}`);
  }
  return `${lines.join('\n')}\n`;
}

export function describeSkipped(s: Skipped): string {
  const value = SECRET.test(s.key) && s.value !== '' ? '(hidden)' : `'${s.value}'`;
  return `${s.key} = ${value}: ${s.why}`;
}
