// Proxy benchmark: pgbench side by side against PostgreSQL directly, pgbouncer (session
// pooling), real pgwatchdog peers, and pgpool-II when installed, in one run on the test bed
// (primary + 1 streaming standby, pgbench -i -s 10). Runs are interleaved (each mode rotates
// the order of targets) so background noise hits every target alike.
//
//   npm run bench:proxy -- [--seconds 15] [--clients 16] [--threads 2] [--rounds 1]
//                          [--scale 10] [--auth trust|md5] [--workers 1]
//                          [--modes select-simple,select-extended,select-in,tpcb-N,select-connect,mixed-9-1]
//                          [--targets direct,direct-split,pgbouncer,pgwatchdog,pgwatchdog-lb,pgwatchdog-lb-nocausal,pgpool]
//                          (more targets: pgwatchdog-cluster,pgwatchdog-alone)
//                          [--peer-prof DIR] [--peer-node-args "--trace-gc …"]
//
// Targets: pgbouncer, pgpool and `pgwatchdog` (load balancing off) all send everything to the
// primary: the like-for-like comparison. `pgwatchdog-lb` balances reads over primary and
// standby (weights 1:1), with causal reads (the default); `pgwatchdog-lb-nocausal` the same
// with proxy.causal_reads off. On one machine that costs CPU even without a proxy, which
// `direct-split` shows: half the clients straight on the primary, half on the standby.
// `mixed-9-1` is 90% pgbench -S and 10% simple-update transactions per client: reads right
// after a client's writes, where causal reads keep them on the primary until the standby has
// replayed; the "standby reads" column (select_cnt from SHOW POOL_NODES) shows the share.
//
// `pgwatchdog-cluster` is a peer of a running three-peer watchdog cluster (the test bed's
// watchdog-bed.ts: the other two peers are real processes too; pgbench goes through the
// coordinator, which does the most watchdog work), `pgwatchdog-alone` the same peer config
// with no watchdog; both with the test peers' config and load balancing off, and the default
// health checks. Asking for either starts both; the summary gives the ratio per mode.
//
// --peer-prof DIR runs the pgwatchdog peer under node --cpu-prof and leaves its CPU
// profiles in DIR (written when the peer exits), to see where the proxy spends its time.
// --peer-node-args passes node/V8 options to the peer (its output is in its log file).
//
// TPS is pgbench's; p99 is computed from pgbench's per-transaction log (-l). Proxy CPU per
// transaction is also given "net of idle": less what each proxy used in 5 s with no client
// (pgwatchdog's health checks and replication samples), which otherwise weighs more the lower the
// TPS, as on a loaded machine. With load
// balancing on, pgwatchdog (and pgpool) send pgbench -S reads to the standby while pgbouncer
// and "direct" use the primary: the table says so in its "reads on" column.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createCluster, freePort, pgBin, SUPERUSER, SUPERUSER_PASSWORD, type PgCluster } from '../test/support/pg.js';
import { startPeerProcess, type PeerProcess } from '../test/support/peer.js';
import { bed, oneHolder } from '../test/support/watchdog-bed.js';

// ---- options ----------------------------------------------------------------------------------

const argv = process.argv.slice(2);
function opt(name: string, def: string): string {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : def;
}
const flag = (name: string) => argv.includes(`--${name}`);

if (flag('help') || flag('h')) {
  console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split("\n").slice(0, 15).join('\n'));
  process.exit(0);
}

