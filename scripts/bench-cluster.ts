// Watchdog benchmark on loopback: three real peer processes over a test-bed cluster, VIP
// commands writing marker files (escalation first removes the others', as the sample does).
//
//   npm run bench:cluster -- [--runs 10] [--idle-seconds 30] [--idle-periods 1000,500] [--only a,b,c,idle]
//
// (a) coordinator kill -9 → escalation finished on the new coordinator;
// (b) coordinator frozen (SIGSTOP: its sockets stay open, as in a host hang) → escalation on
//     another peer;
// (c) primary kill -9 → first committed write through a surviving non-coordinator peer (a
//     fresh test-bed cluster per run);
// idle: CPU per peer of an idle three-peer cluster (utime+stime from /proc), next to a
//     standalone peer on the same bed, with health checks at the default period and at 500 ms
//     (--idle-periods), each on its own bed; the rest of the health-check settings are the
//     test peers' (below) and the default fresh_login_every.
// Timing settings: the defaults (tick_ms 100, election_timeout_ticks 10, heartbeat_ticks 3)
// and the test peers' health checks (period 500 ms, timeout 1000 ms, 1 retry after 100 ms).
// It also counts samples (every 5 ms) with two VIP markers at once and failover commands per
// primary kill (must be exactly one).
import { readFileSync } from 'node:fs';
import { loadavg, cpus } from 'node:os';
import pg from 'pg';
import { healthCheckSchema } from '../src/config/schema.js';
import { createCluster, SUPERUSER, SUPERUSER_PASSWORD } from '../test/support/pg.js';
import { startPeerProcess } from '../test/support/peer.js';
import { allLinked, bed, NAMES, oneHolder, query, waitFor, type Bed, type Name } from '../test/support/watchdog-bed.js';

const argv = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : def;
};
const RUNS = Math.max(1, Number(arg('runs', '10')));
const IDLE_S = Math.max(1, Number(arg('idle-seconds', '30')));
const ONLY = new Set(arg('only', 'a,b,c,idle').split(','));
const DEFAULT_PERIOD = healthCheckSchema.parse({}).period_ms;
/** Health-check periods the idle part runs at: the default and the test peers' 500 ms. */
const IDLE_PERIODS = arg('idle-periods', `${DEFAULT_PERIOD},500`).split(',').map(Number);
process.env.PGWATCHDOG_LOG_LEVEL ??= 'info';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let doubleHolderSamples = 0;
function sampleHolders(b: Bed): () => void {
  const t = setInterval(() => {
    if (b.holders().length > 1) doubleHolderSamples++;
  }, 5);
  return () => clearInterval(t);
}

/** ms from t0 until one VIP marker exists and it is not `old`'s. */
async function untilNewHolder(b: Bed, old: Name, t0: number, timeoutMs = 30_000): Promise<{ ms: number; holder: Name }> {
  while (Date.now() - t0 < timeoutMs) {
    const h = b.holders();
    if (h.length === 1 && h[0] !== old) return { ms: Date.now() - t0, holder: h[0]! };
    await sleep(2);
  }
  throw new Error(`no new VIP holder within ${timeoutMs} ms`);
}

async function settle(b: Bed, name: Name): Promise<void> {
  const p = b.peers.get(name)!;
  await p.waitForLog((l) => l.msg === 'raft role changed' && l.role === 'follower' && typeof l.leader === 'string', 30_000);
  await sleep(2000);
}

function stats(xs: number[]): string {
  const s = [...xs].sort((x, y) => x - y);
  const med = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return `median ${med} ms, max ${s[s.length - 1]} ms (n=${s.length}: ${xs.join(', ')})`;
}

