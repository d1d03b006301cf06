// `npm run demo` / `pgwatchdog demo`: a local demo cluster on loopback — a PostgreSQL primary
// with two streaming standbys (the test bed, test/support/pg.ts) and three pgwatchdog peers
// forming one watchdog cluster (scripts/demo/cluster.ts) — then its connection strings,
// dashboards and status. Ctrl-C stops and removes everything; a run after a crash first removes
// what the crashed run left (scripts/demo/leftovers.ts).
//   --once                    print the status and stop (CI, tests)
//   --scenario failover       then kill -9 the primary and narrate the failover, and stop
//   --scenario coordinator    then kill -9 the coordinator peer, narrate the election, restart it
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { cleanLeftovers, forgetRun, processesUnder, recordRun } from './demo/leftovers.js';
import type { DemoCluster } from './demo/cluster.js';

export { STATE_FILE } from './demo/leftovers.js';

const t0 = Date.now();
const say = (s: string) => process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${s}\n`);
const SCENARIOS = ['failover', 'coordinator'] as const;
/** The address the watchdog bed configures (and the status shows); its commands never add it. */
const VIP_SHOWN = '10.254.0.1/32';

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

/** Kills what runs under the run's directory and removes it; synchronous, for the exit hook. */
function removeRun(root: string): void {
  for (const pid of processesUnder(root)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  const end = Date.now() + 3000;
  while (processesUnder(root).length && Date.now() < end) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  rmSync(root, { recursive: true, force: true });
  forgetRun();
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { once: { type: 'boolean' }, scenario: { type: 'string' } }, strict: true });
  const scenario = values.scenario as (typeof SCENARIOS)[number] | undefined;
  if (scenario !== undefined && !SCENARIOS.includes(scenario)) {
    process.stderr.write(`demo: unknown scenario "${scenario}" (${SCENARIOS.join(', ')})\n`);
    return 2;
  }
  const left = await cleanLeftovers();
  if (left.kind === 'running') {
    process.stderr.write(`demo: another demo is running (pid ${left.pid}); stop it (Ctrl-C, or kill ${left.pid}) first\n`);
    return 1;
  }
  if (left.kind === 'removed') say(`removed what a previous demo run left: ${left.processes} process${left.processes === 1 ? '' : 'es'}, ${left.dirs} director${left.dirs === 1 ? 'y' : 'ies'}`);
  if (!(await ensurePostgres())) return 1;

  // One directory for everything this run starts, recorded before anything is started in it;
  // PostgreSQL runs as the postgres user when this runs as root, so it must be able to enter it.
  const root = mkdtempSync(join(tmpdir(), 'pgwatchdog-demo-'));
  chmodSync(root, 0o755);
  recordRun(root);
  process.on('exit', () => removeRun(root));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      say('stopping: removing everything the demo started …');
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
  process.env.PGWATCHDOG_LOG_LEVEL ??= 'info';
  // Loaded after the check: the test bed looks for the server binaries when it loads.
  const { startDemoCluster, unhealthy, peerLines, cliStatus, until } = await import('./demo/cluster.js');
  const dc = await startDemoCluster(root, say);
  const { bed } = dc;

  say('waiting for the peers to elect a coordinator and agree on the backends …');
  let why: string | undefined = 'not asked yet';
  const healthyAt = await until(60_000, async () => {
    why = unhealthy(await dc.statuses());
    return why === undefined ? Date.now() : undefined;
  });
  const st = await dc.statuses();
  const first = st.get('pgwd1');
  const coordinator = first instanceof Error ? null : (first?.coordinator ?? null);
  if (healthyAt !== undefined) say(`coordinator elected: ${coordinator} (Raft term ${first instanceof Error ? '?' : first?.raft.term}); every peer agrees on it and on the primary`);
  // A write through every peer: each routes by the replicated state once it has applied it.
  const writes = await Promise.all([...bed.peers].map(async ([name, p]) => [name, await until(30_000, () => dc.write(p))] as const));
  for (const [name, port] of writes) say(port === undefined ? `${name}: no write committed through it` : `${name}: a write through it committed on the primary (:${port})`);
  const healthy = healthyAt !== undefined && writes.every(([, port]) => port !== undefined);

  const lines = ['', 'Connect (any peer; writes go to the primary, reads are balanced):'];
  for (const [name, p] of bed.peers) lines.push(`  ${name}: psql "${dc.conn(p)}"`);
  lines.push('', 'Dashboard and admin API:');
  for (const [name, p] of bed.peers) {
    const url = `http://127.0.0.1:${p.adminPort}/`;
    const page = await fetch(url, { signal: AbortSignal.timeout(3000) }).then(
      async (r) => (r.ok && (await r.text()).includes('<html') ? 'the dashboard answers' : `HTTP ${r.status}`),
      (err: Error) => `not answering: ${err.message}`,
    );
    lines.push(`  ${name}: ${url}  (${page})`);
  }
  lines.push(`  admin token for the dashboard's buttons and the CLI's actions: PGWATCHDOG_TOKEN=${dc.token}`);
  lines.push(
    '',
    `VIP: simulated. The status names ${VIP_SHOWN}, but no address is ever added: the demo may add none`,
    'on loopback outside a network namespace. The escalation command writes a marker file instead,',
    `  ${bed.dir}/vip/PEER,`,
    "after removing the other peers' markers, as scripts/escalation.sh removes the address from the",
    'other hosts before adding it. docs/operations.md sets up a real VIP on three hosts.',
  );
  lines.push('', 'Watchdog (each peer\'s GET /v1/status):', ...peerLines(st));
  lines.push('', ...(await poolNodes(dc, 'pgwd1')));
  lines.push('', await cliStatus(bed.peers.get('pgwd1')!));
  lines.push('', healthy ? `cluster healthy: coordinator ${coordinator}, 1 primary, 2 standbys, 3 peers (in ${((healthyAt! - t0) / 1000).toFixed(1)} s)` : `cluster NOT healthy: ${why ?? 'a write through a peer did not commit'}`);
  process.stdout.write(`${lines.join('\n')}\n\n`);

  if (scenario !== undefined) {
    if (!healthy) return 1;
    const { failoverScenario, coordinatorScenario } = await import('./demo/scenarios.js');
    const verdict = await (scenario === 'failover' ? failoverScenario : coordinatorScenario)(dc, say);
    const after = await dc.statuses();
    const coord = [...after.values()].find((v) => !(v instanceof Error) && v.peer.state === 'coordinator');
    const summary = ['', 'Status after the scenario (each peer\'s GET /v1/status):', ...peerLines(after)];
    const asCoordinator = coord && !(coord instanceof Error) ? bed.peers.get(coord.peer.name as 'pgwd1') : undefined;
    if (asCoordinator) summary.push('', await cliStatus(asCoordinator));
    summary.push('', `scenario ${scenario}: ${verdict.ok ? 'OK' : 'FAILED'}: ${verdict.reason}`);
    process.stdout.write(`${summary.join('\n')}\n\n`);
    await dc.teardown();
    say('stopped and removed everything');
    return verdict.ok ? 0 : 1;
  }
  if (values.once) {
    await dc.teardown();
    say('stopped and removed everything');
    return healthy ? 0 : 1;
  }
  say('running; try `npm run demo -- --scenario failover` (or coordinator) next time; Ctrl-C stops and removes everything');
  await new Promise(() => undefined);
  return 0;
}

async function poolNodes(dc: DemoCluster, name: 'pgwd1'): Promise<string[]> {
  type Row = { node_id: string; hostname: string; port: string; status: string; role: string; lb_weight: string; replication_delay: string };
  const c = new pg.Client({ connectionString: dc.conn(dc.bed.peers.get(name)!), connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    const rows = (await c.query<Row>('SHOW POOL_NODES')).rows;
    const out = [`Backends (SHOW POOL_NODES through ${name}):`, '  id  address          status  role     lb_weight  delay'];
    for (const n of rows) out.push(`  ${n.node_id.padEnd(3)} ${`${n.hostname}:${n.port}`.padEnd(16)} ${n.status.padEnd(7)} ${n.role.padEnd(8)} ${n.lb_weight.padEnd(10)} ${n.replication_delay}`);
    return out;
  } catch (err) {
    return [`SHOW POOL_NODES through ${name} failed: ${(err as Error).message}`];
  } finally {
    await c.end().catch(() => undefined);
  }
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
