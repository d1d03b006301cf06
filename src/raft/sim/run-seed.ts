// One randomized run: a fault phase (partitions, crashes at any point of the persist/send
// cycle, restarts, lossy/duplicating/slow network, leadership transfers, client load),
// then healing with a liveness bound, then a clean leader crash whose recovery time is
// measured, then the old leader's restart and catch-up. Same seed, same run, bit for bit.
import type { NodeId } from '../core/types.js';
import { SimCluster, UNIT, type ClusterOptions, type CrashPoint } from './cluster.js';
import { RELIABLE, type NetworkConditions } from './network.js';

export interface SeedOptions {
  seed: number;
  nodes: number;
  electionTicks?: number;
  heartbeatTicks?: number;
  /** Length of the fault phase in nominal ticks. */
  faultTicks?: number;
  /** Liveness bound: after faults stop, a converged cluster within this many ticks. */
  healBoundTicks?: number;
  /** Expected fault events per tick during the fault phase. */
  faultRate?: number;
  /** Expected client proposals per tick during the fault phase. */
  proposeRate?: number;
  compactEvery?: number;
  /** Append batch size; by default 1, 3 or 64 depending on the seed. */
  maxEntriesPerMsg?: number;
  skew?: number;
  unsafeTestFaults?: ClusterOptions['unsafeTestFaults'];
  trace?: (line: string) => void;
}

export interface SeedResult {
  seed: number;
  nodes: number;
  steps: number;
  elections: number;
  committed: number;
  /** Nominal ticks from the leader crash to a new leader. */
  failoverTicks: number;
  /** Nominal ticks from the leader crash until a new leader holds a lease (may act as coordinator). */
  failoverLeaseTicks: number;
  /** Nominal ticks from the end of faults to convergence. */
  healTicks: number;
}

export class SimFailure extends Error {
  constructor(
    readonly seed: number,
    readonly nodes: number,
    readonly at: number,
    readonly steps: number,
    readonly reason: unknown,
  ) {
    super(
      `seed ${seed} (nodes ${nodes}) failed at t=${(at / UNIT).toFixed(3)} ticks, step ${steps}: ${reason instanceof Error ? reason.message : String(reason)}\n` +
        `  replay: npm run sim -- --seed ${seed} --nodes ${nodes} --trace`,
    );
    this.name = 'SimFailure';
  }
}

/** The network conditions the fault phase switches between (the watchdog simulator uses them too). */
export const NETWORK_CONDITIONS: readonly NetworkConditions[] = [
  RELIABLE,
  { drop: 0.05, duplicate: 0.02, minDelay: 5, maxDelay: 150 },
  { drop: 0.2, duplicate: 0.05, minDelay: 5, maxDelay: 400 },
  { drop: 0.02, duplicate: 0.1, minDelay: 10, maxDelay: 2500 },
];