/** Where the time of a (a) run went, from the new holder's own log lines after t0 (ms since t0). */
function breakdown(b: Bed, holder: Name, t0: number): string {
  const logs = b.peers.get(holder)!.logs.filter((l) => Date.parse(String(l.time)) >= t0);
  const at = (what: string, pred: (l: (typeof logs)[number]) => boolean): string => {
    const l = logs.find(pred);
    return `${what} ${l ? Date.parse(String(l.time)) - t0 : '?'}`;
  };
  const msg = (l: (typeof logs)[number]) => (typeof l.msg === 'string' ? l.msg : '');
  return [
    at('election', (l) => l.msg === 'raft role changed' && l.role === 'pre-candidate'),
    at('leader', (l) => l.msg === 'raft role changed' && l.role === 'leader'),
    at('claim applied', (l) => l.command === 'vip' && msg(l).includes(`${holder} claims it`)),
    at('lease+claim: escalate', (l) => msg(l).startsWith('VIP: take the VIP')),
    at('escalated', (l) => l.msg === 'VIP escalation succeeded'),
  ].join(', ');
}

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks (100/s)
}

/**
 * Idle CPU per peer of an idle three-peer cluster whose health checks run every `periodMs`,
 * next to a standalone peer with the same settings on the same bed: the difference is what the
 * watchdog costs. Measured after start-up (sources compiled under tsx, code warmed up, the
 * one-off collections after start done).
 */
async function idleCpu(periodMs: number): Promise<void> {
  const health = { period_ms: periodMs };
  // faults: false: no fault-injection file for the peers to poll (a production peer has none).
  const b = await bed({ peer: { health_check: health }, faults: false });
  try {
    await oneHolder(b);
    await sleep(10_000);
    const solo = await startPeerProcess(b.cluster, { health_check: health }, { readyTimeoutMs: 60_000 });
    try {
      // V8's memory reducer runs a few full collections about 30 s after start-up (hundreds of
      // ms of CPU, once): past it, what is measured is the steady state.
      await sleep(45_000);
      const pids = [...NAMES.map((n) => b.peers.get(n)!.proc.pid!), solo.proc.pid!];
      const before = pids.map(cpuTicks);
      await sleep(IDLE_S * 1000);
      const used = pids.map((p, i) => (cpuTicks(p) - before[i]!) / 100 / IDLE_S);
      const names = [...NAMES, 'standalone peer'];
      const hc = { ...healthCheckSchema.parse({}), ...health };
      console.log(
        `idle CPU per peer over ${IDLE_S} s, load ${loadavg()[0]!.toFixed(2)} (health checks: period ${hc.period_ms} ms${periodMs === DEFAULT_PERIOD ? ' (default)' : ''}, fresh login every ${hc.fresh_login_every} checks; 3 backends): ${used.map((u, i) => `${names[i]} ${(u * 100).toFixed(2)}%`).join(', ')} of one core`,
      );
    } finally {
      await solo.stop();
    }
  } finally {
    await b.teardown();
  }
}

