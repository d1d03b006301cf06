// Drives one pure Raft core (src/raft/core) with real time, real disks and the watchdog
// transport: the tick / ready / persist / send / apply / advance loop of src/raft/index.ts,
// persist before send. Generic over the command type T and the snapshot type S; it knows
// nothing of backends or failovers (the state machine it is given does).
//
// Time: the ticks due are counted from the monotonic clock (one per tick_ms since start), so a
// process that was paused (SIGSTOP, a stalled host) counts the ticks it missed as soon as it
// runs again. The lease rule of the core depends on that: a leader whose clock silently lost
// ticks would believe its lease longer than it is. The runtime does not wake on every tick:
// it sleeps until the core's next deadline (RaftNode.ticksUntilDue: a leader's next heartbeat
// round or lease edge, a follower's election timeout), and before any input (a message, a
// proposal, a transfer) and any read of the status it first runs the ticks due so far. The
// core sees the same ticks and inputs in the same order as with a timer on every tick; an
// idle follower wakes about once a second instead of ten times.
//
// Leadership: `propose` works on the leader only and resolves once the entry has committed
// and been applied here. `transfer` moves leadership (the coordinator decides when a
// higher-priority peer should have it, decide.ts), and `handOver` gives it to the best
// connected peer before a planned stop, so a restart costs no election.
// Membership is static: the peers of the config.
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { EMPTY_HARD_STATE, RaftNode, type Entry, type Message, type NodeId, type RaftStorage, type Role, type Snapshot, type StoredState } from '../raft/index.js';
import type { Logger } from '../log.js';
import { observeRaft, type RaftObservation } from './raft-status.js';
import type { PeerTransport } from './transport.js';
import { WIRE_VERSION, type Envelope } from './wire.js';

/** The replicated state machine the runtime applies committed commands to. */
export interface StateMachine<T, S> {
  apply(cmd: T, at: { index: number; term: number }): void;
  /** The whole state, for a snapshot (plain JSON). */
  snapshot(): S;
  restore(state: S, at: { index: number; term: number }): void;
}

export interface RuntimePeer {
  name: string;
  priority: number;
}

export interface RaftRuntimeOptions<T, S> {
  self: string;
  peers: RuntimePeer[];
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  /**
   * Opens the durable storage; called by start(), not before. An online restart's successor
   * is built while its predecessor still runs the same Raft member on the same data_dir: what
   * it read then would miss the entries the predecessor persists (and acknowledges) until it
   * releases the member, and a node that forgets acknowledged entries breaks Raft.
   */
  openStorage: () => RaftStorage<T, S> & { close?(): void };
  transport: PeerTransport;
  machine: StateMachine<T, S>;
  logger: Logger;
  /** May leadership go to this peer (its proxy is up, it is not shutting down)? Default: yes. */
  isHealthy?: (peer: string) => boolean;
  /** Take a snapshot and drop the log every this many applied entries (default 1000). */
  compactEvery?: number;
  random?: () => number;
  /** The data of a new leader's first entry of its term (default: the no-op); see RaftConfig.firstEntry. */
  firstEntry?: (term: number) => T | null;
}

/** What the coordinator, the VIP rules and the admin views read: the core's status as the pure rules observe it, plus time. */
export interface RaftRuntimeStatus extends RaftObservation {
  tickMs: number;
  electionTicks: number;
  /**
   * Ms since this peer last knew itself joined to a majority: a follower, since it last heard
   * from a leader; a leader, since its lease was last valid. null: not since start.
   */
  sinceContactMs: number | null;
}

export interface RaftRuntimeEvents {
  /** Role, leader, term, lease, term-start commitment or transfer changed. */
  status: [status: RaftRuntimeStatus];
  /** Committed entries up to `index` are applied here. */
  applied: [index: number];
}

export class ProposalError extends Error {
  constructor(
    message: string,
    readonly leader: NodeId | null,
  ) {
    super(message);
    this.name = 'ProposalError';
  }
}