export function runSeed(o: SeedOptions): SeedResult {
  const T = o.electionTicks ?? 10;
  const faultTicks = o.faultTicks ?? 150;
  const healBound = o.healBoundTicks ?? 40 * T;
  const faultRate = o.faultRate ?? 0.15;
  const proposeRate = o.proposeRate ?? 0.5;
  const c = new SimCluster({
    seed: o.seed,
    nodes: o.nodes,
    electionTicks: T,
    heartbeatTicks: o.heartbeatTicks ?? 1,
    skew: o.skew ?? 0.05,
    compactEvery: o.compactEvery ?? 20,
    maxEntriesPerMsg: o.maxEntriesPerMsg ?? [1, 3, 64][o.seed % 3],
    unsafeTestFaults: o.unsafeTestFaults,
    trace: o.trace,
  });
  const rng = c.rng.fork();
  const ids = c.ids;
  const fail = (msg: string): never => {
    throw new Error(msg);
  };
  try {
    // ---- fault phase
    const faultEnd = faultTicks * UNIT;
    let faulting = true;
    const chaos = (): void => {
      if (!faulting) return;
      const r = rng.next();
      if (r < 0.2) {
        const groups: NodeId[][] = [[], []];
        for (const id of ids) groups[rng.int(2)].push(id);
        c.net.partition(groups);
        trace(`partition ${groups.map((g) => g.join(',')).join(' | ')}`);
      } else if (r < 0.25) {
        // non-transitive trouble: cut a few single links, in one or both directions
        const k = 1 + rng.int(ids.length);
        for (let i = 0; i < k; i++) {
          const a = rng.pick(ids);
          const b = rng.pick(ids);
          if (a === b) continue;
          c.net.block(a, b);
          if (rng.chance(0.5)) c.net.block(b, a);
          trace(`cut ${a}>${b}`);
        }
      } else if (r < 0.3) {
        const l = c.leader();
        const victim = l && rng.chance(0.7) ? l.id : rng.pick(ids);
        c.net.partition([[victim]]);
        trace(`isolate ${victim}`);
      } else if (r < 0.45) {
        c.net.heal();
        trace('heal');
      } else if (r < 0.6) {
        const up = ids.filter((id) => c.isUp(id));
        if (up.length) {
          const l = c.leader();
          const victim = l && rng.chance(0.5) ? l.id : rng.pick(up);
          const point: CrashPoint = rng.pick(['now', 'beforePersist', 'afterPersist', 'afterSend'] as const);
          c.crash(victim, point);
          trace(`crash ${victim} at ${point}`);
        }
      } else if (r < 0.8) {
        const down = ids.filter((id) => !c.isUp(id));
        if (down.length) c.restart(rng.pick(down));
      } else if (r < 0.92) {
        c.setNetwork(rng.pick(NETWORK_CONDITIONS));
        trace(`network ${JSON.stringify(c.net.conditions)}`);
      } else {
        const l = c.leader();
        if (l) {
          const to = rng.pick(ids);
          trace(`transfer ${l.id} -> ${to}`);
          c.transferLeadership(l.id, to);
        }
      }
      c.at(Math.round((rng.next() * 2 * UNIT) / faultRate) + 1, chaos);
    };
    const client = (): void => {
      if (!faulting) return;
      if (rng.chance(0.8)) c.propose();
      else c.propose(rng.pick(ids));
      c.at(Math.round((rng.next() * 2 * UNIT) / proposeRate) + 1, client);
    };
    function trace(s: string): void {
      if (o.trace) o.trace(`[${(c.now / UNIT).toFixed(3)}] ${s}`);
    }
    c.at(1, chaos);
    c.at(1, client);
    c.runUntil(faultEnd);

    // ---- heal, then liveness
    faulting = false;
    c.net.heal();
    c.setNetwork(RELIABLE);
    c.cancelPendingCrashes();
    for (const id of ids) c.restart(id);
    trace('faults stop');
    const healStart = c.now;
    if (!c.runUntilTrue(() => c.converged(), healBound)) fail(`liveness: no converged leader within ${healBound} ticks after faults stopped`);
    const healTicks = (c.now - healStart) / UNIT;

    // ---- a clean leader crash, measured
    const old = c.leader() as NonNullable<ReturnType<SimCluster['leader']>>;
    const oldTerm = old.term;
    c.runUntil(c.now + 1 + rng.int(UNIT)); // random phase against the heartbeat ticks
    const victim = old.id;
    c.crash(victim);
    trace(`measure: crash leader ${victim}`);
    const t0 = c.now;
    if (!c.runUntilTrue(() => c.leaders().some((r) => r.term > oldTerm), healBound)) fail(`liveness: no new leader within ${healBound} ticks of the leader crash`);
    const failoverTicks = (c.now - t0) / UNIT;
    if (!c.runUntilTrue(() => c.leaders().some((r) => r.term > oldTerm && r.hasLease()), healBound)) fail(`liveness: new leader took no lease within ${healBound} ticks`);
    const failoverLeaseTicks = (c.now - t0) / UNIT;

    // ---- the old leader comes back and catches up
    c.runTicks(1 + rng.int(3 * T));
    c.restart(victim);
    if (!c.runUntilTrue(() => c.converged(), healBound)) fail(`liveness: restarted leader did not catch up within ${healBound} ticks`);

    const l = c.leader() as NonNullable<ReturnType<SimCluster['leader']>>;
    return {
      seed: o.seed,
      nodes: o.nodes,
      steps: c.steps,
      elections: c.checker.elections,
      committed: l.log.committed,
      failoverTicks,
      failoverLeaseTicks,
      healTicks,
    };
  } catch (e) {
    if (e instanceof SimFailure) throw e;
    throw new SimFailure(o.seed, o.nodes, c.now, c.steps, e);
  }
}

export interface SweepSummary {
  seeds: number;
  nodes: number[];
  start: number;
  failures: SimFailure[];
  steps: number;
  elapsedMs: number;
  failover: number[];
  failoverLease: number[];
  heal: number[];
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/**
 * The sweep driver both simulators share (the Raft one here, the watchdog's in
 * src/cluster/sim): seeds start..start+count-1, each for every cluster size in `sizes`;
 * `run` throws a SimFailure for a failing seed, which is collected (and ends the sweep with
 * `stopOnFailure`); anything else is a bug of the simulator and propagates.
 */
export function sweepSeeds(
  start: number,
  count: number,
  sizes: number[],
  run: (seed: number, size: number) => void,
  opts: { stopOnFailure?: boolean; now?: () => number } = {},
): { runs: number; failures: SimFailure[]; elapsedMs: number } {
  const clock = opts.now ?? Date.now;
  const t0 = clock();
  const out = { runs: 0, failures: [] as SimFailure[], elapsedMs: 0 };
  outer: for (let seed = start; seed < start + count; seed++) {
    for (const n of sizes) {
      out.runs++;
      try {
        run(seed, n);
      } catch (e) {
        if (!(e instanceof SimFailure)) throw e;
        out.failures.push(e);
        if (opts.stopOnFailure) break outer;
      }
    }
  }
  out.elapsedMs = clock() - t0;
  return out;
}

/** Seeds start..start+count-1, each for every node count in `nodes`. */
export function runSweep(
  base: Omit<SeedOptions, 'seed' | 'nodes'>,
  start: number,
  count: number,
  nodes: number[],
  opts: { stopOnFailure?: boolean; now?: () => number } = {},
): SweepSummary {
  const s: SweepSummary = { seeds: 0, nodes, start, failures: [], steps: 0, elapsedMs: 0, failover: [], failoverLease: [], heal: [] };
  const done = sweepSeeds(
    start,
    count,
    nodes,
    (seed, n) => {
      const r = runSeed({ ...base, seed, nodes: n });
      s.steps += r.steps;
      s.failover.push(r.failoverTicks);
      s.failoverLease.push(r.failoverLeaseTicks);
      s.heal.push(r.healTicks);
    },
    opts,
  );
  s.seeds = done.runs;
  s.failures = done.failures;
  s.elapsedMs = done.elapsedMs;
  s.failover.sort((a, b) => a - b);
  s.failoverLease.sort((a, b) => a - b);
  s.heal.sort((a, b) => a - b);
  return s;
}
