// Failover benchmark: with pgbench -N writing through a real pgwatchdog peer, kill -9 the
// primary and time how long until a write commits through the proxy again (on the promoted
// standby). A fresh test-bed cluster (primary + 2 streaming standbys) per run.
//
//   npm run bench:failover -- [--runs 5] [--period 500] [--timeout 500] [--retries 1]
//                             [--retry-delay 200] [--clients 4] [--load-seconds 2]
//                             [--no-backend-error] [--sessions keep,end] [--persistent 8]
//                             [--persistent-interval 100]
//
// Persistent connections (proxy.failover_sessions, each mode in --sessions gets --runs runs):
// --persistent clients each hold one connection and write (one INSERT, autocommit) every
// --persistent-interval ms. Per client: failed statements across the kill (and how many of
// them were in flight at the kill instant), reconnects, and the pause it saw (its longest
// statement, from send to answer or error, among those started from the kill on). A client
// whose session ends reconnects at once (that is what `end` costs an application).
//
// --no-backend-error sets failover.failover_on_backend_error: false, so only the periodic
// health check notices the dead primary: the price of not rechecking on a broken connection.
// Per run it prints: kill → down confirmed by the health check, kill → new primary in the
// peer's registry (new sessions route there from then), kill → first committed write through
// the proxy (a probe client retrying every 5 ms), the failover request that replaced the
// primary (by its seq), false detections (a live server declared down: any before the kill,
// and the standbys' at any time), and whether the new primary still holds 3 s after the
// first write (a second write lands on it and the peer's state has exactly one routable
// primary); then median and max over the runs. A run without a write, or that ends without a
// primary, is a failure in the table.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import pg from 'pg';
import { createCluster, pgBin, run, SUPERUSER, SUPERUSER_PASSWORD } from '../test/support/pg.js';
import { startPeerProcess, type LogLine } from '../test/support/peer.js';

