// A simulated watchdog cluster: RaftNodes carrying ClusterCommands, each peer with its own
// local health view of the backends, gossip of views over the same faulty network as Raft,
// and the pure watchdog rules (tally, decide, vip, interlock) driving a model of the
// failover engine. Same seed, same run, bit for bit. Time: 1000 units = one nominal tick.
import { RaftNode } from '../../raft/core/raft.js';
import type { Message, NodeId, Ready } from '../../raft/core/types.js';
import { MemoryStorage } from '../../raft/storage/memory-storage.js';
import { Scheduler } from '../../raft/sim/event-queue.js';
import { InvariantChecker } from '../../raft/sim/invariants.js';
import { Network, RELIABLE, type NetworkConditions } from '../../raft/sim/network.js';
import { Prng } from '../../raft/sim/prng.js';
import { decide, leaseCovers, type CoordinatorAction } from '../decide.js';
import { observeRaft, type RaftObservation } from '../raft-status.js';
import type { FailoverStepName } from '../../failover/decisions.js';
import { decideStep, REPEATABLE, type StepVerdict } from '../../failover/resume.js';
import { apply, snapshotState, type ClusterCommand, type ClusterState, type FailoverRecord } from '../state.js';
import { tally } from '../tally.js';
import { claimAtTermStart, vipDecision, vipEligibility } from '../vip.js';
import { isNewerView, type AgedView, type PeerView } from '../view.js';
import { WatchdogChecker } from './invariants.js';

export const UNIT = 1000;

const SIM_STEPS: readonly FailoverStepName[] = ['promote', 'failover_command', 'follow', 'follow_primary_command'];

type WRaft = RaftNode<ClusterCommand, ClusterState>;
type WMessage = Message<ClusterCommand, ClusterState>;

/** TEST ONLY: deliberately broken rules, so tests prove the checker catches them. */
export interface WatchdogFaults {
  /** VIP eligibility from the role alone, ignoring the lease. */
  vipWithoutLease?: boolean;
  /** A coordinator that lost its lease or leadership keeps running the failover it started. */
  deposedRunnerContinues?: boolean;
  /** Fail a backend over on one peer's word, ignoring require_consensus. */
  ignoreConsensus?: boolean;
  /** A new coordinator never resumes a record a previous one left open. */
  neverResume?: boolean;
  /** A resumed run re-runs a command cut off between begun and done without looking at its effect. */
  rerunBegunCommands?: boolean;
}

export interface WatchdogSimOptions {
  seed: number;
  peers: number;
  backends: number;
  electionTicks?: number;
  skew?: number;
  /** Views older than this count as missing (units). */
  maxViewAge?: number;
  /** A failover's execution: this many recorded steps (promote, failover_command, follow,
   * follow_primary_command in turn, by seq) of `stepTicks` ticks each. */
  steps?: number;
  stepTicks?: number;
  compactEvery?: number;
  faults?: WatchdogFaults;
  trace?: (line: string) => void;
}

interface Engine {
  /** Proposal in flight: the log index that must apply before the engine moves on. */
  awaiting: { index: number; term: number; what: 'start' | 'resume' | 'finish' | 'begun' | 'done'; ids: number[] } | null;
  /** The record this peer runs: the step it is at, and where in that step. `decide`: what
   * the record says of it decides; `run`: begun is recorded, run it; `ended`: it ran. */
  current: { seq: number; i: number; stage: 'decide' | 'run' | 'ended'; stepEnd: number | null } | null;
  /** Requests waiting for the engine (it runs one failover at a time, as the real one does). */
  queue: { ids: number[]; reason: string }[];
  engineSeq: number;
  claimedTerm: number;
}

interface Peer {
  id: NodeId;
  index: number;
  raft: WRaft | null;
  storage: MemoryStorage<ClusterCommand, ClusterState>;
  state: ClusterState;
  period: number;
  life: number;
  startedAt: number;
  viewSeq: number;
  /** This peer's own health checks: true = sees the backend down. */
  localDown: boolean[];
  since: number[];
  views: Map<NodeId, { view: PeerView; at: number }>;
  quarantined: Set<number>;
  holdingVip: boolean;
  /** The term this peer proposed its VIP claim in (one proposal per term). */
  vipClaimTerm: number;
  trustedOk: boolean;
  engine: Engine;
  lastAction: string;
}