const SECONDS = Number(opt('seconds', '15'));
const CLIENTS = Number(opt('clients', '16'));
const THREADS = Number(opt('threads', '2'));
const ROUNDS = Number(opt('rounds', '1'));
const SCALE = Number(opt('scale', '10'));
const WORKERS = Number(opt('workers', '1'));
const AUTH = opt('auth', 'trust');
const PEER_PROF = opt('peer-prof', '');
const PEER_NODE_ARGS = opt('peer-node-args', '').split(' ').filter(Boolean);
if (AUTH !== 'trust' && AUTH !== 'md5') throw new Error(`--auth must be trust or md5, got ${AUTH}`);
for (const [n, v] of Object.entries({ SECONDS, CLIENTS, THREADS, ROUNDS, SCALE, WORKERS })) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${n.toLowerCase()} must be a positive integer`);
}

interface Mode {
  name: string;
  args: string[];
  what: string;
  /** A pgbench script of its own (-f), written to the run's directory. */
  script?: string;
}
const ALL_MODES: Mode[] = [
  { name: 'select-simple', args: ['-S', '-M', 'simple'], what: 'pgbench -S -M simple' },
  { name: 'select-extended', args: ['-S', '-M', 'extended'], what: 'pgbench -S -M extended' },
  // pgbench -S's read with a parenthesis, as most real reads have one (count(*), now(), IN (…)).
  {
    name: 'select-in',
    args: ['-M', 'simple', '-s', String(SCALE)],
    what: "pgbench -f: SELECT abalance FROM pgbench_accounts WHERE aid IN (:aid)",
    script: '\\set aid random(1, 100000 * :scale)\nSELECT abalance FROM pgbench_accounts WHERE aid IN (:aid);\n',
  },
  { name: 'tpcb-N', args: ['-N', '-M', 'simple'], what: 'pgbench -N (writes)' },
  { name: 'select-connect', args: ['-S', '-C', '-M', 'simple'], what: 'pgbench -S -C (connection per transaction)' },
  { name: 'mixed-9-1', args: ['-b', 'select-only@9', '-b', 'simple-update@1', '-M', 'simple'], what: 'pgbench -b select-only@9 -b simple-update@1 (a write in every 10 transactions)' },
];
const writes = (m: Mode) => m.args.includes('-N') || m.args.some((a) => a.startsWith('simple-update'));
const modeNames = opt('modes', ALL_MODES.map((m) => m.name).join(',')).split(',');
const MODES = ALL_MODES.filter((m) => modeNames.includes(m.name));
if (MODES.length !== modeNames.length) throw new Error(`--modes: unknown mode in ${modeNames.join(',')}; known: ${ALL_MODES.map((m) => m.name).join(', ')}`);
const DEFAULT_TARGETS = ['direct', 'direct-split', 'pgbouncer', 'pgwatchdog', 'pgwatchdog-lb', 'pgwatchdog-lb-nocausal', 'pgpool'] as const;
const ALL_TARGETS = [...DEFAULT_TARGETS, 'pgwatchdog-cluster', 'pgwatchdog-alone'] as const;
type TargetName = (typeof ALL_TARGETS)[number];
const targetNames = opt('targets', DEFAULT_TARGETS.join(',')).split(',') as TargetName[];
for (const t of targetNames) if (!ALL_TARGETS.includes(t)) throw new Error(`--targets: unknown target ${t}; known: ${ALL_TARGETS.join(', ')}`);

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const IDLE_SECONDS = 5;
const log = (s: string) => console.error(`[bench] ${s}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- processes: started in their own process group, all killed at exit -------------------

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();

function postgresIds(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const u = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (u.status !== 0 || g.status !== 0) throw new Error('running as root but there is no postgres OS user for pgbouncer/pgpool');
  return { uid: Number(u.stdout), gid: Number(g.stdout) };
}
const pgIds = postgresIds();

function startDaemon(name: string, cmd: string, args: string[], opts: SpawnOptions & { asPostgres?: boolean; logFile: string }): ChildProcess {
  const { asPostgres, logFile, ...rest } = opts;
  const o: SpawnOptions = { ...rest, detached: true, stdio: ['ignore', 'pipe', 'pipe'] };
  if (asPostgres && pgIds) Object.assign(o, pgIds, { env: { ...process.env, HOME: tmpdir(), ...rest.env } });
  const child = spawn(cmd, args, o);
  children.add(child);
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 200_000) out = out.slice(-100_000);
    writeFileSync(logFile, out);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  child.on('error', (e) => {
    out += `\n${name}: ${e.message}\n`;
    writeFileSync(logFile, out);
  });
  child.on('exit', () => children.delete(child));
  return child;
}

function killGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    try {
      child.kill(sig);
    } catch {
      /* already gone */
    }
  }
}

async function stopDaemon(child: ChildProcess | undefined, sig: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) {
    if (child) killGroup(child, 'SIGKILL'); // leftovers of its group (pgpool's children)
    return;
  }
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  killGroup(child, sig);
  await Promise.race([gone, sleep(5000)]);
  killGroup(child, 'SIGKILL');
}

process.on('exit', () => {
  for (const c of children) killGroup(c, 'SIGKILL');
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});
// Before createCluster installs its own hooks (which exit the process): kill ours first.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.prependListener(sig, () => {
    log(`${sig}: cleaning up`);
    for (const c of children) killGroup(c, 'SIGKILL');
    if (!cluster) process.exit(130);
  });
}

function tail(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Waits until a PostgreSQL client can run `sql` through host:port; rejects after timeoutMs. */
async function waitReady(port: number, timeoutMs: number, child: ChildProcess | undefined, sql = 'SELECT 1', user = SUPERUSER): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) throw new Error(`exited (${child.exitCode ?? child.signalCode}) before accepting connections${last ? `; last error: ${last}` : ''}`);
    const c = new pg.Client({ host: '127.0.0.1', port, user, password: SUPERUSER_PASSWORD, database: 'postgres', connectionTimeoutMillis: 2000 });
    try {
      await c.connect();
      await c.query(sql);
      await c.end();
      return;
    } catch (e) {
      last = (e as Error).message;
      await c.end().catch(() => undefined);
      await sleep(300);
    }
  }
  throw new Error(`not ready within ${timeoutMs} ms: ${last}`);
}

// ---- targets ----------------------------------------------------------------------------------

