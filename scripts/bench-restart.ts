// Online restart benchmark (`npm run bench:restart`): what clients see while a peer process
// hands everything over to its successor (`start --takeover`), on a real peer, PostgreSQL and
// pgbench.
//
//   npm run bench:restart -- [--runs 3] [--clients 8] [--idle 100,1000]
//
// The npm script builds dist/ first and runs the peers from it (PGWATCHDOG_RUN=dist: what
// ships, not the tsx-compiled sources).
//
// (a) The pause: pgbench -N -M prepared with persistent connections through the peer, one
//     takeover per run. From pgbench's per-transaction log: p50, p99 and max latency of the
//     transactions that ended in the second around the switch (from 0.5 s before the old
//     process took the successor's hello to 0.5 s after it said done), next to the same
//     figures for the rest of the run; failed transactions and aborted clients.
// (b) The takeover's duration with N idle sessions: hello → done as the old process logs it
//     (watchdog released, listeners and every session moved), and that every session still
//     answers afterwards.
// Targets (issue 16): no failed transaction, p99 pause < 100 ms, 1000 idle sessions < 1 s.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import pg from 'pg';
import { createCluster, pgBin, run, SUPERUSER, SUPERUSER_PASSWORD, type PgCluster } from '../test/support/pg.js';
import { startPeerProcess, type PeerProcess } from '../test/support/peer.js';

const argv = process.argv.slice(2);
function opt(name: string, def: string): string {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : def;
}
const RUNS = Math.max(0, Number(opt("runs", "3")));
const CLIENTS = Math.max(1, Number(opt('clients', '8')));
const IDLE = opt('idle', '100,1000').split(',').map(Number);
process.env.PGWATCHDOG_LOG_LEVEL ??= 'info';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const env = { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD };

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const ms = (us: number) => (us / 1000).toFixed(1);

function logTime(p: PeerProcess, msg: (m: string) => boolean): number {
  const l = p.logs.find((x) => msg(x.msg));
  if (!l) throw new Error(`no log line found in the old process (${p.logs.slice(-5).map((x) => x.msg).join(' | ')})`);
  return Date.parse(String(l.time));
}

async function restart(cluster: PgCluster, old: PeerProcess): Promise<{ next: PeerProcess; startMs: number; endMs: number; durationMs: number; reason: string }> {
  const next = await startPeerProcess(cluster, {}, { takeoverFrom: old, readyTimeoutMs: 60_000 });
  await old.exited;
  const done = old.logs.find((l) => l.msg.startsWith('takeover finished'));
  if (!done) throw new Error(`the old process exited without finishing the takeover: ${old.logs.slice(-5).map((x) => x.msg).join(' | ')}`);
  const startMs = logTime(old, (m) => m.startsWith('takeover started'));
  const endMs = Date.parse(String(done.time));
  const taken = next.logs.find((l) => l.msg === 'sessions taken over');
  const ph = done.phases as { watchdog: number; listeners: number; sessions: number };
  return { next, startMs, endMs, durationMs: Number(done.ms), reason: `${String(done.moved)} moved, ${String(done.ended)} ended; watchdog released at ${ph.watchdog} ms, successor listening at ${ph.listeners} ms, sessions moved at ${ph.sessions} ms; here: stop accepting ${String(done.stopAcceptingMs)} ms, ${JSON.stringify(done.cost)}; successor: ${taken ? JSON.stringify({ waitMs: taken.waitMs, adoptMs: taken.adoptMs }) : '?'}` };
}