type SimEvent =
  | { k: 'tick'; id: NodeId; life: number }
  | { k: 'raft'; m: WMessage }
  | { k: 'view'; to: NodeId; view: PeerView }
  | { k: 'stepEnd'; id: NodeId; life: number; seq: number }
  | { k: 'call'; fn: () => void };

export class WatchdogSim {
  readonly ids: NodeId[];
  readonly rng: Prng;
  readonly net: Network;
  readonly checker = new WatchdogChecker();
  private readonly raftChecker = new InvariantChecker();
  readonly o: Required<Omit<WatchdogSimOptions, 'faults' | 'trace'>> & Pick<WatchdogSimOptions, 'faults' | 'trace'>;
  private peers = new Map<NodeId, Peer>();
  private readonly clock = new Scheduler<SimEvent>((ev) => this.handle(ev));
  /** Peers eligible to hold the VIP as of their last event. */
  private eligible = new Set<NodeId>();
  private readonly initial: ClusterState;
  /** Simulated time, in units. */
  get now(): number {
    return this.clock.now;
  }
  steps = 0;
  /** Ground truth: steps whose effect happened ("seq:step:backend"), what a resumed run observes. */
  private readonly effects = new Set<string>();
  /** Resumed runs' verdicts on steps an earlier run recorded. */
  readonly stepStats = { skipped: 0, rerun: 0, treatedDone: 0 };
  /** The window in which a peer's "down" still counts for the consensus check: view age plus the slowest delivery. */
  declareWindow = 0;

  constructor(options: WatchdogSimOptions) {
    this.o = { electionTicks: 10, skew: 0.05, maxViewAge: 4 * UNIT, compactEvery: 20, ...options, steps: options.steps ?? 2, stepTicks: options.stepTicks ?? 2 };
    this.rng = new Prng(options.seed);
    this.net = new Network(this.rng.fork(), RELIABLE);
    this.ids = Array.from({ length: options.peers }, (_, i) => `p${i + 1}`);
    // Backend 0 starts as the primary, the others as standbys, all up.
    this.initial = {
      v: 1,
      index: 0,
      term: 0,
      backends: Array.from({ length: options.backends }, (_, id) => ({
        id,
        status: 'up' as const,
        role: id === 0 ? ('primary' as const) : ('standby' as const),
        weight: 1,
        lastChange: { index: 0, term: 0, at: 0, reason: 'initial' },
      })),
      primary: 0,
      failovers: [],
      coordinator: null,
      vipHolder: null,
    };
    this.ids.forEach((id, index) => {
      const period = Math.round(UNIT * (1 + (this.rng.next() * 2 - 1) * this.o.skew));
      const p: Peer = {
        id,
        index,
        raft: null,
        storage: new MemoryStorage(),
        state: this.initial,
        period,
        life: 0,
        startedAt: 0,
        viewSeq: 0,
        localDown: Array.from({ length: options.backends }, () => false),
        since: Array.from({ length: options.backends }, () => 0),
        views: new Map(),
        quarantined: new Set(),
        holdingVip: false,
        vipClaimTerm: -1,
        trustedOk: true,
        engine: { awaiting: null, current: null, queue: [], engineSeq: 0, claimedTerm: 0 },
        lastAction: '',
      };
      this.peers.set(id, p);
      this.start(p);
    });
  }

  // ---- observation -------------------------------------------------------------------

  isUp(id: NodeId): boolean {
    return this.peer(id).raft !== null;
  }

  stateOf(id: NodeId): ClusterState {
    return this.peer(id).state;
  }

  raftOf(id: NodeId): WRaft | null {
    return this.peer(id).raft;
  }

  leader(): WRaft | null {
    let best: WRaft | null = null;
    for (const p of this.peers.values()) if (p.raft?.role === 'leader' && (!best || p.raft.term > best.term)) best = p.raft;
    return best;
  }

  /** Raft converged (one leader, every log applied everywhere), coordination claimed, no failover open. */
  settled(): boolean {
    const l = this.leader();
    if (!l || !l.hasLease()) return false;
    const last = l.log.lastIndex();
    for (const p of this.peers.values()) {
      const r = p.raft;
      if (!r || r.term !== l.term || r.leader !== l.id || r.log.committed !== last || p.state.index !== last) return false;
    }
    const s = this.peer(l.id).state;
    return s.coordinator?.peer === l.id && s.coordinator.term === l.term && s.failovers.every((f) => f.finished !== null);
  }