interface Target {
  name: TargetName;
  /** Where pgbench connects; several: the clients are split evenly over them. */
  ports?: number[];
  /** The proxy's process (its children are counted too: pgpool, proxy workers). */
  pid?: number;
  readsOn: string;
  error?: string;
  /** The proxy's user CPU while no client is connected, µs per second (measured before the runs). */
  idleUser?: number;
  stop(): Promise<void>;
  /** select_cnt per backend (pgwatchdog: SHOW POOL_NODES), to tell where reads went. */
  selectCounts?: () => Promise<number[]>;
}

let cluster: PgCluster | undefined;

function workDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `pgwd-bench-${name}-`));
  tempDirs.add(dir);
  if (pgIds) chownSync(dir, pgIds.uid, pgIds.gid);
  return dir;
}

function userlist(): string {
  return `"${SUPERUSER}" "${SUPERUSER_PASSWORD}"\n`;
}

async function startPgbouncer(c: PgCluster): Promise<Target> {
  const dir = workDir('pgbouncer');
  const port = await freePort();
  writeFileSync(join(dir, 'userlist.txt'), userlist());
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `postgres = host=127.0.0.1 port=${c.primary.port} dbname=postgres`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      `unix_socket_dir =`,
      `auth_type = ${AUTH}`,
      `auth_file = ${join(dir, 'userlist.txt')}`,
      'pool_mode = session',
      `max_client_conn = ${Math.max(200, CLIENTS * 4)}`,
      `default_pool_size = ${Math.max(CLIENTS * 2, 20)}`,
      'server_reset_query = DISCARD ALL',
      'ignore_startup_parameters = extra_float_digits',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      'log_connections = 0',
      'log_disconnections = 0',
      '',
    ].join('\n'),
  );
  if (pgIds) for (const f of readdirSync(dir)) chownSync(join(dir, f), pgIds.uid, pgIds.gid);
  const child = startDaemon('pgbouncer', 'pgbouncer', [join(dir, 'pgbouncer.ini')], { asPostgres: true, logFile: join(dir, 'stdout.log') });
  const stop = async () => {
    await stopDaemon(child, 'SIGINT');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitReady(port, 15_000, child);
  } catch (e) {
    const error = `pgbouncer did not start: ${(e as Error).message}\n${tail(join(dir, 'pgbouncer.log'))}\n${tail(join(dir, 'stdout.log'))}`;
    await stop();
    return { name: 'pgbouncer', readsOn: '-', error, stop: async () => undefined };
  }
  return { name: 'pgbouncer', ports: [port], pid: child.pid, readsOn: 'primary', stop };
}

