// Raft simulator sweep.
//   npm run sim -- --seeds N --start S --nodes 3|5|3,5   sweep, one summary line
//   npm run sim -- --seed S --nodes N [--trace]          replay one seed (bit for bit)
// Options: --fault-ticks N (fault phase length), --election-ticks T, --quiet
import { runSeed, runSweep, percentile, SimFailure } from '../src/raft/sim/run-seed.js';

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
const base = { electionTicks: T, faultTicks: num('fault-ticks', 150) };
const TICK_MS = 100;

if (arg('seed') !== undefined) {
  const seed = num('seed', 0);
  for (const n of nodes) {
    try {
      const r = runSeed({ ...base, seed, nodes: n, trace: has('trace') ? (l) => console.log(l) : undefined });
      console.log(JSON.stringify(r));
    } catch (e) {
      console.error(e instanceof Error ? e.message : e);
      process.exitCode = 1;
    }
  }
} else {
  const start = num('start', 1);
  const count = num('seeds', 1000);
  const s = runSweep(base, start, count, nodes);
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
  void SimFailure;
}