  // ---- control -----------------------------------------------------------------------

  /** Process events up to and including time t. */
  runUntil(t: number): void {
    this.clock.runUntil(t);
  }

  /** Run until pred() holds (checked after every step) or maxTicks pass; returns whether it held. */
  runUntilTrue(pred: () => boolean, maxTicks: number): boolean {
    return this.clock.runUntilTrueBy(pred, this.now + maxTicks * UNIT);
  }

  at(delay: number, fn: () => void): void {
    this.clock.push(this.now + delay, { k: 'call', fn });
  }

  crash(id: NodeId): void {
    const p = this.peer(id);
    if (!p.raft) return;
    this.trace(`crash ${id}`);
    p.raft = null;
    p.life++;
    p.holdingVip = false;
    this.eligible.delete(id);
    this.checker.onCrash(id, this.now);
  }

  restart(id: NodeId): void {
    const p = this.peer(id);
    if (!p.raft) this.start(p);
  }

  /** Backend `b` as seen by peer `id`'s own health checks. */
  setHealth(id: NodeId, b: number, down: boolean): void {
    const p = this.peer(id);
    if (p.localDown[b] === down) return;
    p.localDown[b] = down;
    p.since[b] = this.now;
    this.checker.setLocalHealth(id, b, down, this.now);
    this.trace(`${id} sees backend ${b} ${down ? 'down' : 'up'}`);
    if (p.raft) this.gossip(p); // every change of a view goes out at once
  }

  setTrusted(id: NodeId, ok: boolean): void {
    this.peer(id).trustedOk = ok;
  }

  transferLeadership(to: NodeId): void {
    const l = this.leader();
    if (!l) return;
    l.transferLeadership(to);
    this.processReady(this.peer(l.id));
  }

  setNetwork(c: NetworkConditions): void {
    this.net.conditions = { ...c };
  }

  // ---- internals ---------------------------------------------------------------------

  private peer(id: NodeId): Peer {
    const p = this.peers.get(id);
    if (!p) throw new Error(`sim: no peer ${id}`);
    return p;
  }

  private start(p: Peer): void {
    const stored = p.storage.load();
    p.raft = new RaftNode<ClusterCommand, ClusterState>(
      {
        id: p.id,
        peers: this.ids,
        electionTicks: this.o.electionTicks,
        heartbeatTicks: 1,
        random: ((r: Prng) => () => r.next())(this.rng.fork()),
        // As the watchdog does: a new leader's first entry carries its VIP claim when it may claim.
        firstEntry: (term) => {
          if (!claimAtTermStart({ trusted: { configured: 1, answering: p.trustedOk ? 1 : 0 }, shuttingDown: false }).eligible) return null;
          p.vipClaimTerm = term;
          return { type: 'vip', peer: p.id, at: this.now, holding: true };
        },
      },
      stored,
    );
    p.state = stored.snapshot ? snapshotState(stored.snapshot.data) : this.initial;
    p.life++;
    p.startedAt = this.now;
    p.viewSeq = 0;
    p.views = new Map();
    p.quarantined = new Set();
    p.holdingVip = false; // a starting peer drops a VIP it may still hold
    p.vipClaimTerm = -1;
    p.engine = { awaiting: null, current: null, queue: [], engineSeq: 0, claimedTerm: 0 };
    this.trace(`start ${p.id} term=${p.raft.term} commit=${p.raft.log.committed}`);
    this.clock.push(this.now + 1 + this.rng.int(p.period), { k: 'tick', id: p.id, life: p.life });
    this.processReady(p);
  }