async function startPgwatchdog(c: PgCluster, name: 'pgwatchdog' | 'pgwatchdog-lb' | 'pgwatchdog-lb-nocausal'): Promise<Target> {
  const LB = name !== 'pgwatchdog';
  const dir = workDir(name);
  const [port, adminPort] = [await freePort(), await freePort()];
  writeFileSync(join(dir, 'userlist.txt'), userlist());
  // JSON is YAML: no need for a YAML writer.
  const config = {
    log: { level: 'warn' },
    proxy: {
      host: '127.0.0.1',
      port,
      workers: WORKERS,
      max_clients: Math.max(200, CLIENTS * 4),
      load_balance: LB,
      causal_reads: name !== 'pgwatchdog-lb-nocausal',
      pool: { max_per_backend: Math.max(CLIENTS * 2, 20) },
    },
    auth: { method: AUTH, users_file: join(dir, 'userlist.txt') },
    admin: { host: '127.0.0.1', port: adminPort },
    backends: [
      { name: 'primary', host: '127.0.0.1', port: c.primary.port, weight: 1 },
      { name: 'standby1', host: '127.0.0.1', port: c.standbys[0]!.port, weight: 1 },
    ],
    health_check: { user: SUPERUSER, password: SUPERUSER_PASSWORD, period_ms: 1000 },
    failover: { status_file: join(dir, 'status') },
    watchdog: { name: 'bench', peers: [], data_dir: join(dir, 'raft') },
  };
  const file = join(dir, 'pgwatchdog.yaml');
  writeFileSync(file, JSON.stringify(config, null, 2));
  const logFile = join(dir, 'peer.log');
  const prof = PEER_PROF ? ['--cpu-prof', `--cpu-prof-dir=${PEER_PROF}`] : [];
  const child = startDaemon('pgwatchdog', process.execPath, [...prof, ...PEER_NODE_ARGS, join(ROOT, 'bin/pgwatchdog.js'), 'start', '-c', file], { cwd: ROOT, logFile });
  const stop = async () => {
    await stopDaemon(child, 'SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // Ready when the proxy answers and routes writes (the primary is known), and with load
    // balancing, when the standby is up too (else every read would go to the primary).
    await waitReady(port, 30_000, child, 'CREATE TEMP TABLE bench_ready (x int)');
    if (LB) {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const cl = new pg.Client({ host: '127.0.0.1', port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
        await cl.connect();
        const r = await cl.query<{ status: string; role: string }>('SHOW POOL_NODES').catch(() => ({ rows: [] as { status: string; role: string }[] }));
        await cl.end();
        if (r.rows.filter((x) => x.status === 'up').length === 2) break;
        if (Date.now() > deadline) throw new Error(`standby not up in SHOW POOL_NODES: ${JSON.stringify(r.rows)}`);
        await sleep(300);
      }
    }
  } catch (e) {
    const error = `pgwatchdog peer did not serve: ${(e as Error).message}\n--- peer output (${logFile}) ---\n${tail(logFile)}`;
    await stop();
    return { name, readsOn: '-', error, stop: async () => undefined };
  }
  const selectCounts = async (): Promise<number[]> => {
    const cl = new pg.Client({ host: '127.0.0.1', port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
    await cl.connect();
    try {
      return (await cl.query<{ select_cnt: string }>('SHOW POOL_NODES')).rows.map((r) => Number(r.select_cnt));
    } finally {
      await cl.end();
    }
  };
  return { name, ports: [port], pid: child.pid, readsOn: LB ? 'primary+standby' : 'primary', stop, selectCounts };
}

async function startPgpool(c: PgCluster): Promise<Target> {
  const which = spawnSync('sh', ['-c', 'command -v pgpool'], { encoding: 'utf8' });
  if (which.status !== 0) return { name: 'pgpool', readsOn: '-', error: 'pgpool not installed: skipped', stop: async () => undefined };
  const dir = workDir('pgpool');
  const [port, pcpPort] = [await freePort(), await freePort()];
  const conf = {
    backend_clustering_mode: `'streaming_replication'`,
    listen_addresses: `'127.0.0.1'`,
    port,
    unix_socket_directories: `'${dir}'`,
    pcp_listen_addresses: `'127.0.0.1'`,
    pcp_port: pcpPort,
    pcp_socket_dir: `'${dir}'`,
    backend_hostname0: `'127.0.0.1'`,
    backend_port0: c.primary.port,
    backend_weight0: 1,
    backend_flag0: `'ALLOW_TO_FAILOVER'`,
    backend_hostname1: `'127.0.0.1'`,
    backend_port1: c.standbys[0]!.port,
    backend_weight1: 1,
    backend_flag1: `'ALLOW_TO_FAILOVER'`,
    num_init_children: Math.max(CLIENTS * 2, 32),
    max_pool: 1,
    connection_cache: 'on',
    reset_query_list: `'ABORT; DISCARD ALL'`,
    load_balance_mode: 'off',
    enable_pool_hba: 'on',
    pool_passwd: `'${join(dir, 'pool_passwd')}'`,
    sr_check_period: 10,
    sr_check_user: `'${SUPERUSER}'`,
    sr_check_password: `'${SUPERUSER_PASSWORD}'`,
    health_check_period: 0,
    failover_on_backend_error: 'off',
    use_watchdog: 'off',
    pid_file_name: `'${join(dir, 'pgpool.pid')}'`,
    logdir: `'${dir}'`,
    log_min_messages: 'warning',
    ssl: 'off',
  };
  writeFileSync(join(dir, 'pgpool.conf'), Object.entries(conf).map(([k, v]) => `${k} = ${v}\n`).join(''));
  writeFileSync(join(dir, 'pool_hba.conf'), `local all all trust\nhost all all 127.0.0.1/32 ${AUTH}\n`);
  writeFileSync(join(dir, 'pool_passwd'), `${SUPERUSER}:TEXT${SUPERUSER_PASSWORD}\n`);
  writeFileSync(join(dir, 'pcp.conf'), '');
  if (pgIds) for (const f of readdirSync(dir)) chownSync(join(dir, f), pgIds.uid, pgIds.gid);
  const logFile = join(dir, 'pgpool.log');
  const child = startDaemon('pgpool', 'pgpool', ['-n', '-f', join(dir, 'pgpool.conf'), '-F', join(dir, 'pcp.conf'), '-a', join(dir, 'pool_hba.conf')], {
    asPostgres: true,
    logFile,
  });
  const stop = async () => {
    await stopDaemon(child, 'SIGINT');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitReady(port, 20_000, child);
  } catch (e) {
    const error = `pgpool did not start quickly, skipped: ${(e as Error).message}\n${tail(logFile)}`;
    await stop();
    return { name: 'pgpool', readsOn: '-', error, stop: async () => undefined };
  }
  return { name: 'pgpool', ports: [port], pid: child.pid, readsOn: 'primary', stop };
}

// ---- CPU accounting -----------------------------------------------------------------------------
// CPU time per transaction is far steadier than TPS on a shared 2-core machine: it is what
// the proxies are compared on when TPS differences are within noise.

const TICK_US = 1e6 / 100; // USER_HZ: /proc reports CPU time in 1/100 s on Linux

interface Cpu {
  user: number; // µs
  sys: number; // µs
}

/** utime and stime of `pid` and all its descendants, from /proc. */
function processTreeCpu(pid: number): Cpu {
  const byParent = new Map<number, number[]>();
  const times = new Map<number, Cpu>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let st: string;
    try {
      st = readFileSync(`/proc/${d}/stat`, 'utf8');
    } catch {
      continue;
    }
    const f = st.slice(st.lastIndexOf(')') + 2).split(' '); // fields from 3 (state) on
    const ppid = Number(f[1]);
    times.set(Number(d), { user: Number(f[11]) * TICK_US, sys: Number(f[12]) * TICK_US });
    byParent.set(ppid, [...(byParent.get(ppid) ?? []), Number(d)]);
  }
  const total: Cpu = { user: 0, sys: 0 };
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop()!;
    const t = times.get(p);
    if (t) {
      total.user += t.user;
      total.sys += t.sys;
    }
    stack.push(...(byParent.get(p) ?? []));
  }
  return total;
}

/** Busy CPU time of the whole machine (all CPUs), in µs. */
function machineBusy(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal …: busy is everything but idle and iowait
  return (f.reduce((a, b) => a + b, 0) - f[3]! - f[4]!) * TICK_US;
}

// ---- pgbench ------------------------------------------------------------------------------------

interface RunResult {
  tps: number;
  p99ms: number;
  /** The proxy's user and system CPU µs per transaction; the whole machine's busy µs per transaction. */
  proxyUser?: number;
  /** proxyUser less what the proxy spends idle in as long (health checks …): the part that grows with transactions. */
  proxyUserNet?: number;
  proxySys?: number;
  machine?: number;
  /** Of the reads the proxy routed, the share that went to the standby (select_cnt). */
  standbyShare?: number;
  failed?: string;
}

interface PgbenchRun {
  tps: number;
  /** Per-transaction latencies in µs (from pgbench -l). */
  lat: number[];
  failed?: string;
}

function runPgbench(port: number, clients: number, threads: number, mode: Mode, logDir: string): Promise<PgbenchRun> {
  const prefix = join(logDir, `pgbench_${port}_${Date.now()}`);
  const script = mode.script === undefined ? [] : ['-f', join(logDir, `${mode.name}.sql`)];
  if (mode.script !== undefined) writeFileSync(script[1]!, mode.script);
  const args = ['-h', '127.0.0.1', '-p', String(port), '-U', SUPERUSER, '-n', '-c', String(clients), '-j', String(threads), '-T', String(SECONDS), '-l', `--log-prefix=${prefix}`, ...mode.args, ...script, 'postgres'];
  return new Promise((resolve) => {
    const child = spawn(pgBin('pgbench'), args, { cwd: logDir, env: { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), (SECONDS + 60) * 1000);
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      const files = readdirSync(logDir).filter((f) => join(logDir, f).startsWith(prefix));
      const lat: number[] = [];
      for (const f of files) {
        for (const line of readFileSync(join(logDir, f), 'utf8').split('\n')) {
          // client_id transaction_no time_us script_no epoch epoch_us [lag]
          const sp1 = line.indexOf(' ');
          const sp2 = line.indexOf(' ', sp1 + 1);
          const sp3 = line.indexOf(' ', sp2 + 1);
          if (sp3 > 0) lat.push(Number(line.slice(sp2 + 1, sp3)));
        }
        rmSync(join(logDir, f), { force: true });
      }
      const m = /tps = ([\d.]+)/.exec(out);
      if (code !== 0 || !m) {
        resolve({ tps: 0, lat, failed: `pgbench exited ${code}: ${out.trim().split('\n').slice(-4).join(' | ')}` });
        return;
      }
      const errors = /number of failed transactions: (\d+)/.exec(out);
      resolve({ tps: Number(m[1]), lat, ...(errors && errors[1] !== '0' ? { failed: `${errors[1]} failed transactions` } : {}) });
    });
  });
}

/** pgbench against each port at once, the clients (and threads) split evenly; TPS summed. */
async function runPgbenchOn(ports: number[], mode: Mode, logDir: string): Promise<RunResult> {
  const n = ports.length;
  const runs = await Promise.all(ports.map((p) => runPgbench(p, Math.max(1, Math.round(CLIENTS / n)), Math.max(1, Math.round(THREADS / n)), mode, logDir)));
  const failed = runs.find((r) => r.failed)?.failed;
  if (runs.some((r) => r.tps === 0)) return { tps: 0, p99ms: 0, failed: failed ?? 'failed' };
  const lat = runs.flatMap((r) => r.lat).sort((a, b) => a - b);
  const p99 = lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))]! / 1000 : NaN;
  return { tps: runs.reduce((a, r) => a + r.tps, 0), p99ms: p99, ...(failed ? { failed } : {}) };
}

