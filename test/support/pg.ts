// PostgreSQL test bed: a real primary plus N streaming standbys, made with initdb and
// pg_basebackup -R on free ports in a temp dir. Servers run as the `postgres` OS user when
// the tests run as root (PostgreSQL refuses root). Everything is torn down at teardown(),
// and also when the process exits or is interrupted, so a failing test leaves nothing behind.
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, appendFileSync, chownSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, delimiter, dirname } from 'node:path';
import pg from 'pg';
import { freePort } from './ports.js';

// ---- binaries -------------------------------------------------------------------------

let binDirCache: string | undefined;

/** Directory of the PostgreSQL server binaries: PG_BINDIR, else PATH, else the newest /usr/lib/postgresql/N/bin. */
export function pgBinDir(): string {
  if (binDirCache) return binDirCache;
  const candidates: string[] = [];
  if (process.env.PG_BINDIR) candidates.push(process.env.PG_BINDIR);
  candidates.push(...(process.env.PATH ?? '').split(delimiter).filter(Boolean));
  if (existsSync('/usr/lib/postgresql')) {
    const versions = readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => `/usr/lib/postgresql/${v}/bin`));
  }
  const found = candidates.find((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'pg_ctl')));
  if (!found) throw new Error(`PostgreSQL server binaries (initdb, pg_ctl) not found in PG_BINDIR, PATH or /usr/lib/postgresql/*/bin`);
  binDirCache = found;
  return found;
}

/** Full path of a PostgreSQL binary (server dir first, then PATH for client tools like psql). */
export function pgBin(name: string): string {
  const p = join(pgBinDir(), name);
  return existsSync(p) ? p : name;
}

// ---- running as the postgres OS user ----------------------------------------------------

interface Ids {
  uid: number;
  gid: number;
}

function postgresIds(): Ids | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const out = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const outG = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (out.status !== 0 || outG.status !== 0) throw new Error('running as root but there is no `postgres` OS user to run PostgreSQL as');
  return { uid: Number(out.stdout.trim()), gid: Number(outG.stdout.trim()) };
}

const ids = postgresIds();

function asPostgres(opts: SpawnOptions = {}): SpawnOptions {
  return ids ? { ...opts, uid: ids.uid, gid: ids.gid, env: { ...process.env, HOME: tmpdir(), ...opts.env } } : opts;
}

function chownTree(path: string): void {
  if (!ids) return;
  chownSync(path, ids.uid, ids.gid);
}

/** Runs a command to completion; rejects with its output on a non-zero exit. */
export function run(cmd: string, args: string[], opts: SpawnOptions & { asPostgres?: boolean; input?: string } = {}): Promise<string> {
  const o = opts.asPostgres === false ? opts : asPostgres(opts);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...o, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', (e) => reject(new Error(`${cmd} ${args.join(' ')}: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${out}`));
    });
    // A command that exits without reading its stdin makes this write fail with EPIPE.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(opts.input ?? '');
  });
}

// ---- ports ------------------------------------------------------------------------------

// One way to choose a port for every server a test starts (see ports.ts for why it is safe).
export { freePort };

// ---- cleanup on exit ----------------------------------------------------------------------

const liveClusters = new Set<PgCluster>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', () => {
    for (const c of liveClusters) c.teardownSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const c of liveClusters) c.teardownSync();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** True while the process runs. A zombie counts as gone: in containers whose init reaps
 * lazily, a killed postmaster can linger as one and would otherwise look alive. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How many ports a new node tries before its start fails for a port in use. */
const PORT_ATTEMPTS = 5;

// ---- one server -------------------------------------------------------------------------

export const SUPERUSER = 'postgres';
export const SUPERUSER_PASSWORD = 'postgres';

export class PgNode {
  #port: number;

  constructor(
    readonly name: string,
    port: number,
    readonly dataDir: string,
    readonly logFile: string,
    readonly host = '127.0.0.1',
  ) {
    this.#port = port;
  }

  /** Fixed once the node has first started (startNew); only startNew ever changes it. */
  get port(): number {
    return this.#port;
  }

  /** libpq connection string as the superuser. */
  connString(database = 'postgres'): string {
    return `host=${this.host} port=${this.port} user=${SUPERUSER} password=${SUPERUSER_PASSWORD} dbname=${database}`;
  }

  clientConfig(database = 'postgres'): pg.ClientConfig {
    return { host: this.host, port: this.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database };
  }

