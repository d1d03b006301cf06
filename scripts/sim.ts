// Deterministic simulation sweeps.
//   npm run sim -- --seeds N --start S --nodes 3|5|3,5   Raft sweep, then the watchdog sweep
//   npm run sim -- --raft | --watchdog ...               one of the two only
//   npm run sim -- --seed S --nodes N [--trace]          replay one Raft seed (bit for bit)
//   npm run sim -- --watchdog --seed S --nodes N [--trace]  replay one watchdog seed
// Options: --fault-ticks N (fault phase length), --election-ticks T, --quiet
import { runSeed, runSweep, percentile, SimFailure } from '../src/raft/sim/run-seed.js';
import { runWatchdogSeed, runWatchdogSweep } from '../src/cluster/sim/run-seed.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const has = (name: string): boolean => process.argv.includes(`--${name}`);
const num = (name: string, d: number): number => {
  const v = arg(name);
  if (v === undefined) return d;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${name}: not a number: ${v}`);
  return n;
};

const nodes = (arg('nodes') ?? '3,5').split(',').map(Number);
const T = num('election-ticks', 10);
const TICK_MS = 100;
const doRaft = !has('watchdog');
const doWatchdog = !has('raft');
const trace = has('trace') ? (l: string) => console.log(l) : undefined;

function replay(run: () => unknown): void {
  try {
    console.log(JSON.stringify(run()));
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  }
}

if (arg('seed') !== undefined) {
  const seed = num('seed', 0);
  for (const n of nodes) {
    if (doRaft) replay(() => runSeed({ electionTicks: T, faultTicks: num('fault-ticks', 150), seed, nodes: n, trace }));
    else replay(() => runWatchdogSeed({ electionTicks: T, faultTicks: num('fault-ticks', 200), seed, peers: n, trace }));
  }
} else {
  const start = num('start', 1);
  const count = num('seeds', 1000);
  if (doRaft) {
    const s = runSweep({ electionTicks: T, faultTicks: num('fault-ticks', 150) }, start, count, nodes);
    for (const f of s.failures.slice(0, 20)) console.error(`FAIL ${f.message}`);
    const p50 = percentile(s.failover, 50);
    const p99 = percentile(s.failover, 99);
    const max = s.failover[s.failover.length - 1];
    const heal99 = percentile(s.heal, 99);
    console.log(
      `sim: seeds ${start}..${start + count - 1} nodes ${nodes.join(',')}: ${s.seeds} runs, ${s.failures.length} failed, ` +
        `${s.steps} steps in ${(s.elapsedMs / 1000).toFixed(1)} s (${Math.round(s.steps / (s.elapsedMs / 1000))} steps/s); ` +
        `leader crash -> new leader: median ${p50.toFixed(2)} ticks (${Math.round(p50 * TICK_MS)} ms), ` +
        `p99 ${p99.toFixed(2)} ticks (${Math.round(p99 * TICK_MS)} ms), max ${max.toFixed(2)}, p99/T ${(p99 / T).toFixed(2)}; ` +
        `-> new leader with lease: median ${percentile(s.failoverLease, 50).toFixed(2)} p99 ${percentile(s.failoverLease, 99).toFixed(2)} ticks; ` +
        `heal -> converged p99 ${heal99.toFixed(1)} ticks`,
    );
    if (s.failures.length) process.exitCode = 1;
  }
  if (doWatchdog) {
    const w = runWatchdogSweep({ electionTicks: T, faultTicks: num('fault-ticks', 200) }, start, count, nodes);
    for (const f of w.failures.slice(0, 20)) console.error(`FAIL ${f.message}`);
    console.log(
      `sim watchdog: seeds ${start}..${start + count - 1} peers ${nodes.join(',')}: ${w.runs} runs, ${w.failures.length} failed, ` +
        `${w.steps} steps in ${(w.elapsedMs / 1000).toFixed(1)} s; ${w.failovers} failovers declared, ${w.executions} execution steps, ` +
        `${w.resumed} records resumed by a later coordinator (steps cut off between begun and done: ${w.stepsRerun} run again, ${w.stepsTreatedDone} treated as done); ` +
        `checked after every step: one VIP-eligible peer and one VIP holder (its claim committed first) at most, each step not safe to repeat completed once at most, ` +
        `one runner per failover, every failover finished, consensus of views, same cluster state everywhere`,
    );
    if (w.failures.length) process.exitCode = 1;
  }
  void SimFailure;
}