interface Pending {
  term: number;
  resolve: (at: { index: number; term: number }) => void;
  reject: (err: Error) => void;
}

export class RaftRuntime<T, S> extends EventEmitter<RaftRuntimeEvents> {
  /** Until start(): an empty member that sends nothing (no timer runs it). */
  node: RaftNode<T, S>;
  private storage: (RaftStorage<T, S> & { close?(): void }) | undefined;
  private readonly o: RaftRuntimeOptions<T, S>;
  private readonly log: Logger;
  private readonly priority: Map<string, number>;
  private readonly pending = new Map<number, Pending>();
  private timer: NodeJS.Timeout | undefined;
  /** The tick the timer is set for. */
  private wakeTick = 0;
  private t0 = 0;
  private ticks = 0;
  private draining = false;
  private lastLeaderTick: number | null = null;
  private lastLeaseTick: number | null = null;
  /** When this node last won an election: the votes were contact with a majority at that tick. */
  private wonTick: number | null = null;
  private sinceCompact = 0;
  private lastStatusKey = '';
  private stopped = false;
  private readonly onMessage = (env: Envelope) => {
    if (env.kind !== 'raft' || this.stopped) return;
    const m = env.body as Message<T, S>;
    this.runDueTicks(); // the message is stepped at the present tick, as if ticking every beat
    if (m.type === 'preVote' || m.type === 'vote' || m.type === 'preVoteResp' || m.type === 'voteResp') {
      // Elections are rare and their timing is what a failover waits for: say what arrived and when.
      this.log.debug({ type: m.type, from: m.from, term: m.term, ...('reject' in m ? { reject: m.reject } : {}), ourTerm: this.node.term, role: this.node.role, tick: this.ticks }, 'raft election message');
    }
    this.node.step(m);
    if ((m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') && this.node.leader === m.from) this.lastLeaderTick = this.ticks;
    this.drain();
  };

  constructor(opts: RaftRuntimeOptions<T, S>) {
    super();
    this.o = opts;
    this.log = opts.logger;
    this.priority = new Map(opts.peers.map((p) => [p.name, p.priority]));
    this.node = this.member({ hardState: { ...EMPTY_HARD_STATE }, snapshot: null, entries: [] });
  }

  private member(stored: StoredState<T, S>): RaftNode<T, S> {
    const o = this.o;
    return new RaftNode<T, S>({ id: o.self, peers: o.peers.map((p) => p.name), electionTicks: o.electionTicks, heartbeatTicks: o.heartbeatTicks, random: o.random ?? Math.random, firstEntry: o.firstEntry }, stored);
  }

  start(): void {
    const storage = (this.storage = this.o.openStorage());
    const stored = storage.load();
    this.node = this.member(stored);
    if (stored.snapshot) this.o.machine.restore(stored.snapshot.data, stored.snapshot.meta);
    this.log.info(
      { term: stored.hardState.term, commit: stored.hardState.commit, snapshot: stored.snapshot?.meta.index ?? 0, entries: stored.entries.length, peers: this.o.peers },
      'raft state loaded',
    );
    this.o.transport.on('message', this.onMessage);
    this.t0 = performance.now();
    this.drain(); // committed entries after the stored snapshot are applied again at start; sets the timer
  }

  /** Stops ticking and listening; pending proposals are rejected. Does not close the transport. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.o.transport.off('message', this.onMessage);
    this.rejectAll('the peer is stopping');
    this.storage?.close?.();
  }

  status(): RaftRuntimeStatus {
    this.runDueTicks(); // observe the present: a sleeping runtime's core is behind the clock
    const obs = observeRaft(this.node as RaftNode<unknown, unknown>);
    let contact: number | null;
    // A leader without its lease yet (just elected) was in touch with a majority when it won:
    // counting only the lease would call a peer that takes leadership over "not joined since start".
    if (obs.role === 'leader') contact = obs.hasLease ? 0 : latest(this.lastLeaseTick, this.wonTick);
    else contact = this.lastLeaderTick;
    return {
      ...obs,
      tickMs: this.o.tickMs,
      electionTicks: this.o.electionTicks,
      sinceContactMs: obs.role === 'leader' && obs.hasLease ? 0 : contact === null ? null : (this.ticks - contact) * this.o.tickMs,
    };
  }

  /** Appends `cmd` to the log; resolves when it has committed and been applied here. */
  propose(cmd: T): Promise<{ index: number; term: number }> {
    if (this.stopped) return Promise.reject(new ProposalError('the peer is stopping', null));
    this.runDueTicks();
    const at = this.node.propose(cmd);
    if (!at) {
      const why = this.node.role === 'leader' ? 'leadership is being transferred' : `not the leader (leader: ${this.node.leader ?? 'none'})`;
      return Promise.reject(new ProposalError(`cannot propose: ${why}`, this.node.leader));
    }
    const p = new Promise<{ index: number; term: number }>((resolve, reject) => this.pending.set(at.index, { term: at.term, resolve, reject }));
    this.drain();
    return p;
  }

  /** Starts handing leadership to `to`; false when this peer is not the leader or `to` is not a peer. */
  transfer(to: string): boolean {
    this.runDueTicks();
    const ok = this.node.transferLeadership(to);
    if (ok) this.log.info({ to, term: this.node.term }, 'leadership transfer started');
    this.drain();
    return ok;
  }

  /**
   * Before a planned stop: hand leadership to the best other peer and wait (up to
   * `timeoutMs`) until it has taken over. Resolves true when this peer is no longer leader.
   */
  async handOver(timeoutMs: number): Promise<boolean> {
    if (this.node.role !== 'leader') return true;
    const to = this.bestSuccessor();
    if (!to) {
      this.log.warn('no connected peer to hand leadership to');
      return false;
    }
    this.transfer(to);
    const end = Date.now() + timeoutMs;
    while (this.node.role === 'leader' && Date.now() < end) await new Promise((r) => setTimeout(r, Math.min(20, this.o.tickMs)));
    const done = this.node.role !== 'leader';
    this.log.info({ to, done, leader: this.node.leader }, done ? 'leadership handed over' : 'leadership hand-over timed out');
    return done;
  }

  // ---- the loop ------------------------------------------------------------------------

  private onTimer(): void {
    this.timer = undefined;
    const late = this.clockTicks() - this.wakeTick;
    if (late > 2) this.log.warn({ missedTicks: late }, 'raft ticks late (process paused or overloaded): catching up');
    this.runDueTicks();
    this.setTimer();
  }

  /** Ticks since start by the monotonic clock. */
  private clockTicks(): number {
    return Math.floor((performance.now() - this.t0) / this.o.tickMs);
  }

  /** Tells the core the time: one tick() per tick_ms passed since it last heard, then drains what they produced. */
  private runDueTicks(): void {
    if (this.draining || this.stopped || !this.storage) return; // (status() read inside drain: the ticks were just run; before start() no time passes)
    const due = this.clockTicks();
    if (due <= this.ticks) return;
    while (this.ticks < due) {
      this.node.tick();
      this.ticks++;
      if (this.node.hasLease()) this.lastLeaseTick = this.ticks;
      if (this.node.role === 'leader') this.lastLeaderTick = this.ticks; // a leader that steps down last heard from one now
    }
    this.drain();
  }

  /** Sleeps until the core's next deadline; an earlier timer already set stays (it wakes, finds nothing due, and sleeps again). */
  private setTimer(): void {
    if (this.stopped) return;
    const at = this.ticks + this.node.ticksUntilDue();
    if (this.timer !== undefined && this.wakeTick <= at) return;
    clearTimeout(this.timer);
    this.wakeTick = at;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, Math.ceil(this.t0 + at * this.o.tickMs - performance.now())));
  }

