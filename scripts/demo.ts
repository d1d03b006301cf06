// `npm run demo` / `pgwatchdog demo`: a local demo cluster on loopback — a PostgreSQL primary
// with two streaming standbys (the test bed, test/support/pg.ts) and three pgwatchdog peers
// configured as one watchdog cluster — then its connection strings and status. Ctrl-C stops and
// removes everything; a run after a crash first removes what the crashed run left (it records
// its processes and directories in a state file as it starts them).
//   --once                 print the status and stop (CI, tests)
//   --scenario failover    (needs the watchdog) kill the primary and narrate the failover
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';

export const STATE_FILE = join(tmpdir(), 'pgwatchdog-demo.json');

interface DemoState {
  /** Processes the demo started, with a directory their command line names (a pid alone may be reused). */
  processes: { pid: number; marker: string }[];
  dirs: string[];
}

const t0 = Date.now();
const say = (s: string) => process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${s}\n`);

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/** Removes what a previous run left behind (killed with -9, or the machine's power cut). */
export function cleanLeftovers(log: (s: string) => void = say): number {
  if (!existsSync(STATE_FILE)) return 0;
  let state: DemoState;
  try {
    state = JSON.parse(readFileSync(STATE_FILE, 'utf8')) as DemoState;
  } catch {
    rmSync(STATE_FILE, { force: true });
    return 0;
  }
  let killed = 0;
  for (const p of state.processes) {
    // Only a process that is still the one we started: its command line names our directory.
    if (cmdline(p.pid).includes(p.marker)) {
      try {
        process.kill(p.pid, 'SIGKILL');
        killed++;
      } catch {
        // gone meanwhile
      }
    }
  }
  for (const d of state.dirs) rmSync(d, { recursive: true, force: true });
  rmSync(STATE_FILE, { force: true });
  log(`removed what a previous demo run left: ${killed} process${killed === 1 ? '' : 'es'}, ${state.dirs.length} director${state.dirs.length === 1 ? 'y' : 'ies'}`);
  return killed;
}

/** PostgreSQL server binaries: found, or installed with apt-get when running as root; else what to install. */
async function ensurePostgres(): Promise<boolean> {
  const { pgBinDir } = await import('../test/support/pg.js');
  try {
    say(`PostgreSQL server binaries: ${pgBinDir()}`);
    return true;
  } catch {
    // not found: below
  }
  if (process.getuid?.() !== 0 || spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status !== 0) {
    process.stderr.write('demo: PostgreSQL server binaries (initdb, pg_ctl) are not installed. Install them, e.g. `sudo apt-get install postgresql`, or set PG_BINDIR.\n');
    return false;
  }
  say('installing PostgreSQL with apt-get (no cluster is created or started by the package) …');
  execFileSync('sh', ['-c', "mkdir -p /etc/postgresql-common && (grep -q '^create_main_cluster' /etc/postgresql-common/createcluster.conf 2>/dev/null || echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf)"]);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confold', 'postgresql', 'postgresql-client']]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (r.status !== 0) {
      process.stderr.write(`demo: apt-get ${args[0]} failed (exit ${r.status})\n`);
      return false;
    }
  }
  return true;
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { once: { type: 'boolean' }, scenario: { type: 'string' } }, strict: true });
  if (values.scenario !== undefined) {
    if (!['failover', 'coordinator'].includes(values.scenario)) {
      process.stderr.write(`demo: unknown scenario "${values.scenario}" (failover, coordinator)\n`);
      return 2;
    }
    process.stderr.write(`demo: --scenario ${values.scenario} needs the demo to configure the watchdog (consensus and the coordinator), which it does not do yet\n`);
    return 2;
  }
  cleanLeftovers();
  if (!(await ensurePostgres())) return 1;
  // Loaded after the check: the test bed looks for the server binaries when it loads.
  const { createCluster, SUPERUSER, SUPERUSER_PASSWORD } = await import('../test/support/pg.js');
  const { startPeerProcess } = await import('../test/support/peer.js');
  process.env.PGWATCHDOG_LOG_LEVEL ??= 'info';

  const state: DemoState = { processes: [], dirs: [] };
  const save = () => writeFileSync(STATE_FILE, JSON.stringify(state));
  // Ctrl-C: the test bed stops the servers and removes their directory, the peers are killed;
  // this removes the peers' directories and the state file.
  process.on('exit', () => {
    for (const d of state.dirs) rmSync(d, { recursive: true, force: true });
    rmSync(STATE_FILE, { force: true });
  });

  say('starting a PostgreSQL primary and two streaming standbys …');
  const cluster = await createCluster({ standbys: 2 });
  state.dirs.push(cluster.dir);
  for (const n of cluster.nodes) state.processes.push({ pid: n.pid()!, marker: n.dataDir });
  save();
  say(`PostgreSQL up: primary :${cluster.primary.port}, standbys :${cluster.standbys.map((s) => s.port).join(', :')}`);

  const names = ['pgwd1', 'pgwd2', 'pgwd3'];
  // The demo does not configure the watchdog yet (auth key, data dirs, admin URLs per peer):
  // its peers run standalone, each deciding failovers alone.
  say('the demo does not configure the watchdog yet: the three peers run standalone, each deciding failovers alone');
  const peers = [];
  for (const name of names) {
    say(`starting peer ${name} …`);
    // Health checks tolerant of a busy machine (the test bed's are tuned for fast failovers):
    // standalone, every peer would fail the primary over on its own.
    const health_check = { period_ms: 1000, timeout_ms: 5000, connect_timeout_ms: 5000, max_retries: 3, retry_delay_ms: 1000 };
    const peer = await startPeerProcess(cluster, { log: { level: 'info' }, proxy: { load_balance: true }, health_check }, { args: [] });
    state.dirs.push(peer.dir);
    state.processes.push({ pid: peer.proc.pid!, marker: peer.dir });
    save();
    await peer.waitForLog((l) => l.msg === 'peer ready', 30_000);
    peers.push({ name, peer });
  }
  say(`3 peers ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const conn = (port: number) => `postgresql://${SUPERUSER}:${SUPERUSER_PASSWORD}@127.0.0.1:${port}/postgres`;
  type Row = { node_id: string; hostname: string; port: string; status: string; role: string; lb_weight: string; replication_delay: string };
  const poolNodes = async (port: number): Promise<Row[]> => {
    const c = new pg.Client({ connectionString: conn(port) });
    await c.connect();
    try {
      return (await c.query<Row>('SHOW POOL_NODES')).rows;
    } finally {
      await c.end();
    }
  };
  const isHealthy = (rows: Row[]) => rows.length === 3 && rows.filter((r) => r.role === 'primary').length === 1 && rows.every((r) => r.status === 'up');
  // Each peer health-checks the backends after it is ready: wait until every peer sees them all up.
  let rows: Row[] = [];
  for (const { name, peer } of peers) {
    const deadline = Date.now() + 60_000;
    while (!isHealthy((rows = await poolNodes(peer.port).catch(() => [])))) {
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    say(`${name} sees ${rows.filter((r) => r.status === 'up').length} of 3 backends up`);
  }
  const nodes = { rows: await poolNodes(peers[0]!.peer.port) };

  const lines = ['', 'Connect (any peer):'];
  for (const { name, peer } of peers) lines.push(`  ${name}: psql "${conn(peer.port)}"`);
  lines.push('', 'Dashboard and admin API:');
  for (const { name, peer } of peers) {
    const up = await fetch(`http://127.0.0.1:${peer.adminPort}/v1/status`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => (r.ok ? 'up' : `HTTP ${r.status}`),
      () => 'not listening',
    );
    lines.push(`  ${name}: http://127.0.0.1:${peer.adminPort}/  (${up})`);
  }
  lines.push('', 'Backends (SHOW POOL_NODES through pgwd1):', '  id  address          status  role     lb_weight  delay');
  for (const n of nodes.rows) lines.push(`  ${n.node_id.padEnd(3)} ${`${n.hostname}:${n.port}`.padEnd(16)} ${n.status.padEnd(7)} ${n.role.padEnd(8)} ${n.lb_weight.padEnd(10)} ${n.replication_delay}`);
  const healthy = isHealthy(nodes.rows);
  lines.push('', healthy ? 'cluster healthy: 1 primary, 2 standbys, 3 peers' : 'cluster NOT healthy (see above)');
  // The cluster as an operator sees it: `pgwatchdog status` against the first peer's admin API.
  const status = spawnSync(process.execPath, [new URL('../bin/pgwatchdog.js', import.meta.url).pathname, 'status', '--admin', `http://127.0.0.1:${peers[0]!.peer.adminPort}`], { encoding: 'utf8', timeout: 15_000 });
  if (status.status === 0) lines.push('', `pgwatchdog status --admin http://127.0.0.1:${peers[0]!.peer.adminPort}`, status.stdout.trimEnd());
  process.stdout.write(`${lines.join('\n')}\n\n`);

  if (values.once) {
    for (const { peer } of peers) await peer.stop();
    await cluster.teardown();
    say('stopped and removed everything');
    return healthy ? 0 : 1;
  }
  say('running; Ctrl-C stops and removes everything');
  await new Promise(() => undefined);
  return 0;
}

if (process.argv[1]?.endsWith('demo.ts')) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`demo failed: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
