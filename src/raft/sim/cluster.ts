// A simulated cluster: RaftNodes on a virtual clock, a faulty network, crash-restart
// against in-memory "disks", and the invariant checker run after every step.
// Time is in units; one tick at the nominal rate is 1000 units, and each node ticks at
// its own (skewed) period. Everything random comes from one seeded Prng.
import { RaftNode, type RaftConfig } from '../core/raft.js';
import { BrokenRaftNode, type BrokenRules } from './broken-node.js';
import type { Message, NodeId, Ready } from '../core/types.js';
import { MemoryStorage } from '../storage/memory-storage.js';
import { Scheduler } from './event-queue.js';
import { applyEntry, InvariantChecker, SafetyViolation, type SmState } from './invariants.js';
import { Network, RELIABLE, type NetworkConditions } from './network.js';
import { Prng } from './prng.js';

export const UNIT = 1000;

export type SimMessage = Message<number, SmState>;
export type SimRaft = RaftNode<number, SmState>;

export type CrashPoint = 'now' | 'beforePersist' | 'afterPersist' | 'afterSend';

export interface ClusterOptions {
  seed: number;
  nodes: number;
  electionTicks?: number;
  heartbeatTicks?: number;
  /** Each node's tick period is UNIT * (1 + u), u uniform in [-skew, skew]. */
  skew?: number;
  network?: NetworkConditions;
  /** Compact a node's log once this many applied entries are past its snapshot (0: never). */
  compactEvery?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  maxEntriesPerMsg?: number;
  /** Rules broken on purpose (checker tests): the nodes are BrokenRaftNode test doubles. */
  unsafeTestFaults?: BrokenRules;
  trace?: (line: string) => void;
}

interface SimNode {
  id: NodeId;
  raft: SimRaft | null;
  storage: MemoryStorage<number, SmState>;
  sm: SmState;
  period: number;
  life: number;
  crashAt: CrashPoint | null;
  /** The tick (of the node's clock) before which ticking can change nothing: ticksUntilDue() as of its last input. */
  dueAt: number;
}

type SimEvent = { k: 'tick'; id: NodeId; life: number } | { k: 'msg'; m: SimMessage } | { k: 'call'; fn: () => void };

export class SimCluster {
  readonly ids: NodeId[];
  readonly rng: Prng;
  readonly net: Network;
  readonly checker = new InvariantChecker();
  readonly opts: Required<Omit<ClusterOptions, 'unsafeTestFaults' | 'trace'>> & Pick<ClusterOptions, 'unsafeTestFaults' | 'trace'>;
  private nodes = new Map<NodeId, SimNode>();
  private readonly clock = new Scheduler<SimEvent>((ev) => this.handle(ev));
  /** Simulated time, in units. */
  get now(): number {
    return this.clock.now;
  }
  steps = 0;
  private nextValue = 1;
  /** Test control: messages for which this returns true are lost. */
  dropIf: ((m: SimMessage) => boolean) | null = null;
  /** Test observation: called with every delivered message. */
  tap: ((m: SimMessage) => void) | null = null;
  /** Called whenever a node becomes leader (after the checks). */
  onLeader: ((id: NodeId, term: number) => void) | null = null;

