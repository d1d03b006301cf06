// One randomized watchdog run: a fault phase (partitions, one-way cuts, crashes and
// restarts, a lossy/duplicating/slow network, leadership transfers, trusted servers lost,
// and backends going down and up in every peer's view or in one peer's only), then healing
// with a liveness bound: one coordinator, every log applied, every failover finished.
// Checks run after every step (invariants.ts). Same seed, same run, bit for bit.
import type { NodeId } from '../../raft/core/types.js';
import { RELIABLE } from '../../raft/sim/network.js';
import { NETWORK_CONDITIONS, SimFailure, sweepSeeds } from '../../raft/sim/run-seed.js';
import { UNIT, WatchdogSim, type WatchdogFaults } from './cluster.js';

export interface WatchdogSeedOptions {
  seed: number;
  peers: number;
  backends?: number;
  electionTicks?: number;
  faultTicks?: number;
  healBoundTicks?: number;
  faultRate?: number;
  /** Expected backend health events per tick during the fault phase. */
  backendRate?: number;
  /** A failover's execution: steps of stepTicks ticks each (defaults 2 and 2). */
  execSteps?: number;
  stepTicks?: number;
  faults?: WatchdogFaults;
  trace?: (line: string) => void;
}

export interface WatchdogSeedResult {
  seed: number;
  peers: number;
  steps: number;
  failovers: number;
  executions: number;
  finished: number;
  resumed: number;
  /** Steps a resumed run found begun and not done: run again (safe to repeat, or effect missing) / treated as done (effect there). */
  stepsRerun: number;
  stepsTreatedDone: number;
  healTicks: number;
}