/**
 * The same peer twice: as a member (the coordinator) of a running three-peer watchdog cluster,
 * and alone. Same config but the watchdog section; the test peers' settings with the default
 * health checks, load balancing off (everything to the primary, as the `pgwatchdog` target).
 */
async function startClusterAndAlone(c: PgCluster): Promise<Target[]> {
  // The bed reads the peers' logs at info (peer ready, elections): the same level for both.
  process.env.PGWATCHDOG_LOG_LEVEL = 'info';
  const peer = {
    log: { level: 'info' },
    auth: { method: AUTH },
    health_check: { period_ms: 1000 },
    proxy: { workers: WORKERS, max_clients: Math.max(200, CLIENTS * 4), load_balance: false, pool: { max_per_backend: Math.max(CLIENTS * 2, 20) } },
  };
  const prof = PEER_PROF ? `--cpu-prof --cpu-prof-dir=${PEER_PROF}` : '';
  if (prof || PEER_NODE_ARGS.length) process.env.PGWD_NODE_ARGS = [prof, ...PEER_NODE_ARGS].join(' ').trim();
  const target = (name: TargetName, p: PeerProcess, stop: () => Promise<void>): Target => ({ name, ports: [p.port], pid: p.proc.pid, readsOn: 'primary', stop });
  const b = await bed({ cluster: c, keepCluster: true, peer, faults: false, readyTimeoutMs: 60_000 });
  let alone: PeerProcess | undefined;
  try {
    const coordinator = b.peers.get(await oneHolder(b, 60_000))!;
    alone = await startPeerProcess(c, peer, { readyTimeoutMs: 60_000 });
    // Both route writes (the cluster peer once it has applied the coordinator's entries).
    await Promise.all([coordinator, alone].map((p) => waitReady(p.port, 30_000, undefined, 'CREATE TEMP TABLE bench_ready (x int)')));
    const solo = alone;
    return [target('pgwatchdog-cluster', coordinator, () => b.teardown()), target('pgwatchdog-alone', alone, async () => void (await solo.stop()))];
  } catch (e) {
    await alone?.stop();
    await b.teardown();
    const error = `watchdog cluster or lone peer did not serve: ${(e as Error).message}`;
    return (['pgwatchdog-cluster', 'pgwatchdog-alone'] as const).map((name) => ({ name, readsOn: '-', error, stop: async () => undefined }));
  }
}