const argv = process.argv.slice(2);
function opt(name: string, def: number): number {
  const i = argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(argv[i + 1]) : def;
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} must be a non-negative integer`);
  return v;
}
const RUNS = Math.max(1, opt('runs', 5));
const HEALTH = { period_ms: opt('period', 500), timeout_ms: opt('timeout', 500), connect_timeout_ms: opt('timeout', 500), max_retries: opt('retries', 1), retry_delay_ms: opt('retry-delay', 200) };
const CLIENTS = Math.max(1, opt('clients', 4));
const LOAD_MS = opt('load-seconds', 2) * 1000;
const ON_BACKEND_ERROR = !argv.includes('--no-backend-error');
const SESSIONS = (() => {
  const i = argv.indexOf('--sessions');
  const v = (i >= 0 ? argv[i + 1]! : 'keep,end').split(',');
  for (const m of v) if (m !== 'keep' && m !== 'end') throw new Error('--sessions takes keep, end or keep,end');
  return v as ('keep' | 'end')[];
})();
const PERSISTENT = opt('persistent', 8);
const PERSISTENT_INTERVAL = opt('persistent-interval', 100);

process.env.PGWATCHDOG_LOG_LEVEL ??= 'info';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface RunResult {
  detectedMs: number | null;
  /** Health checks that declared a live server down. */
  falseDetections: number;
  /** The request that made the new primary. */
  seq: number | null;
  /** 3 s after the first write: another write landed on the same primary and the peer routes to exactly one. */
  held: boolean;
  /** The peer's last state had no routable primary. */
  noPrimary: boolean;
  /** Live standbys (not the killed primary, not the new one) still detached at the end. */
  detachedStandbys: number;
  newPrimaryMs: number | null;
  firstWriteMs: number | null;
  newPrimary: number | null;
  pgbenchTx: number;
  probeAttempts: number;
  mode: 'keep' | 'end';
  persistent: PersistentClient[];
}

/** One persistent client's view of the failover. */
interface PersistentClient {
  /** Statements that failed from the kill on. */
  failed: number;
  /** Of those, the one in flight at the kill instant (0 or 1). */
  inFlightAtKill: number;
  reconnects: number;
  /** Its longest statement started from the kill on (ms): the pause it saw. */
  pauseMs: number;
}

/** A client that writes every `interval` ms on one connection, reconnecting when it ends; stop() returns what it saw from `killedAt()` on. */
function persistentClient(connect: () => pg.Client, interval: number, killedAt: () => number): { stop: () => Promise<PersistentClient> } {
  const res: PersistentClient = { failed: 0, inFlightAtKill: 0, reconnects: 0, pauseMs: 0 };
  let stopped = false;
  const loop = (async () => {
    let c: pg.Client | null = null;
    while (!stopped) {
      const t0 = Date.now();
      try {
        if (!c) {
          c = connect();
          await c.connect();
          if (killedAt() && t0 >= killedAt()) res.reconnects++;
        }
        await c.query('INSERT INTO bench_probe DEFAULT VALUES');
        const k = killedAt();
        if (k && t0 >= k) res.pauseMs = Math.max(res.pauseMs, Date.now() - t0);
      } catch {
        const k = killedAt();
        const t1 = Date.now();
        if (k && t1 >= k) {
          res.failed++;
          if (t0 < k) res.inFlightAtKill++;
          else res.pauseMs = Math.max(res.pauseMs, t1 - t0);
        }
        const dead: pg.Client | null = c;
        c = null;
        dead?.end().catch(() => undefined);
      }
      await sleep(interval);
    }
    await (c as pg.Client | null)?.end().catch(() => undefined);
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return res;
    },
  };
}

function logTime(l: LogLine | undefined): number | null {
  return l && typeof l.time === 'string' ? Date.parse(l.time) : null;
}

/** The test bed could not be built (a server that did not start on a saturated machine):
 * not a failover result, so the run is repeated. */
class SetupError extends Error {}

async function oneRun(i: number, mode: 'keep' | 'end'): Promise<RunResult> {
  const cluster = await createCluster({ standbys: 2 }).catch((err: Error) => {
    throw new SetupError(err.message);
  });
  let pgbench: ChildProcess | undefined;
  try {
    const env = { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD };
    await run(pgBin('pgbench'), ['-i', '-s', '1', '-q', '-h', cluster.primary.host, '-p', String(cluster.primary.port), '-U', SUPERUSER, 'postgres'], { asPostgres: false, env });
    await cluster.waitReplicated();
    const peer = await startPeerProcess(cluster, { health_check: HEALTH, log: { level: 'info' }, failover: { failover_on_backend_error: ON_BACKEND_ERROR }, proxy: { failover_sessions: mode } });
    try {
      await peer.waitForLog((l) => l.msg === 'peer ready', 30_000);
      const client = () => {
        const c = new pg.Client({ host: peer.host, port: peer.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres', connectionTimeoutMillis: 2000 });
        c.on('error', () => undefined);
        return c;
      };
      const setup = client();
      await setup.connect();
      await setup.query('CREATE TABLE IF NOT EXISTS bench_probe (id bigserial primary key, at timestamptz default now())');
      await setup.end();

      let txCount = 0;
      pgbench = spawn(pgBin('pgbench'), ['-N', '-n', '-M', 'simple', '-c', String(CLIENTS), '-j', '2', '-T', '60', '-P', '1', '-h', peer.host, '-p', String(peer.port), '-U', SUPERUSER, 'postgres'], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const onOut = (d: Buffer) => {
        const m = /progress: .*? ([\d.]+) tps/.exec(d.toString());
        if (m) txCount += Number(m[1]);
      };
      pgbench.stdout!.on('data', onOut);
      pgbench.stderr!.on('data', onOut);
      let killedAt = 0;
      const persistent = Array.from({ length: PERSISTENT }, () => persistentClient(client, PERSISTENT_INTERVAL, () => killedAt));
      await sleep(LOAD_MS);

      // The probe: one write at a time; a broken or refused connection is replaced at once.
      const oldPort = cluster.primary.port;
      let firstWrite: number | null = null;
      let firstPort = -1;
      let attempts = 0;
      let stopProbe = false;
      const probe = (async () => {
        let c: pg.Client | null = null;
        while (!stopProbe && firstWrite === null) {
          try {
            if (!c) {
              c = client();
              await c.connect();
            }
            if (killedAt) attempts++;
            const r = await c.query<{ p: number }>('INSERT INTO bench_probe DEFAULT VALUES RETURNING inet_server_port() AS p');
            if (killedAt && r.rows[0]!.p !== oldPort) {
              firstWrite = Date.now();
              firstPort = r.rows[0]!.p;
            }
            else await sleep(5);
          } catch {
            const dead: pg.Client | null = c;
            c = null;
            dead?.end().catch(() => undefined);
            await sleep(5);
          }
        }
        await (c as pg.Client | null)?.end().catch(() => undefined);
      })();

      await sleep(200);
      killedAt = Date.now();
      await cluster.primary.kill9();
      const deadline = Date.now() + 30_000;
      while (firstWrite === null && Date.now() < deadline) await sleep(5);
      stopProbe = true;
      await probe;
      // Persistent clients: a few seconds more, so that every one has written on the new primary.
      await sleep(2000);
      const persistentSeen = await Promise.all(persistent.map((p) => p.stop()));
      // The new primary must hold: a write a few seconds later still lands on it.
      let held = false;
      if (firstWrite !== null) {
        await sleep(3000);
        const c = client();
        try {
          await c.connect();
          const r = await c.query<{ p: number }>('INSERT INTO bench_probe DEFAULT VALUES RETURNING inet_server_port() AS p');
          held = r.rows[0]!.p === firstPort;
        } catch {
          held = false;
        } finally {
          await c.end().catch(() => undefined);
        }
      }
      const logs = peer.logs;
      const after = (l: LogLine) => (logTime(l) ?? 0) >= killedAt;
      const downs = logs.filter((l) => l.msg === 'backend unreachable after all health-check retries');
      const detected = downs.find((l) => l.backend === 0 && after(l));
      const falseDetections = downs.filter((l) => l.backend !== 0 || !after(l)).length;
      // The peer logs every status/role change; the new primary's is the instant new sessions route to it.
      const promoted = logs.find((l) => l.msg === 'backend state changed' && l.role === 'primary' && l.status === 'up' && l.backend !== 0 && after(l));
      const finished = logs.find((l) => String(l.msg).startsWith('failover request finished') && l.kind === 'node_down' && after(l) && typeof l.newPrimary === 'number' && l.newPrimary !== 0);
      // The peer's final state, replayed from its log: how many routable primaries.
      const state = new Map<number, { status: unknown; role: unknown }>();
      const ready = logs.find((l) => l.msg === 'peer ready') as (LogLine & { backends?: { id: number; status: string; role: string }[] }) | undefined;
      for (const b of ready?.backends ?? []) state.set(b.id, { status: b.status, role: b.role });
      for (const l of logs) if (l.msg === 'backend state changed') state.set(l.backend as number, { status: l.status, role: l.role });
      const primaries = [...state.values()].filter((b) => b.status === 'up' && b.role === 'primary').length;
      const res: RunResult = {
        detectedMs: detected ? logTime(detected)! - killedAt : null,
        falseDetections,
        seq: finished && typeof finished.seq === 'number' ? finished.seq : null,
        held: held && primaries === 1,
        noPrimary: primaries === 0,
        detachedStandbys: [...state.entries()].filter(([id, b]) => id !== 0 && !(b.status === 'up' && b.role === 'primary') && b.status !== 'up').length,
        newPrimaryMs: promoted ? logTime(promoted)! - killedAt : null,
        firstWriteMs: firstWrite !== null ? (firstWrite as number) - killedAt : null,
        newPrimary: finished ? (finished.newPrimary as number) : null,
        pgbenchTx: Math.round(txCount),
        probeAttempts: attempts,
        mode,
        persistent: persistentSeen,
      };
      const pFailed = persistentSeen.reduce((n, p) => n + p.failed, 0);
      const pInFlight = persistentSeen.reduce((n, p) => n + p.inFlightAtKill, 0);
      const pReconnects = persistentSeen.reduce((n, p) => n + p.reconnects, 0);
      console.log(
        `run ${i + 1} (failover_sessions ${mode}): ${PERSISTENT} persistent clients: ${pFailed} failed statement(s), ${pInFlight} of them in flight at the kill, ${pReconnects} reconnect(s); pauses ${persistentSeen.map((p) => p.pauseMs).sort((a, b) => a - b).join(' ')} ms`,
      );
      console.log(
        `run ${i + 1}: down confirmed ${fmt(res.detectedMs)}, new primary (node ${res.newPrimary ?? '-'}, request ${res.seq ?? '-'}) ${fmt(res.newPrimaryMs)}, first committed write through the proxy ${fmt(res.firstWriteMs)} (${res.probeAttempts} probe attempts; pgbench ~${res.pgbenchTx} tx before the kill); ${res.falseDetections} false detection(s); ${res.detachedStandbys} standby(s) still detached; ${res.noPrimary ? 'ENDED WITHOUT A PRIMARY' : res.held ? 'primary held 3 s later' : 'PRIMARY DID NOT HOLD'}`,
      );
      return res;
    } finally {
      pgbench?.kill('SIGKILL');
      await peer.stop();
    }
  } finally {
    await cluster.teardown();
  }
}

function fmt(ms: number | null): string {
  return ms === null ? 'n/a' : `${ms} ms`;
}

function stats(xs: (number | null)[]): { median: number | null; max: number | null } {
  const v = xs.filter((x): x is number => x !== null).sort((a, b) => a - b);
  if (v.length === 0) return { median: null, max: null };
  const mid = Math.floor(v.length / 2);
  return { median: v.length % 2 ? v[mid]! : Math.round((v[mid - 1]! + v[mid]!) / 2), max: v[v.length - 1]! };
}

async function main(): Promise<void> {
  console.log(`bench:failover — ${RUNS} run(s); pgbench -N -c ${CLIENTS} through one pgwatchdog peer; primary + 2 standbys; kill -9 of the primary`);
  console.log(`health_check: ${JSON.stringify(HEALTH)}; failover.promote: builtin; failover_on_backend_error: ${ON_BACKEND_ERROR}`);
  console.log(`persistent clients: ${PERSISTENT}, one INSERT every ${PERSISTENT_INTERVAL} ms each; proxy.failover_sessions: ${SESSIONS.join(', ')} (${RUNS} run(s) each)`);
  console.log(`machine: ${cpus().length} CPU(s), load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const results: RunResult[] = [];
  for (let i = 0, setupFailures = 0; i < RUNS * SESSIONS.length; ) {
    try {
      results.push(await oneRun(i, SESSIONS[Math.floor(i / RUNS)]!));
      i++;
    } catch (err) {
      if (!(err instanceof SetupError) || ++setupFailures > 5) throw err;
      console.log(`run ${i + 1}: the test bed did not start (${err.message.split('\n')[0]}); repeated`);
    }
  }
  const rows: [string, (r: RunResult) => number | null][] = [
    ['kill → down confirmed', (r) => r.detectedMs],
    ['kill → new primary routable', (r) => r.newPrimaryMs],
    ['kill → first committed write', (r) => r.firstWriteMs],
  ];
  console.log('');
  console.log(`${'measure'.padEnd(32)}${'median'.padStart(10)}${'max'.padStart(10)}`);
  for (const [name, f] of rows) {
    const s = stats(results.map(f));
    console.log(`${name.padEnd(32)}${fmt(s.median).padStart(10)}${fmt(s.max).padStart(10)}`);
  }
  const w = stats(results.map((r) => r.firstWriteMs));
  const noWrite = results.filter((r) => r.firstWriteMs === null).length;
  const noPrimary = results.filter((r) => r.noPrimary).length;
  const notHeld = results.filter((r) => !r.held).length;
  const falseTotal = results.reduce((n, r) => n + r.falseDetections, 0);
  const falseRuns = results.filter((r) => r.falseDetections > 0).length;
  console.log(`${'false detections'.padEnd(32)}${String(falseTotal).padStart(10)} in ${falseRuns} of ${results.length} run(s)`);
  console.log(`${'standbys still detached at end'.padEnd(32)}${String(results.reduce((n, r) => n + r.detachedStandbys, 0)).padStart(10)} in ${results.filter((r) => r.detachedStandbys > 0).length} run(s)`);
  console.log(`${'FAILED: no write within 30 s'.padEnd(32)}${String(noWrite).padStart(10)}`);
  console.log(`${'FAILED: ended without a primary'.padEnd(32)}${String(noPrimary).padStart(10)}`);
  console.log(`${'FAILED: primary did not hold 3 s'.padEnd(32)}${String(notHeld).padStart(10)}`);
  console.log('');
  if (PERSISTENT > 0) {
    console.log(`persistent clients (per client, over every run)${' '.repeat(2)}failed stmts mean/max  in flight at kill  reconnects  pause p50 / p99 / max`);
    for (const mode of SESSIONS) {
      const cs = results.filter((r) => r.mode === mode).flatMap((r) => r.persistent);
      if (cs.length === 0) continue;
      const pauses = cs.map((c) => c.pauseMs).sort((a, b) => a - b);
      const q = (f: number) => pauses[Math.min(pauses.length - 1, Math.ceil(f * pauses.length) - 1)]!;
      const failedAll = cs.reduce((n, c) => n + c.failed, 0);
      console.log(
        `  failover_sessions ${mode.padEnd(5)} (${String(cs.length).padStart(3)} clients)    ${(failedAll / cs.length).toFixed(2).padStart(6)} / ${String(Math.max(...cs.map((c) => c.failed))).padEnd(8)}${String(cs.reduce((n, c) => n + c.inFlightAtKill, 0)).padStart(8)} of ${String(failedAll).padEnd(6)}${String(cs.reduce((n, c) => n + c.reconnects, 0)).padStart(8)}     ${q(0.5)} / ${q(0.99)} / ${pauses.at(-1)} ms`,
      );
    }
    console.log('');
  }
  const failed = noWrite + noPrimary + notHeld;
  console.log(`target: median ≤ 1000 ms with period 500 / timeout 500 / retries 1, and no failed run → ${w.median !== null && w.median <= 1000 && failed === 0 ? 'met' : 'NOT met'}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