  private handle(ev: SimEvent): void {
    this.steps++;
    switch (ev.k) {
      case 'tick': {
        const p = this.peer(ev.id);
        if (!p.raft || p.life !== ev.life) return;
        p.raft.tick();
        this.clock.push(this.now + p.period, ev);
        this.processReady(p);
        this.gossip(p);
        this.watchdogStep(p);
        break;
      }
      case 'raft': {
        const p = this.peer(ev.m.to);
        if (!p.raft || !this.net.connected(ev.m.from, ev.m.to)) return;
        p.raft.step(ev.m);
        this.processReady(p);
        // The runtime steps the VIP rules on every Raft status or state change (a lost
        // lease, a stepped-down leader, its own claim applied), not only on its timer.
        this.vipStep(p, observeRaft(p.raft as RaftNode<unknown, unknown>));
        break;
      }
      case 'view': {
        const p = this.peer(ev.to);
        if (!p.raft || !this.net.connected(ev.view.peer, ev.to)) return;
        const prev = p.views.get(ev.view.peer);
        if (isNewerView(prev?.view, ev.view)) p.views.set(ev.view.peer, { view: ev.view, at: this.now });
        return; // a view changes no Raft state: nothing to re-check
      }
      case 'stepEnd': {
        const p = this.peer(ev.id);
        if (!p.raft || p.life !== ev.life) return;
        const cur = p.engine.current;
        if (cur && cur.seq === ev.seq && cur.stepEnd !== null) {
          // The command completed (its effect is there), whether or not its end gets recorded.
          const st = this.stepsOf(cur.seq)[cur.i];
          this.checker.onEffect(cur.seq, `${st.step} of backend ${st.backend}`, REPEATABLE[st.step], p.id);
          this.effects.add(`${cur.seq}:${st.step}:${st.backend}`);
          cur.stage = 'ended';
          cur.stepEnd = null;
        }
        this.watchdogStep(p);
        break;
      }
      case 'call':
        ev.fn();
        for (const q of this.peers.values()) this.refreshEligible(q);
        this.check();
        return;
    }
    // Eligibility moves only with a peer's own Raft state, which only its own events change.
    this.refreshEligible(this.peer(ev.k === 'raft' ? ev.m.to : ev.id));
    this.check();
  }

  private refreshEligible(p: Peer): void {
    // Every eligibility rule (the broken test variant included) needs the leader role.
    const r = p.raft;
    if (r && r.role === 'leader' && this.vipEligible(p, observeRaft(r as RaftNode<unknown, unknown>))) this.eligible.add(p.id);
    else this.eligible.delete(p.id);
  }

  private check(): void {
    this.checker.checkVip([...this.eligible]);
    const holders: { peer: string; term: number; claim: { peer: string; term: number } | null }[] = [];
    for (const p of this.peers.values()) if (p.holdingVip && p.raft) holders.push({ peer: p.id, term: p.raft.term, claim: p.state.vipHolder });
    this.checker.checkHolders(holders);
    this.raftChecker.checkLeases(this.leaders() as unknown as RaftNode<number, { index: number; hash: number }>[]);
  }

  private leaders(): WRaft[] {
    const out: WRaft[] = [];
    for (const p of this.peers.values()) if (p.raft?.role === 'leader') out.push(p.raft);
    return out;
  }

  private vipEligible(p: Peer, obs: RaftObservation): boolean {
    if (this.o.faults?.vipWithoutLease) return obs.role === 'leader';
    return vipEligibility({ raft: obs, trusted: { configured: 1, answering: p.trustedOk ? 1 : 0 }, shuttingDown: false }).eligible;
  }

  private processReady(p: Peer): void {
    while (p.raft && p.raft.hasReady()) {
      const r = p.raft;
      const rd: Ready<ClusterCommand, ClusterState> = r.ready();
      if (rd.softStateChanged) this.trace(`${p.id} ${rd.softState.role} term=${r.term} leader=${rd.softState.leader ?? '-'}`);
      p.storage.save(rd);
      for (const m of rd.messages) for (const d of this.net.route(m.from, m.to)) this.clock.push(this.now + d, { k: 'raft', m });
      if (rd.snapshot) p.state = snapshotState(rd.snapshot.data);
      for (const e of rd.committedEntries) {
        const res = apply(p.state, e.data, { index: e.index, term: e.term });
        p.state = res.state;
        this.checker.onApply(p.id, e.index, JSON.stringify(p.state));
        if (res.changed && e.data?.type === 'decision' && e.data.decision.type === 'failoverFinished') this.checker.onFinished(e.data.decision.seq, e.index);
        if (res.changed && this.o.trace) this.trace(`${p.id} applied ${e.index}: ${res.reason}`);
      }
      r.advance(rd);
      if (p.state.index - r.log.snapIndex >= this.o.compactEvery) p.storage.compact(r.compact(p.state.index, snapshotState(p.state)));
    }
  }