// ---- main ----------------------------------------------------------------------------------------

let startLoad = '';

async function main(): Promise<void> {
  startLoad = loadavg().map((l) => l.toFixed(2)).join(' ');
  log(`test bed: primary + 1 standby; pgbench -i -s ${SCALE}; ${CLIENTS} clients, -j ${THREADS}, ${SECONDS} s per run, ${ROUNDS} round(s), client auth ${AUTH}`);
  cluster = await createCluster({ standbys: 1, settings: { max_connections: Math.max(300, CLIENTS * 10) } });
  const targets: Target[] = [];
  const logDir = workDir('logs');
  try {
    const t0 = Date.now();
    const init = spawnSync(pgBin('pgbench'), ['-i', '-q', '-s', String(SCALE), '-h', '127.0.0.1', '-p', String(cluster.primary.port), '-U', SUPERUSER, 'postgres'], {
      env: { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD },
      encoding: 'utf8',
    });
    if (init.status !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);
    await cluster.waitReplicated(120_000);
    log(`pgbench -i -s ${SCALE} done and replicated in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    if (targetNames.includes('pgwatchdog-cluster') || targetNames.includes('pgwatchdog-alone')) {
      for (const t of await startClusterAndAlone(cluster)) {
        targets.push(t);
        log(t.error ? `${t.name}: ${t.error}` : `${t.name}: listening on 127.0.0.1:${t.ports!.join(',')}`);
      }
    }
    for (const name of targetNames) {
      if (name === 'pgwatchdog-cluster' || name === 'pgwatchdog-alone') continue;
      let t: Target;
      if (name === 'direct') t = { name, ports: [cluster.primary.port], readsOn: 'primary', stop: async () => undefined };
      else if (name === 'direct-split') t = { name, ports: [cluster.primary.port, cluster.standbys[0]!.port], readsOn: 'primary+standby', stop: async () => undefined };
      else if (name === 'pgbouncer') t = await startPgbouncer(cluster);
      else if (name === 'pgwatchdog' || name === 'pgwatchdog-lb' || name === 'pgwatchdog-lb-nocausal') t = await startPgwatchdog(cluster, name);
      else t = await startPgpool(cluster);
      targets.push(t);
      log(t.error ? `${name}: ${t.error}` : `${name}: listening on 127.0.0.1:${t.ports!.join(',')}`);
    }

    // What each proxy spends with no client (pgwatchdog: its health checks and replication
    // monitor) is not per transaction; measured here, it is taken off in "net of idle".
    const daemons = targets.filter((t) => !t.error && t.pid !== undefined);
    const idle0 = daemons.map((t) => processTreeCpu(t.pid!).user);
    await sleep(IDLE_SECONDS * 1000);
    daemons.forEach((t, i) => (t.idleUser = (processTreeCpu(t.pid!).user - idle0[i]!) / IDLE_SECONDS));
    for (const t of daemons) log(`${t.name}: ${(t.idleUser! / 1000).toFixed(1)} ms of user CPU per second with no client`);

    const results = new Map<string, RunResult[]>(); // `${mode}/${target}`
    let rotation = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of MODES) {
        const live = targets.filter((t) => !t.error);
        const order = live.map((_, i) => live[(i + rotation) % live.length]!);
        rotation++;
        for (const t of order) {
          // Writes cannot go to a standby.
          if (t.name === 'direct-split' && writes(mode)) continue;
          log(`round ${round + 1}/${ROUNDS} ${mode.name} → ${t.name}`);
          const cpu0 = t.pid !== undefined ? processTreeCpu(t.pid) : undefined;
          const busy0 = machineBusy();
          const sel0 = await t.selectCounts?.();
          const r = await runPgbenchOn(t.ports!, mode, logDir);
          if (sel0 && t.selectCounts) {
            // Worker processes report select_cnt once a second.
            if (WORKERS > 1) await sleep(1100);
            const sel1 = await t.selectCounts();
            const d = sel1.map((n, i) => n - (sel0[i] ?? 0));
            const total = d.reduce((a, b) => a + b, 0);
            if (total > 0) r.standbyShare = d.slice(1).reduce((a, b) => a + b, 0) / total;
          }
          const txs = r.tps * SECONDS;
          if (txs > 0) {
            r.machine = (machineBusy() - busy0) / txs;
            if (cpu0 && t.pid !== undefined) {
              const cpu1 = processTreeCpu(t.pid);
              r.proxyUser = (cpu1.user - cpu0.user) / txs;
              if (t.idleUser !== undefined) r.proxyUserNet = r.proxyUser - (t.idleUser * SECONDS) / txs;
              r.proxySys = (cpu1.sys - cpu0.sys) / txs;
            }
          }
          if (r.failed) log(`  ${t.name}: ${r.failed}`);
          const key = `${mode.name}/${t.name}`;
          results.set(key, [...(results.get(key) ?? []), r]);
          await sleep(500); // let connections close before the next run
        }
      }
    }
    report(targets, results);
  } finally {
    for (const t of targets) await t.stop().catch(() => undefined);
    rmSync(logDir, { recursive: true, force: true });
    await cluster.teardown();
  }
}

function report(targets: Target[], results: Map<string, RunResult[]>): void {
  const agg = (mode: string, target: string): RunResult | undefined => {
    const rs = results.get(`${mode}/${target}`);
    if (!rs?.length) return undefined;
    const ok = rs.filter((r) => r.tps > 0);
    if (!ok.length) return { tps: 0, p99ms: 0, failed: rs[0]!.failed ?? 'failed' };
    const failed = rs.find((r) => r.failed)?.failed;
    const mean = (f: (r: RunResult) => number | undefined): number | undefined => {
      const v = ok.map(f).filter((x): x is number => x !== undefined);
      return v.length ? v.reduce((a, b) => a + b, 0) / v.length : undefined;
    };
    return {
      tps: mean((r) => r.tps)!,
      p99ms: mean((r) => r.p99ms)!,
      proxyUser: mean((r) => r.proxyUser),
      proxyUserNet: mean((r) => r.proxyUserNet),
      proxySys: mean((r) => r.proxySys),
      machine: mean((r) => r.machine),
      standbyShare: mean((r) => r.standbyShare),
      ...(failed ? { failed } : {}),
    };
  };
  const header = ['mode', 'target', 'reads on', 'TPS', 'p99 ms', 'vs direct*', 'vs pgbouncer', 'proxy usr µs/tx', 'net of idle', 'sys µs/tx', 'machine µs/tx', 'standby reads'];
  const rows: string[][] = [];
  const summary: string[] = [];
  for (const mode of MODES) {
    const direct = agg(mode.name, 'direct');
    const directSplit = agg(mode.name, 'direct-split');
    const bouncer = agg(mode.name, 'pgbouncer');
    for (const t of targets) {
      const r = agg(mode.name, t.name);
      const ratio = (base: RunResult | undefined) => (r && r.tps > 0 && base && base.tps > 0 ? `${(r.tps / base.tps).toFixed(2)}×` : '-');
      if (!t.error && !r) continue; // not run in this mode (direct-split with writes)
      if (t.error || !r) {
        rows.push([mode.name, t.name, '-', t.error ? 'not run' : '-', '-', '-', '-', '-', '-', '-', '-']);
        continue;
      }
      rows.push([
        mode.name,
        t.name,
        mode.args.includes('-N') ? 'primary (writes)' : t.readsOn,
        r.tps > 0 ? r.tps.toFixed(0) : 'FAILED',
        r.tps > 0 ? r.p99ms.toFixed(2) : '-',
        // Reads split over both servers compare with direct-split: the same backends, no proxy.
        ratio(t.readsOn === 'primary+standby' && !writes(mode) ? directSplit : direct),
        ratio(bouncer),
        r.proxyUser !== undefined ? r.proxyUser.toFixed(1) : '-',
        r.proxyUserNet !== undefined ? r.proxyUserNet.toFixed(1) : '-',
        r.proxySys !== undefined ? r.proxySys.toFixed(1) : '-',
        r.machine !== undefined ? r.machine.toFixed(1) : '-',
        r.standbyShare !== undefined ? `${(100 * r.standbyShare).toFixed(0)}%` : '-',
      ]);
    }
    const wd = agg(mode.name, 'pgwatchdog');
    if (wd && wd.tps > 0 && bouncer && bouncer.tps > 0) {
      const verdict = wd.tps >= bouncer.tps ? '≥' : '<';
      summary.push(`${mode.name.padEnd(16)} pgwatchdog ${wd.tps.toFixed(0)} TPS ${verdict} pgbouncer ${bouncer.tps.toFixed(0)} TPS (${(wd.tps / bouncer.tps).toFixed(2)}×; p99 ${wd.p99ms.toFixed(2)} vs ${bouncer.p99ms.toFixed(2)} ms): pgwatchdog ${verdict === '≥' ? 'IS' : 'is NOT'} ≥ pgbouncer`);
      // Round by round (the two ran back to back): the spread says how much of the mean is noise.
      const w = results.get(`${mode.name}/pgwatchdog`) ?? [];
      const b = results.get(`${mode.name}/pgbouncer`) ?? [];
      const perRound = w.map((r, i) => (r.tps > 0 && (b[i]?.tps ?? 0) > 0 ? `${(r.tps / b[i]!.tps).toFixed(2)}×` : '-'));
      if (perRound.length > 1) summary.push(`${''.padEnd(16)} round by round: ${perRound.join(' ')}`);
    } else if (targetNames.includes('pgwatchdog') || targetNames.includes('pgbouncer')) {
      summary.push(`${mode.name.padEnd(16)} no comparison: ${!wd || wd.tps === 0 ? 'pgwatchdog' : 'pgbouncer'} did not run`);
    }
    const lb = agg(mode.name, 'pgwatchdog-lb');
    // (-C directly is all PostgreSQL process starts: no telling figure for the split there.)
    if (lb && lb.tps > 0 && directSplit && directSplit.tps > 0 && direct && direct.tps > 0 && !writes(mode) && !mode.args.includes('-C')) {
      summary.push(
        `${''.padEnd(16)} with load balancing: ${lb.tps.toFixed(0)} TPS; reads split over two servers on this one machine cost ${(100 * (1 - directSplit.tps / direct.tps)).toFixed(0)}% even directly (direct-split vs direct)`,
      );
    }
  }
  for (const mode of MODES) {
    const inCluster = agg(mode.name, 'pgwatchdog-cluster');
    const alone = agg(mode.name, 'pgwatchdog-alone');
    if (!inCluster || !alone || inCluster.tps === 0 || alone.tps === 0) continue;
    const c = results.get(`${mode.name}/pgwatchdog-cluster`) ?? [];
    const a = results.get(`${mode.name}/pgwatchdog-alone`) ?? [];
    const perRound = c.map((r, i) => (r.tps > 0 && (a[i]?.tps ?? 0) > 0 ? `${(r.tps / a[i]!.tps).toFixed(2)}×` : '-'));
    summary.push(
      `${mode.name.padEnd(16)} peer in a 3-peer watchdog cluster ${inCluster.tps.toFixed(0)} TPS vs the same peer alone ${alone.tps.toFixed(0)} TPS: ${(inCluster.tps / alone.tps).toFixed(2)}× (round by round ${perRound.join(' ')}; p99 ${inCluster.p99ms.toFixed(2)} vs ${alone.p99ms.toFixed(2)} ms)`,
    );
  }
  for (const mode of MODES) {
    const lb = agg(mode.name, 'pgwatchdog-lb');
    const nc = agg(mode.name, 'pgwatchdog-lb-nocausal');
    if (!lb || !nc || lb.tps === 0 || nc.tps === 0) continue;
    const share = (r: RunResult) => (r.standbyShare === undefined ? '?' : `${(100 * r.standbyShare).toFixed(0)}%`);
    summary.push(`${mode.name.padEnd(16)} causal reads on: ${lb.tps.toFixed(0)} TPS, ${share(lb)} of reads on the standby; off: ${nc.tps.toFixed(0)} TPS, ${share(nc)} (${(lb.tps / nc.tps).toFixed(2)}×)`);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i >= 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  console.log(`\nmachine: ${cpus().length} CPUs, load average now ${loadavg().map((l) => l.toFixed(2)).join(' ')} (at start ${startLoad})`);
  console.log(`pgbench: ${CLIENTS} clients, -j ${THREADS}, ${SECONDS} s per run, ${ROUNDS} round(s), scale ${SCALE}, client auth ${AUTH}`);
  for (const m of MODES) console.log(`  ${m.name}: ${m.what}`);
  console.log('');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
  console.log('');
  console.log('* primary+standby rows compare with direct-split, the others with direct');
  console.log(`"net of idle": proxy user CPU less what the proxy used with no client (${targets.filter((t) => t.idleUser !== undefined).map((t) => `${t.name} ${(t.idleUser! / 1000).toFixed(1)} ms/s`).join(', ')}), spread over the transactions`);
  console.log('');
  for (const s of summary) console.log(s);
  for (const t of targets) if (t.error) console.log(`\n${t.name}: ${t.error}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench-proxy failed: ${err instanceof Error ? err.stack : String(err)}`);
    process.exit(1);
  },
);