export function runWatchdogSeed(o: WatchdogSeedOptions): WatchdogSeedResult {
  const T = o.electionTicks ?? 10;
  const faultTicks = o.faultTicks ?? 200;
  const healBound = o.healBoundTicks ?? 60 * T;
  const faultRate = o.faultRate ?? 0.12;
  const backendRate = o.backendRate ?? 0.08;
  const backends = o.backends ?? 3;
  const sim = new WatchdogSim({ seed: o.seed, peers: o.peers, backends, electionTicks: T,
    // Executions of 1 to 4 steps of 1 to 4 ticks, by seed: long ones get cut by faults and resumed.
    steps: o.execSteps ?? 1 + (o.seed % 4),
    stepTicks: o.stepTicks ?? 1 + ((o.seed >> 2) % 4),
    faults: o.faults, trace: o.trace });
  const rng = sim.rng.fork();
  const ids = sim.ids;
  try {
    let faulting = true;
    const chaos = (): void => {
      if (!faulting) return;
      const r = rng.next();
      if (r < 0.15) {
        const groups: NodeId[][] = [[], []];
        for (const id of ids) groups[rng.int(2)].push(id);
        sim.net.partition(groups);
        sim.trace(`partition ${groups.map((g) => g.join(',')).join(' | ')}`);
      } else if (r < 0.2) {
        const a = rng.pick(ids);
        const b = rng.pick(ids);
        if (a !== b) {
          sim.net.block(a, b);
          sim.trace(`cut ${a}>${b}`);
        }
      } else if (r < 0.3) {
        const l = sim.leader();
        const victim = l && rng.chance(0.7) ? l.id : rng.pick(ids);
        sim.net.partition([[victim]]);
        sim.trace(`isolate ${victim}`);
      } else if (r < 0.45) {
        sim.net.heal();
        sim.trace('heal');
      } else if (r < 0.57) {
        const up = ids.filter((id) => sim.isUp(id));
        if (up.length) {
          const l = sim.leader();
          sim.crash(l && rng.chance(0.5) ? l.id : rng.pick(up));
        }
      } else if (r < 0.75) {
        const down = ids.filter((id) => !sim.isUp(id));
        if (down.length) sim.restart(rng.pick(down));
      } else if (r < 0.85) {
        sim.setNetwork(rng.pick(NETWORK_CONDITIONS));
        sim.trace(`network ${JSON.stringify(sim.net.conditions)}`);
      } else if (r < 0.93) {
        const to = rng.pick(ids);
        sim.trace(`transfer to ${to}`);
        sim.transferLeadership(to);
      } else {
        const id = rng.pick(ids);
        const ok = rng.chance(0.6);
        sim.setTrusted(id, ok);
        sim.trace(`${id} trusted servers ${ok ? 'answer' : 'silent'}`);
      }
      sim.at(Math.round((rng.next() * 2 * UNIT) / faultRate) + 1, chaos);
    };
    const health = (): void => {
      if (!faulting) return;
      const b = rng.int(backends);
      const down = rng.chance(0.55);
      if (rng.chance(0.6)) {
        // the server itself: every peer's checks notice, each after its own delay
        for (const id of ids) sim.at(rng.int(2 * UNIT), () => sim.setHealth(id, b, down));
      } else {
        sim.setHealth(rng.pick(ids), b, down); // a path from one peer only
      }
      sim.at(Math.round((rng.next() * 2 * UNIT) / backendRate) + 1, health);
    };
    sim.at(1, chaos);
    sim.at(1, health);
    sim.runUntil(faultTicks * UNIT);

    faulting = false;
    sim.net.heal();
    sim.setNetwork(RELIABLE);
    for (const id of ids) {
      sim.restart(id);
      sim.setTrusted(id, true);
    }
    sim.trace('faults stop');
    const healStart = sim.now;
    if (!sim.runUntilTrue(() => sim.settled(), healBound)) {
      const l = sim.leader();
      const open = l ? sim.stateOf(l.id).failovers.filter((f) => f.finished === null).map((f) => f.seq) : [];
      if (open.length) sim.checker.checkAllFinished(open);
      throw new Error(`liveness: no settled coordinator within ${healBound} ticks after faults stopped (leader ${l?.id ?? 'none'})`);
    }
    const healTicks = (sim.now - healStart) / UNIT;
    const l = sim.leader() as NonNullable<ReturnType<WatchdogSim['leader']>>;
    const s = sim.stateOf(l.id);
    sim.checker.checkAllFinished(s.failovers.filter((f) => f.finished === null).map((f) => f.seq));
    return {
      seed: o.seed,
      peers: o.peers,
      steps: sim.steps,
      failovers: sim.checker.failoversDeclared,
      executions: sim.checker.executions,
      finished: s.failovers.length,
      resumed: s.failovers.filter((f) => f.resumes > 0).length,
      stepsRerun: sim.stepStats.rerun,
      stepsTreatedDone: sim.stepStats.treatedDone,
      healTicks,
    };
  } catch (e) {
    if (e instanceof SimFailure) throw e;
    const f = new SimFailure(o.seed, o.peers, sim.now, sim.steps, e);
    f.message = f.message.replace('npm run sim -- --seed', 'npm run sim -- --watchdog --seed');
    throw f;
  }
}

export interface WatchdogSweep {
  runs: number;
  failures: SimFailure[];
  steps: number;
  failovers: number;
  executions: number;
  resumed: number;
  stepsRerun: number;
  stepsTreatedDone: number;
  elapsedMs: number;
}

export function runWatchdogSweep(
  base: Omit<WatchdogSeedOptions, 'seed' | 'peers'>,
  start: number,
  count: number,
  peers: number[],
  opts: { stopOnFailure?: boolean; now?: () => number } = {},
): WatchdogSweep {
  const s: WatchdogSweep = { runs: 0, failures: [], steps: 0, failovers: 0, executions: 0, resumed: 0, stepsRerun: 0, stepsTreatedDone: 0, elapsedMs: 0 };
  const done = sweepSeeds(
    start,
    count,
    peers,
    (seed, n) => {
      const r = runWatchdogSeed({ ...base, seed, peers: n });
      s.steps += r.steps;
      s.failovers += r.failovers;
      s.executions += r.executions;
      s.resumed += r.resumed;
      s.stepsRerun += r.stepsRerun;
      s.stepsTreatedDone += r.stepsTreatedDone;
    },
    opts,
  );
  return { ...s, ...done };
}