  /** The postmaster's pid from postmaster.pid, or undefined when it is not running. */
  pid(): number | undefined {
    try {
      const pid = Number(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return pid > 0 && alive(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** The processes the running postmaster forked (backends, walsenders, background workers); [] when it is down. */
  childPids(): number[] {
    const pm = this.pid();
    if (pm === undefined) return [];
    return readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          return Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === pm;
        } catch {
          return false; // gone meanwhile
        }
      })
      .map(Number);
  }

  async start(): Promise<void> {
    // After kill -9 the dead postmaster can linger as an unreaped zombie (see alive()), and
    // PostgreSQL would then refuse to start over its lock files; they are stale, remove them.
    const pidFile = join(this.dataDir, 'postmaster.pid');
    if (existsSync(pidFile) && this.pid() === undefined) {
      rmSync(pidFile, { force: true });
      rmSync(join(dirname(this.dataDir), `.s.PGSQL.${this.port}.lock`), { force: true });
    }
    try {
      await run(pgBin('pg_ctl'), ['start', '-w', '-t', '60', '-D', this.dataDir, '-l', this.logFile]);
    } catch (err) {
      // pg_ctl only says "could not start server": the reason (a port taken meanwhile by
      // another process, a full disk …) is in the server's log, which teardown removes.
      let tail = '';
      try {
        tail = readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-8).join('\n');
      } catch {
        // no log written
      }
      throw new Error(`${this.name} (port ${this.port}) did not start: ${(err as Error).message}${tail ? `\nserver log (last lines):\n${tail}` : ''}`, { cause: err });
    }
  }

  /**
   * The first start of a node just made. Its port was free when drawn, but something outside the
   * bed's reservations (ports.ts) may bind it before the server does: then, and only then (the
   * server's log says "Address already in use"), the node moves to a fresh port and starts again.
   * Nothing knows the port yet, so moving it is safe; a primary's standbys are made only after it
   * started. `beforeEach` runs before every attempt (tests use it to take the port first).
   */
  async startNew(beforeEach?: (node: PgNode) => void | Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await beforeEach?.(this);
      const logFrom = existsSync(this.logFile) ? statSync(this.logFile).size : 0;
      try {
        await this.start();
        return;
      } catch (err) {
        const log = existsSync(this.logFile) ? readFileSync(this.logFile).subarray(logFrom).toString() : '';
        if (attempt >= PORT_ATTEMPTS || !log.includes('Address already in use')) throw err;
        this.#port = await freePort();
        this.appendConf({ port: this.#port });
      }
    }
  }

  async stop(mode: 'smart' | 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (this.pid() === undefined) return;
    await run(pgBin('pg_ctl'), ['stop', '-w', '-t', '60', '-m', mode, '-D', this.dataDir]);
  }

  /** kill -9 of the postmaster, as a crash would; waits until it is gone. */
  async kill9(): Promise<void> {
    const pid = this.pid();
    if (pid === undefined) return;
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 200 && alive(pid); i++) await sleep(10);
  }

  async promote(): Promise<void> {
    await run(pgBin('pg_ctl'), ['promote', '-w', '-t', '60', '-D', this.dataDir]);
  }

  /** Runs SQL as the superuser on a fresh connection and returns the rows. */
  async sql<R extends pg.QueryResultRow = Record<string, unknown>>(text: string, params: unknown[] = [], database = 'postgres'): Promise<R[]> {
    const client = new pg.Client(this.clientConfig(database));
    await client.connect();
    try {
      return (await client.query<R>(text, params)).rows;
    } finally {
      await client.end();
    }
  }

  async isInRecovery(): Promise<boolean> {
    const [row] = await this.sql<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
    return row!.r;
  }

  /** Current WAL insert LSN on a primary. */
  async currentLsn(): Promise<string> {
    const [row] = await this.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    return row!.lsn;
  }