  private myView(p: Peer): PeerView {
    const r = p.raft as WRaft;
    return {
      peer: p.id,
      seq: p.viewSeq++,
      startedAt: p.startedAt,
      backends: p.localDown.map((down, id) => ({ id, health: down ? 'down' : 'up', role: 'unknown', lsn: null, since: p.since[id] })),
      status: { proxyUp: true, sessions: 0, version: 'sim', priority: p.index % 2, state: r.role === 'leader' ? 'LEADER' : 'STANDBY' },
    };
  }

  private gossip(p: Peer): void {
    const view = this.myView(p);
    p.views.set(p.id, { view, at: this.now });
    for (const to of this.ids) {
      if (to === p.id) continue;
      for (const d of this.net.route(p.id, to)) this.clock.push(this.now + d, { k: 'view', to, view });
    }
  }

  private agedViews(p: Peer): Map<NodeId, AgedView> {
    const out = new Map<NodeId, AgedView>();
    for (const [id, v] of p.views) out.set(id, { view: v.view, ageMs: this.now - v.at });
    return out;
  }

  private propose(p: Peer, cmd: ClusterCommand): { index: number; term: number } | null {
    const r = p.raft as WRaft;
    const at = r.propose(cmd);
    this.processReady(p);
    return at;
  }

  /** One pass of the watchdog loop on peer p: local quarantine, the coordinator's decision, the engine, the VIP. */
  private watchdogStep(p: Peer): void {
    const r = p.raft;
    if (!r) return;
    const obs = observeRaft(r as RaftNode<unknown, unknown>);
    const views = this.agedViews(p);
    const maxViewAge = this.o.maxViewAge;
    const t = tally({
      self: p.id,
      peers: this.ids,
      views,
      maxViewAgeMs: maxViewAge,
      requireConsensus: !this.o.faults?.ignoreConsensus,
      failoverWhenQuorumExists: true,
      state: p.state,
      quarantined: p.quarantined,
    });
    for (const b of t) {
      if (b.action === 'quarantine') p.quarantined.add(b.id);
      else if (b.action === 'lift-quarantine') p.quarantined.delete(b.id);
    }

    const e = p.engine;
    // The engine's proposal in flight: has it applied, or was it lost with the leadership?
    if (e.awaiting) {
      const a = e.awaiting;
      if (p.state.index >= a.index) {
        const rec = p.state.failovers.find((f) => f.seq === (a.what === 'start' ? a.index : e.current?.seq));
        if (a.what === 'start' && rec && rec.runner === p.id && rec.term === a.term) e.current = { seq: rec.seq, i: 0, stage: 'decide', stepEnd: null };
        if (a.what === 'finish') e.current = null;
        if (a.what === 'begun' && e.current) e.current.stage = 'run';
        if (a.what === 'done' && e.current) {
          e.current.i++;
          e.current.stage = 'decide';
        }
        e.awaiting = null;
      } else if (r.term !== a.term || r.role !== 'leader') {
        e.awaiting = null;
      }
    }
    // The record this peer runs: still its own in this term?
    if (e.current && !e.awaiting) {
      const rec = p.state.failovers.find((f) => f.seq === e.current?.seq);
      if (!rec || rec.finished || rec.runner !== p.id || rec.term !== r.term || r.role !== 'leader') {
        if (e.current.stepEnd === null && !this.o.faults?.deposedRunnerContinues) e.current = null;
      }
    }
    if (r.role !== 'leader') e.queue = [];
    if (!e.current && !e.awaiting && e.queue.length) this.startFailover(p, e.queue.shift() as { ids: number[]; reason: string });
    this.runEngine(p, obs);

    const pending = new Set<number>([...(e.awaiting?.what === 'start' ? e.awaiting.ids : []), ...e.queue.flatMap((q) => q.ids)]);
    const action: CoordinatorAction = decide({
      self: p.id,
      selfPriority: p.index % 2,
      peers: this.ids,
      raft: obs,
      state: p.state,
      tally: t,
      views,
      maxViewAgeMs: maxViewAge,
      silentPeerSafeAfterMs: this.o.maxViewAge + 4 * UNIT,
      engineBusy: e.awaiting !== null || e.current !== null,
      pending,
      failoverAllowed: p.state.backends.map(() => true),
    });
    if (this.o.trace && action.reason !== p.lastAction) {
      p.lastAction = action.reason;
      this.trace(`${p.id} decide ${action.kind}: ${action.reason}`);
    }
    switch (action.kind) {
      case 'claim':
        if (e.claimedTerm !== r.term && this.propose(p, { type: 'coordinator', peer: p.id, at: this.now })) e.claimedTerm = r.term;
        break;
      case 'resume': {
        if (this.o.faults?.neverResume) break;
        const at = this.propose(p, { type: 'failoverResumed', peer: p.id, at: this.now, seq: action.record.seq, reason: action.reason });
        if (at) {
          e.awaiting = { ...at, what: 'resume', ids: action.record.ids };
          e.current = { seq: action.record.seq, i: 0, stage: 'decide', stepEnd: null };
        }
        break;
      }
      case 'request-down': {
        this.checker.onDeclareDown(p.id, action.ids, this.ids, this.now, this.declareWindow || this.o.maxViewAge + 3 * UNIT);
        if (e.current || e.awaiting) e.queue.push({ ids: action.ids, reason: action.reason });
        else this.startFailover(p, action);
        break;
      }
      case 'transfer':
        r.transferLeadership(action.to);
        this.processReady(p);
        break;
      case 'nothing':
        break;
    }

    this.vipStep(p, obs);
  }