  constructor(options: ClusterOptions) {
    this.opts = {
      electionTicks: 10,
      heartbeatTicks: 1,
      skew: 0.05,
      network: RELIABLE,
      compactEvery: 0,
      preVote: true,
      checkQuorum: true,
      maxEntriesPerMsg: 64,
      ...options,
    };
    this.rng = new Prng(options.seed);
    this.net = new Network(this.rng.fork(), this.opts.network);
    this.ids = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`);
    for (const id of this.ids) {
      const period = Math.round(UNIT * (1 + (this.rng.next() * 2 - 1) * this.opts.skew));
      const node: SimNode = { id, raft: null, storage: new MemoryStorage(), sm: { index: 0, hash: 0 }, period, life: 0, crashAt: null, dueAt: 0 };
      this.nodes.set(id, node);
      this.start(node);
    }
  }

  // ---- observation -------------------------------------------------------------------

  raft(id: NodeId): SimRaft | null {
    return this.node(id).raft;
  }

  isUp(id: NodeId): boolean {
    return this.node(id).raft !== null;
  }

  stateOf(id: NodeId): SmState {
    return this.node(id).sm;
  }

  storageOf(id: NodeId): MemoryStorage<number, SmState> {
    return this.node(id).storage;
  }

  /** Live leaders (more than one is possible transiently: a deposed leader that has not heard yet). */
  leaders(): SimRaft[] {
    const out: SimRaft[] = [];
    for (const n of this.nodes.values()) if (n.raft && n.raft.role === 'leader') out.push(n.raft);
    return out;
  }

  /** The live leader of the highest term, if any. */
  leader(): SimRaft | null {
    let best: SimRaft | null = null;
    for (const r of this.leaders()) if (!best || r.term > best.term) best = r;
    return best;
  }

  /** All nodes up, one leader whose log every node holds, committed and applied. */
  converged(): boolean {
    const l = this.leader();
    if (!l) return false;
    const last = l.log.lastIndex();
    if (l.log.term(l.log.committed) !== l.term) return false;
    for (const n of this.nodes.values()) {
      const r = n.raft;
      if (!r || r.term !== l.term || r.leader !== l.id) return false;
      if (r.log.lastIndex() !== last || r.log.committed !== last || r.log.applied !== last || n.sm.index !== last) return false;
    }
    return true;
  }

  // ---- control -----------------------------------------------------------------------

  /** Process events up to and including time t. */
  runUntil(t: number): void {
    this.clock.runUntil(t);
  }

  /** Run for n nominal ticks. */
  runTicks(n: number): void {
    this.runUntil(this.now + n * UNIT);
  }

  /** Run until pred() holds (checked after every step) or maxTicks pass; returns whether it held. */
  runUntilTrue(pred: () => boolean, maxTicks: number): boolean {
    return this.clock.runUntilTrueBy(pred, this.now + maxTicks * UNIT);
  }

  /** Run fn at time now + delay (units). */
  at(delay: number, fn: () => void): void {
    this.clock.push(this.now + delay, { k: 'call', fn });
  }

  /** Propose a fresh value at node id (or at the current leader). Returns the value, or null if refused. */
  propose(id?: NodeId): number | null {
    const r = id ? this.raft(id) : this.leader();
    if (!r) return null;
    const v = this.nextValue;
    if (!r.propose(v)) return null;
    this.nextValue++;
    this.afterInput(this.node(r.id));
    return v;
  }

  campaign(id: NodeId): void {
    const n = this.node(id);
    if (!n.raft) return;
    n.raft.campaign();
    this.afterInput(n);
  }

  transferLeadership(from: NodeId, to: NodeId): boolean {
    const n = this.node(from);
    if (!n.raft) return false;
    const ok = n.raft.transferLeadership(to);
    this.afterInput(n);
    return ok;
  }

  /** Crash a node now, or at a point of its next Ready handling (losing what was not yet persisted). */
  crash(id: NodeId, point: CrashPoint = 'now'): void {
    const n = this.node(id);
    if (!n.raft) return;
    if (point === 'now') this.kill(n);
    else n.crashAt = point;
  }

  /** Forget crashes scheduled for a node's next Ready. */
  cancelPendingCrashes(): void {
    for (const n of this.nodes.values()) n.crashAt = null;
  }

  restart(id: NodeId): void {
    const n = this.node(id);
    if (n.raft) return;
    this.start(n);
  }

  // ---- internals ---------------------------------------------------------------------

  private node(id: NodeId): SimNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`sim: no node ${id}`);
    return n;
  }

  private start(n: SimNode): void {
    const stored = n.storage.load();
    const o = this.opts;
    const config: RaftConfig = {
      id: n.id,
      peers: this.ids,
      electionTicks: o.electionTicks,
      heartbeatTicks: o.heartbeatTicks,
      random: ((r: Prng) => () => r.next())(this.rng.fork()),
      preVote: o.preVote,
      checkQuorum: o.checkQuorum,
      maxEntriesPerMsg: o.maxEntriesPerMsg,
    };
    n.raft = o.unsafeTestFaults ? new BrokenRaftNode<number, SmState>(config, stored, o.unsafeTestFaults) : new RaftNode<number, SmState>(config, stored);
    n.sm = stored.snapshot ? { ...stored.snapshot.data } : { index: 0, hash: 0 };
    n.crashAt = null;
    n.life++;
    this.checker.onStart(n.id, n.raft, n.sm);
    this.trace(`start ${n.id} term=${n.raft.term} commit=${n.raft.log.committed} last=${n.raft.log.lastIndex()}`);
    this.clock.push(this.now + 1 + this.rng.int(n.period), { k: 'tick', id: n.id, life: n.life });
    this.processReady(n);
    this.setDue(n);
  }

  private kill(n: SimNode): void {
    this.trace(`crash ${n.id}`);
    n.raft = null;
    n.crashAt = null;
    n.life++;
  }

  private handle(ev: SimEvent): void {
    this.steps++;
    switch (ev.k) {
      case 'tick': {
        const n = this.node(ev.id);
        if (!n.raft || n.life !== ev.life) return;
        const r = n.raft;
        // RaftNode.ticksUntilDue's promise, which lets the watchdog runtime sleep between
        // deadlines: a tick before the announced one has no effect at all.
        const quiet = r.tickNow() + 1 < n.dueAt;
        const before = quiet ? `${r.role}|${r.leader}|${r.hasLease()}|${r.term}` : '';
        r.tick();
        if (quiet && (r.hasReady() || `${r.role}|${r.leader}|${r.hasLease()}|${r.term}` !== before)) {
          throw new SafetyViolation('tick deadline', `${n.id} did something at tick ${r.tickNow()}, before its announced deadline ${n.dueAt}`);
        }
        this.clock.push(this.now + n.period, ev);
        this.afterInput(n);
        break;
      }
      case 'msg': {
        const n = this.node(ev.m.to);
        if (!n.raft) return;
        if (!this.net.connected(ev.m.from, ev.m.to)) return; // the partition began while it was in flight
        if (this.opts.trace) this.trace(`deliver ${fmt(ev.m)}`);
        if (this.tap) this.tap(ev.m);
        n.raft.step(ev.m);
        this.afterInput(n);
        break;
      }
      case 'call':
        ev.fn();
        for (const n of this.nodes.values()) this.setDue(n);
        this.checker.checkLeases(this.rafts());
        break;
    }
  }

  private *rafts(): Iterable<SimRaft | null> {
    for (const n of this.nodes.values()) yield n.raft;
  }

  private setDue(n: SimNode): void {
    if (n.raft) n.dueAt = n.raft.tickNow() + n.raft.ticksUntilDue();
  }

  private afterInput(n: SimNode): void {
    this.processReady(n);
    this.setDue(n);
    this.checker.checkLeases(this.rafts());
  }

  private processReady(n: SimNode): void {
    while (n.raft && n.raft.hasReady()) {
      const r = n.raft;
      const rd: Ready<number, SmState> = r.ready();
      this.checker.onReady(n.id, r, rd);
      if (rd.softStateChanged) {
        this.trace(`${n.id} ${rd.softState.role} term=${r.term} leader=${rd.softState.leader ?? '-'}`);
        if (rd.softState.role === 'leader' && this.onLeader) this.onLeader(n.id, r.term);
      }
      if (n.crashAt === 'beforePersist') return this.kill(n);
      n.storage.save(rd);
      if (rd.hardState) this.checker.onPersist(n.id, rd.hardState);
      if (n.crashAt === 'afterPersist') return this.kill(n);
      for (const m of rd.messages) {
        if (this.dropIf && this.dropIf(m)) continue;
        for (const d of this.net.route(m.from, m.to)) this.clock.push(this.now + d, { k: 'msg', m });
      }
      if (n.crashAt === 'afterSend') return this.kill(n);
      if (rd.snapshot) {
        n.sm = { ...rd.snapshot.data };
        this.checker.onSnapshot(n.id, n.sm);
      }
      for (const e of rd.committedEntries) {
        n.sm = applyEntry(n.sm, e);
        this.checker.onApply(n.id, n.sm);
      }
      r.advance(rd);
      const every = this.opts.compactEvery;
      if (every > 0 && n.sm.index - r.log.snapIndex >= every) {
        const snap = r.compact(n.sm.index, { ...n.sm });
        n.storage.compact(snap);
      }
    }
  }

  private trace(line: string): void {
    if (this.opts.trace) this.opts.trace(`[${(this.now / UNIT).toFixed(3)}] ${line}`);
  }

  /** Fresh proposal values, for callers that propose through raft() directly. */
  takeValue(): number {
    return this.nextValue++;
  }

  setNetwork(c: NetworkConditions): void {
    this.net.conditions = { ...c };
  }
}

export function fmt(m: SimMessage): string {
  let extra = '';
  if (m.type === 'app') extra = ` idx=${m.index} lt=${m.logTerm} n=${m.entries.length} c=${m.commit}`;
  else if (m.type === 'appResp') extra = ` idx=${m.index}${m.reject ? ` REJ hint=${m.hintIndex}/${m.hintTerm}` : ''}`;
  else if (m.type === 'vote' || m.type === 'preVote') extra = ` last=${m.index}/${m.logTerm}${m.force ? ' force' : ''}`;
  else if (m.type === 'voteResp' || m.type === 'preVoteResp') extra = m.reject ? ' REJ' : ' ok';
  else if (m.type === 'snap') extra = ` snap=${m.snapshot.meta.index}/${m.snapshot.meta.term}`;
  return `${m.type} ${m.from}->${m.to} t=${m.term}${extra}`;
}