  /** Waits until this standby has replayed at least `lsn`. */
  async waitReplay(lsn: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [row] = await this.sql<{ ok: boolean | null }>(`SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok`, [lsn]);
      if (row?.ok) return;
      if (Date.now() > deadline) throw new Error(`${this.name} (port ${this.port}) did not replay to ${lsn} within ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  appendConf(lines: Record<string, string | number | boolean>): void {
    appendFileSync(join(this.dataDir, 'postgresql.conf'), Object.entries(lines).map(([k, v]) => `${k} = '${v}'\n`).join(''));
  }

  /** Immediate stop, then SIGKILL if needed; synchronous so it can run in an exit handler. */
  killSync(): void {
    const pid = this.pid();
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      return;
    }
    for (let i = 0; i < 200 && alive(pid); i++) sleepSync(10);
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
}

// ---- the cluster --------------------------------------------------------------------------

export interface ClusterOptions {
  /** Number of streaming standbys (default 2). */
  standbys?: number;
  /** Use a physical replication slot per standby. */
  slots?: boolean;
  /** Make the standbys synchronous (`FIRST 1 (...)` over all of them, or `ANY 1`). */
  sync?: 'first' | 'any' | false;
  /** Host authentication for TCP connections (local socket is always trust). */
  auth?: 'trust' | 'md5' | 'scram-sha-256';
  /** Extra postgresql.conf settings for every node. */
  settings?: Record<string, string | number | boolean>;
  /** Directory to create the cluster's directory in (default: the OS temp dir); it must be traversable by the `postgres` user. */
  parentDir?: string;
  /** Runs before every attempt of a node's first start (PgNode.startNew), e.g. to take its port in a test. */
  beforeStart?: (node: PgNode) => void | Promise<void>;
}

export class PgCluster {
  readonly nodes: PgNode[];
  private tornDown = false;

  constructor(
    readonly dir: string,
    readonly primary: PgNode,
    readonly standbys: PgNode[],
  ) {
    this.nodes = [primary, ...standbys];
  }

  /** Writes on the primary, then waits until every running standby has replayed it. */
  async waitReplicated(timeoutMs = 30_000): Promise<void> {
    const lsn = await this.primary.currentLsn();
    await Promise.all(this.standbys.filter((s) => s.pid() !== undefined).map((s) => s.waitReplay(lsn, timeoutMs)));
  }

  async teardown(): Promise<void> {
    if (this.tornDown) return;
    await Promise.all(this.nodes.map((n) => n.stop('immediate').catch(() => n.killSync())));
    this.teardownSync();
  }

  teardownSync(): void {
    if (this.tornDown) return;
    this.tornDown = true;
    for (const n of this.nodes) n.killSync();
    rmSync(this.dir, { recursive: true, force: true });
    liveClusters.delete(this);
  }
}

const BASE_SETTINGS: Record<string, string | number | boolean> = {
  listen_addresses: '127.0.0.1',
  max_connections: 200,
  shared_buffers: '32MB',
  wal_level: 'replica',
  hot_standby: 'on',
  max_wal_senders: 10,
  max_replication_slots: 10,
  wal_keep_size: '256MB',
  wal_log_hints: 'on',
  // Test data is disposable: skip the disk flushes that would dominate run time.
  fsync: 'off',
  full_page_writes: 'off',
  wal_receiver_status_interval: '1s',
  wal_retrieve_retry_interval: '500ms',
  hot_standby_feedback: 'on',
  password_encryption: 'scram-sha-256',
  log_min_messages: 'warning',
};

/** Creates and starts a primary and `standbys` streaming standbys. Call teardown() when done. */
export async function createCluster(opts: ClusterOptions = {}): Promise<PgCluster> {
  installExitHooks();
  const nStandbys = opts.standbys ?? 2;
  const auth = opts.auth ?? 'scram-sha-256';
  const dir = mkdtempSync(join(opts.parentDir ?? tmpdir(), 'pgwd-test-'));
  chownTree(dir);
  const ports = await Promise.all(Array.from({ length: nStandbys + 1 }, () => freePort()));
  const mk = (i: number) => new PgNode(i === 0 ? 'primary' : `standby${i}`, ports[i]!, join(dir, `node${i}`), join(dir, `node${i}.log`));
  const primary = mk(0);
  const standbys = Array.from({ length: nStandbys }, (_, i) => mk(i + 1));
  const cluster = new PgCluster(dir, primary, standbys);
  liveClusters.add(cluster);
  try {
    await run(pgBin('initdb'), ['-D', primary.dataDir, '-U', SUPERUSER, '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
    writeFileSync(
      join(primary.dataDir, 'pg_hba.conf'),
      [`local all all trust`, `host all all 127.0.0.1/32 ${auth}`, `host replication all 127.0.0.1/32 ${auth}`, ''].join('\n'),
    );
    primary.appendConf({ ...BASE_SETTINGS, port: primary.port, unix_socket_directories: dir, ...opts.settings });
    await primary.startNew(opts.beforeStart);
    // Set the password over the Unix socket (trusted), so TCP clients can authenticate.
    await run(pgBin('psql'), ['-h', dir, '-p', String(primary.port), '-U', SUPERUSER, '-d', 'postgres', '-qAtc', `ALTER USER ${SUPERUSER} PASSWORD '${SUPERUSER_PASSWORD}'`]);
    await Promise.all(
      standbys.map(async (s) => {
        const args = ['-D', s.dataDir, '-d', `${primary.connString()} application_name=${s.name}`, '-R', '-X', 'stream', '--no-sync', '-c', 'fast'];
        if (opts.slots) args.push('-C', '-S', s.name);
        await run(pgBin('pg_basebackup'), args);
        // -R records the primary's conninfo; give it our application_name so sync replication can name it.
        s.appendConf({ port: s.port, unix_socket_directories: dir, ...(opts.slots ? { primary_slot_name: s.name } : {}) });
        await s.startNew(opts.beforeStart);
      }),
    );
    if (opts.sync) {
      // Only once the standbys stream: set earlier, every commit would wait for them.
      const names = standbys.map((s) => s.name).join(', ');
      await primary.sql(`ALTER SYSTEM SET synchronous_standby_names = '${opts.sync === 'first' ? 'FIRST' : 'ANY'} 1 (${names})'`);
      await primary.sql('SELECT pg_reload_conf()');
    }
    await cluster.waitReplicated();
    return cluster;
  } catch (err) {
    await cluster.teardown().catch(() => cluster.teardownSync());
    throw err;
  }
}