  /** The VIP runner's model: claim through the log, escalate once the claim applied here, de-escalate at once. */
  private vipStep(p: Peer, obs: RaftObservation): void {
    if (!p.raft) return;
    const vip = vipDecision({ self: p.id, claim: p.state.vipHolder, raft: obs, holding: p.holdingVip, trusted: { configured: 1, answering: p.trustedOk ? 1 : 0 }, shuttingDown: false });
    if (vip.action === 'claim' && p.vipClaimTerm !== obs.term) {
      if (this.propose(p, { type: 'vip', peer: p.id, at: this.now, holding: true })) p.vipClaimTerm = obs.term;
      this.trace(`${p.id} ${vip.reason}`);
    } else if (vip.action === 'escalate') {
      p.holdingVip = true;
      this.trace(`${p.id} ${vip.reason}`);
    } else if (vip.action === 'de-escalate') {
      // No release here: only a peer shutting down records one (it never escalates again),
      // so a release can never land after a later escalation of the same peer.
      p.holdingVip = false;
      this.trace(`${p.id} ${vip.reason}`);
    }
  }

  private startFailover(p: Peer, req: { ids: number[]; reason: string }): void {
    const r = p.raft as WRaft;
    const d = { type: 'failoverStarted' as const, seq: ++p.engine.engineSeq, kind: 'node_down' as const, ids: req.ids, term: r.term, reason: req.reason };
    const at = this.propose(p, { type: 'decision', peer: p.id, at: this.now, decision: d });
    if (at) p.engine.awaiting = { ...at, what: 'start', ids: req.ids };
  }

  /** The recorded steps of record `seq`: o.steps of them, names in turn from the seq, each for its own backend slot. */
  stepsOf(seq: number): { step: FailoverStepName; backend: number }[] {
    return Array.from({ length: this.o.steps }, (_, k) => ({ step: SIM_STEPS[(seq + k) % SIM_STEPS.length], backend: k }));
  }