  private drain(): void {
    if (this.draining || !this.storage) return;
    this.draining = true;
    try {
      this.drainReady();
    } finally {
      this.draining = false;
    }
    if (this.sinceCompact >= (this.o.compactEvery ?? 1000)) this.compact();
    this.setTimer();
    this.maybeEmitStatus();
  }

  private drainReady(): void {
    const { node, o } = this;
    while (node.hasReady()) {
      const rd = node.ready();
      this.storage!.save(rd); // durable before any message of this Ready leaves
      for (const m of rd.messages) o.transport.send(m.to, { v: WIRE_VERSION, kind: 'raft', from: o.self, body: m as Message<unknown, unknown> });
      if (rd.snapshot) this.restore(rd.snapshot);
      for (const e of rd.committedEntries) this.apply(e);
      node.advance(rd);
      if (rd.softStateChanged) this.onSoftState(rd.softState.role, rd.softState.leader);
      if (rd.committedEntries.length) this.emit('applied', node.log.applied);
    }
  }

  private apply(e: Entry<T>): void {
    if (e.data !== null) {
      try {
        this.o.machine.apply(e.data, { index: e.index, term: e.term });
      } catch (err) {
        // A state machine must not throw; if it does, the entry is skipped the same way on
        // every peer (the same code, the same input), so the replicas stay equal. Say so loudly.
        this.log.error({ err, index: e.index, term: e.term }, 'state machine refused a committed entry');
      }
    }
    this.sinceCompact++;
    const p = this.pending.get(e.index);
    if (p) {
      this.pending.delete(e.index);
      if (p.term === e.term) p.resolve({ index: e.index, term: e.term });
      else p.reject(new ProposalError(`entry ${e.index} of term ${p.term} was replaced by a new leader's (term ${e.term})`, this.node.leader));
    }
  }