async function main(): Promise<void> {
  console.log(`bench:cluster on ${cpus().length} cores, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}; runs ${RUNS}; watchdog defaults (tick 100 ms, election 10 ticks, heartbeat 3 ticks)`);
  const results: Record<string, number[]> = { a: [], b: [], c: [] };
  if (ONLY.has('idle')) {
    for (const periodMs of IDLE_PERIODS) await idleCpu(periodMs);
  }
  if (ONLY.has('a') || ONLY.has('b')) {
    const b = await bed();
    const stop = sampleHolders(b);
    try {
      await oneHolder(b);
      await sleep(2000);
      for (const kind of ['a', 'b'] as const) {
        if (!ONLY.has(kind)) continue;
        for (let i = 0; i < RUNS; i++) {
          const old = await oneHolder(b);
          await allLinked(b);
          const p = b.peers.get(old)!;
          const t0 = Date.now();
          if (kind === 'a') await p.kill9();
          else p.proc.kill('SIGSTOP');
          const { ms, holder } = await untilNewHolder(b, old, t0);
          results[kind]!.push(ms);
          if (process.env.BENCH_ELECTION_LOG && kind === 'a') {
            for (const n of NAMES.filter((x) => x !== old)) {
              for (const l of b.peers.get(n)!.logs.filter((x) => Date.parse(String(x.time)) >= t0 - 1500 && (x.msg === 'raft election message' || x.msg === 'raft role changed' || String(x.msg).includes('ticks late')))) {
                console.log(`   ${n} ${String(l.time).slice(11, 23)} ${String(l.msg)} ${JSON.stringify({ ...l, time: undefined, msg: undefined, level: undefined, pid: undefined, hostname: undefined, part: undefined, peer: undefined, name: undefined })}`);
              }
            }
          }
          console.log(`(${kind}) run ${i + 1}: ${kind === 'a' ? 'kill -9' : 'SIGSTOP'} of ${old} → ${holder} escalated after ${ms} ms (ms after the signal: ${breakdown(b, holder, t0)})`);
          if (kind === 'a') await b.start(old);
          else {
            p.proc.kill('SIGCONT');
            await p.waitForLog((l) => l.msg === 'raft role changed' && l.role === 'follower' && typeof l.leader === 'string' && Date.parse(String(l.time)) > t0, 30_000);
          }
          await settle(b, old);
        }
      }
    } finally {
      stop();
      await b.teardown();
    }
  }
  let duplicateCommands = 0;
  if (ONLY.has('c')) {
    for (let i = 0; i < RUNS; i++) {
      const b = await bed({ cluster: await createCluster({ standbys: 2 }) });
      const stop = sampleHolders(b);
      try {
        const coord = await oneHolder(b);
        const via = NAMES.find((n) => n !== coord)!;
        const p = b.peers.get(via)!;
        // the peer routes once it has applied the coordinator's find-primary entries
        await waitFor(`${via} routes writes`, async () => (await query(p, 'CREATE TABLE IF NOT EXISTS probe (id serial primary key)')) !== undefined, 30_000);
        await b.cluster.waitReplicated();
        // Every link up and every view fresh before the kill: a peer still in its redial
        // backoff would be missing from the coordinator's tally (1 without a fresh view).
        await allLinked(b);
        const oldPort = b.cluster.primary.port;
        const t0 = Date.now();
        await b.cluster.primary.kill9();
        let ms: number | null = null;
        while (Date.now() - t0 < 30_000 && ms === null) {
          const c = new pg.Client({ host: p.host, port: p.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres', connectionTimeoutMillis: 1000 });
          c.on('error', () => undefined);
          try {
            await c.connect();
            const r = await c.query<{ port: number }>('INSERT INTO probe DEFAULT VALUES RETURNING inet_server_port() AS port');
            if (r.rows[0]!.port !== oldPort) ms = Date.now() - t0;
          } catch {
            // not yet
          } finally {
            await c.end().catch(() => undefined);
          }
          if (ms === null) await sleep(5);
        }
        await sleep(3000);
        const n = b.failoverCount();
        if (n !== 1) duplicateCommands++;
        if (ms !== null) results.c!.push(ms);
        console.log(`(c) run ${i + 1}: primary kill -9 → first committed write through ${via} (coordinator ${coord}) after ${ms ?? 'TIMEOUT'} ms; failover commands: ${n}`);
      } finally {
        stop();
        await b.teardown();
      }
    }
  }
  console.log('--- summary');
  if (results.a!.length) console.log(`(a) coordinator kill -9 → escalation on the new coordinator: ${stats(results.a!)} (target ≤ 1500 ms; pgpool-II 4.3: 6.2 s)`);
  if (results.b!.length) console.log(`(b) coordinator SIGSTOP → escalation on another peer: ${stats(results.b!)} (target ≤ 3000 ms; pgpool-II: 10 s tuned)`);
  if (results.c!.length) console.log(`(c) primary kill -9 → first committed write through a non-coordinator: ${stats(results.c!)} (target ≤ 1000 ms; pgpool-II: 1.9-2.0 s tuned)`);
  console.log(`samples with two VIP markers at once: ${doubleHolderSamples}; primary kills with a failover command count other than 1: ${duplicateCommands}`);
}

await main();
process.exit(0);