  /** The failover engine's model: go through the record's steps as the real execution does
   * (resume.ts decides each from the record; begun is committed before a step runs, done
   * after; a step runs only while the lease covers it), then record the outcome. */
  private runEngine(p: Peer, obs: RaftObservation): void {
    const e = p.engine;
    const cur = e.current;
    if (!cur || cur.stepEnd !== null || (e.awaiting && e.awaiting.what !== 'resume')) return;
    if (e.awaiting?.what === 'resume') {
      if (p.state.index < e.awaiting.index) return;
    }
    const rec = p.state.failovers.find((f) => f.seq === cur.seq);
    const broken = this.o.faults?.deposedRunnerContinues === true;
    if (!rec || (!broken && (rec.finished || rec.runner !== p.id || rec.term !== obs.term))) return;
    const steps = this.stepsOf(rec.seq);
    while (cur.i < steps.length && cur.stage === 'decide') {
      const v = this.stepVerdict(rec, steps[cur.i], obs.term);
      this.trace(`${p.id} failover ${rec.seq} ${v.action}: ${v.reason}`);
      if (v.action === 'skip') {
        cur.i++;
        continue;
      }
      this.proposeStep(p, rec.seq, steps[cur.i], v.action === 'run' ? 'begun' : 'done', v.reason);
      return;
    }
    if (cur.i < steps.length && cur.stage === 'run') {
      const ok = broken || leaseCovers(obs, this.o.stepTicks).ok;
      if (!ok) return;
      const end = this.now + this.o.stepTicks * p.period;
      cur.stepEnd = end;
      this.checker.execStart(cur.seq, p.id, p.life, this.now, end);
      this.trace(`${p.id} runs step ${cur.i} of failover ${cur.seq} (${steps[cur.i].step} of backend ${steps[cur.i].backend})`);
      this.clock.push(end, { k: 'stepEnd', id: p.id, life: p.life, seq: cur.seq });
      return;
    }
    if (cur.i < steps.length && cur.stage === 'ended') {
      this.proposeStep(p, rec.seq, steps[cur.i], 'done', 'ran');
      return;
    }
    // Done: record the outcome (detach, maybe a new primary), then FailoverFinished.
    if (obs.role !== 'leader') {
      e.current = null; // (only the broken variant gets here) nothing to propose through
      return;
    }
    const s = p.state;
    let newPrimary: number | null = null;
    for (const id of rec.ids) this.propose(p, { type: 'decision', peer: p.id, at: this.now, decision: { type: 'backend', id, status: 'down', reason: `failover ${rec.seq}` } });
    if (s.primary === null || rec.ids.includes(s.primary)) {
      const cand = s.backends.find((b) => b.status === 'up' && !rec.ids.includes(b.id));
      if (cand) {
        newPrimary = cand.id;
        this.propose(p, { type: 'decision', peer: p.id, at: this.now, decision: { type: 'backend', id: cand.id, role: 'primary', reason: `promoted by failover ${rec.seq}` } });
      }
    }
    const fin = { type: 'failoverFinished' as const, seq: rec.seq, ok: true, summary: `${rec.ids.join(',')} detached`, newPrimary };
    const at = this.propose(p, { type: 'decision', peer: p.id, at: this.now, decision: fin });
    if (at) e.awaiting = { ...at, what: 'finish', ids: rec.ids };
  }

  /** What the real execution decides for one step (resume.ts), the observation being the simulation's ground truth: has the step's effect happened? */
  private stepVerdict(rec: FailoverRecord, st: { step: FailoverStepName; backend: number }, term: number): StepVerdict {
    const prior = rec.steps.find((x) => x.step === st.step && x.backend === st.backend);
    const done = this.effects.has(`${rec.seq}:${st.step}:${st.backend}`);
    const observed = prior?.phase === 'begun' && !REPEATABLE[st.step] ? { done, reason: done ? 'its effect is there' : 'its effect is not there' } : null;
    const v = decideStep({ ...st, prior, observed, term });
    if (this.o.faults?.rerunBegunCommands && v.action === 'treat as done') return { action: 'run', reason: `${v.reason} (BROKEN: run again anyway)` };
    if (v.action === 'skip') this.stepStats.skipped++;
    else if (v.action === 'treat as done') this.stepStats.treatedDone++;
    else if (prior) this.stepStats.rerun++;
    return v;
  }

  private proposeStep(p: Peer, seq: number, st: { step: FailoverStepName; backend: number }, phase: 'begun' | 'done', result: string): void {
    const decision = { type: 'failoverStep' as const, seq, ...st, phase, ...(phase === 'done' ? { ok: true, result } : {}) };
    const at = this.propose(p, { type: 'decision', peer: p.id, at: this.now, decision });
    if (at) p.engine.awaiting = { ...at, what: phase, ids: [] };
    else if (this.o.faults?.deposedRunnerContinues && p.engine.current) {
      // (broken variant) a deposed runner that records nothing and goes on anyway
      const cur = p.engine.current;
      if (phase === 'begun') cur.stage = 'run';
      else {
        cur.i++;
        cur.stage = 'decide';
      }
    }
  }

  trace(line: string): void {
    if (this.o.trace) this.o.trace(`[${(this.now / UNIT).toFixed(3)}] ${line}`);
  }
}