  private restore(snap: Snapshot<S>): void {
    this.o.machine.restore(snap.data, snap.meta);
    for (const [i, p] of this.pending) {
      if (i <= snap.meta.index) {
        this.pending.delete(i);
        p.reject(new ProposalError(`entry ${i} was overtaken by a snapshot at ${snap.meta.index}: outcome unknown`, this.node.leader));
      }
    }
  }

  private compact(): void {
    const at = this.node.log.applied;
    this.storage!.compact(this.node.compact(at, this.o.machine.snapshot()));
    this.sinceCompact = 0;
    this.log.debug({ index: at }, 'raft log compacted into a snapshot');
  }

  private onSoftState(role: Role, leader: NodeId | null): void {
    this.log.info({ role, leader, term: this.node.term }, 'raft role changed');
    if (role === 'leader') this.lastLeaderTick = this.wonTick = this.ticks;
    if (role !== 'leader') this.rejectAll(`leadership lost (now ${role}, leader ${leader ?? 'none'}, term ${this.node.term}); the entry may still commit under the new leader`);
  }

  private rejectAll(why: string): void {
    for (const p of this.pending.values()) p.reject(new ProposalError(why, this.node.leader));
    this.pending.clear();
  }

  private maybeEmitStatus(): void {
    // Runs after every tick and message: read the few fields that matter straight from the
    // node, and build the whole status only when one changed.
    const n = this.node;
    const key = `${n.role}|${n.leader}|${n.term}|${n.hasLease()}|${n.log.term(n.log.committed) === n.term}|${n.transferTarget()}`;
    if (key === this.lastStatusKey) return;
    this.lastStatusKey = key;
    this.emit('status', this.status());
  }

  // ---- priority --------------------------------------------------------------------------

  /** Where a planned stop hands leadership: the highest priority among connected, healthy peers, the most caught up first among equals. */
  private bestSuccessor(): string | null {
    const st = this.node.status();
    const healthy = this.o.isHealthy ?? (() => true);
    const candidates = this.o.transport
      .connected()
      .filter((p) => this.priority.has(p) && healthy(p))
      .sort((a, b) => (this.priority.get(b) ?? 0) - (this.priority.get(a) ?? 0) || (st.progress?.[b]?.match ?? 0) - (st.progress?.[a]?.match ?? 0));
    return candidates[0] ?? null;
  }
}

function latest(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  return b === null ? a : Math.max(a, b);
}