async function pauseRun(cluster: PgCluster): Promise<{ around: number[]; rest: number[]; failed: string; aborted: boolean; tx: number; takeoverMs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'pgwd-bench-restart-'));
  let peer = await startPeerProcess(cluster, { proxy: { pool: { max_per_backend: 200 } } });
  try {
    const seconds = 16;
    const args = ['-n', '-N', '-M', 'prepared', '-c', String(CLIENTS), '-j', '2', '-T', String(seconds), '-l', `--log-prefix=${join(dir, 'tx')}`, '-h', peer.host, '-p', String(peer.port), '-U', SUPERUSER, 'postgres'];
    let out = '';
    const bench = spawn(pgBin('pgbench'), args, { env, cwd: dir });
    bench.stdout.on('data', (d: Buffer) => (out += d.toString()));
    bench.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => bench.on('exit', (c) => r(c)));
    await sleep(5000);
    const old = peer;
    const r = await restart(cluster, old);
    peer = r.next;
    const code = await exited;
    // Per-transaction log lines: client_id transaction_no latency_us script_no epoch_s epoch_us
    const around: number[] = [];
    const rest: number[] = [];
    const from = r.startMs - 500;
    const to = r.endMs + 500;
    for (const f of readdirSync(dir).filter((n) => n.startsWith('tx'))) {
      for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
        const p = line.trim().split(/\s+/);
        if (p.length < 6) continue;
        const lat = Number(p[2]);
        const end = Number(p[4]) * 1000 + Number(p[5]) / 1000;
        (end >= from && end <= to ? around : rest).push(lat);
      }
    }
    around.sort((a, b) => a - b);
    rest.sort((a, b) => a - b);
    const failed = /number of failed transactions: (\d+)/.exec(out)?.[1] ?? '?';
    const tx = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? 0);
    return { around, rest, failed, aborted: code !== 0 || /aborted/.test(out), tx, takeoverMs: r.durationMs };
  } finally {
    peer.ownsDir = true;
    await peer.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function idleRun(cluster: PgCluster, n: number): Promise<{ durationMs: number; reason: string; answering: number }> {
  let peer = await startPeerProcess(cluster, { proxy: { max_clients: n + 100, pool: { max_per_backend: n + 50 } } });
  const clients: pg.Client[] = [];
  try {
    for (let i = 0; i < n; i += 50) {
      const batch = Array.from({ length: Math.min(50, n - i) }, () => new pg.Client({ host: peer.host, port: peer.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' }));
      for (const c of batch) c.on('error', () => undefined);
      await Promise.all(batch.map((c) => c.connect()));
      await Promise.all(batch.map((c) => c.query('SELECT 1')));
      clients.push(...batch);
    }
    await sleep(500);
    const r = await restart(cluster, peer);
    peer = r.next;
    const errors = new Map<string, number>();
    const ok = await Promise.all(
      clients.map((c) =>
        c.query('SELECT 1 AS x').then(
          () => 1,
          (err: Error) => (errors.set(err.message, (errors.get(err.message) ?? 0) + 1), 0),
        ),
      ),
    );
    if (errors.size) console.log(`errors after the takeover: ${JSON.stringify([...errors])}`);
    return { durationMs: r.durationMs, reason: r.reason, answering: ok.reduce<number>((a, b) => a + b, 0) };
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    peer.ownsDir = true;
    await peer.stop();
  }
}

async function main(): Promise<void> {
  const maxIdle = Math.max(...IDLE);
  const cluster = await createCluster({ standbys: 0, settings: { max_connections: Math.max(300, maxIdle + 200) } });
  try {
    await run(pgBin('pgbench'), ['-i', '-s', '1', '-q', '-h', cluster.primary.host, '-p', String(cluster.primary.port), '-U', SUPERUSER, 'postgres'], { asPostgres: false, env });
    console.log(`peers run from ${process.env.PGWATCHDOG_RUN === 'dist' ? 'dist/ (compiled)' : 'the sources (tsx)'}; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
    console.log(`bench:restart — ${RUNS} runs, pgbench -N -M prepared -c ${CLIENTS}, one takeover per run`);
    console.log('run | tx | failed | aborted | takeover ms | around switch: n p50 p99 max (ms) | rest: p50 p99 max (ms)');
    const p99s: number[] = [];
    const maxes: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const r = await pauseRun(cluster);
      p99s.push(pct(r.around, 99));
      maxes.push(r.around.at(-1) ?? NaN);
      console.log(
        `${i + 1} | ${r.tx} | ${r.failed} | ${r.aborted ? 'YES' : 'no'} | ${r.takeoverMs} | ${r.around.length} ${ms(pct(r.around, 50))} ${ms(pct(r.around, 99))} ${ms(r.around.at(-1) ?? NaN)} | ${ms(pct(r.rest, 50))} ${ms(pct(r.rest, 99))} ${ms(r.rest.at(-1) ?? NaN)}`,
      );
    }
    p99s.sort((a, b) => a - b);
    console.log(`around the switch: p99 median ${ms(pct(p99s, 50))} ms, worst max ${ms(Math.max(...maxes))} ms`);
    console.log('idle sessions | takeover ms (hello → done) | moved/ended | answering after');
    for (const n of IDLE) {
      const r = await idleRun(cluster, n);
      console.log(`${n} | ${r.durationMs} | ${r.reason} | ${r.answering}/${n} | load ${loadavg()[0]!.toFixed(1)}`);
    }
  } finally {
    await cluster.teardown();
  }
}

await main();
process.exit(0);
