// The Raft state machine. Pure: no clock (time is tick() calls), no I/O (output is
// Ready), no hidden randomness (config.random). One instance per peer.
import { RaftLog } from './log.js';
import { Progress } from './progress.js';
import type {
  Entry,
  HardState,
  Message,
  MsgApp,
  MsgAppResp,
  MsgHeartbeat,
  MsgSnap,
  MsgVote,
  MsgVoteResp,
  NodeId,
  Ready,
  Role,
  Snapshot,
  SoftState,
  Status,
} from './types.js';

export interface RaftConfig<T = never> {
  id: NodeId;
  /** All voting members, this node included. Static. */
  peers: NodeId[];
  /** T: a follower campaigns after a random timeout in [T, 2T) ticks without a leader. */
  electionTicks: number;
  /** A leader sends heartbeats every this many ticks (must be < electionTicks). */
  heartbeatTicks: number;
  /** Uniform in [0, 1). Injected so that runs are reproducible. */
  random: () => number;
  /**
   * The data of the entry a new leader appends at the start of its term (default: null, the
   * no-op). It commits in the election's first round, so a command the application would
   * propose at once anyway (the watchdog's VIP claim) costs no round of its own. It must be
   * a command the state machine accepts at any time.
   */
  firstEntry?: (term: number) => T | null;
  /** Pre-vote round before a real election (default true). */
  preVote?: boolean;
  /** Leaders step down without a live majority; followers ignore votes while they hear from a leader (default true). */
  checkQuorum?: boolean;
  /**
   * Length of the leader lease, in ticks, counted from the send tick of a heartbeat a
   * majority acknowledged. Must be < electionTicks - 1 by a margin covering clock-rate
   * drift between peers; default electionTicks - 1 - ceil(electionTicks / 10).
   */
  leaseTicks?: number;
  /** Most entries in one append message (default 64). */
  maxEntriesPerMsg?: number;
}

/** Durable state to start from (empty for a brand-new node). */
export interface RaftInitialState<T, S> {
  hardState?: HardState;
  snapshot?: Snapshot<S> | null;
  entries?: Entry<T>[];
}

export class RaftNode<T, S> {
  readonly id: NodeId;
  readonly peers: NodeId[];
  private readonly peerSet: Set<NodeId>;
  private readonly cfg: Required<RaftConfig<T>>;
  private readonly quorum: number;

  term = 0;
  vote: NodeId | null = null;
  role: Role = 'follower';
  leader: NodeId | null = null;
  readonly log: RaftLog<T, S>;

  private prs = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedTimeout = 0;
  /** Local clock: number of tick() calls since this instance was created. */
  private now = 0;
  /** Local tick at which we last heard from (or were) a leader; votes are refused for electionTicks after it. */
  private lastLeaderContact = 0;
  private transferee: NodeId | null = null;
  private forfeitedLease = false;
  /** The current campaign was started by a leadership transfer (overrides leases). */
  private forcedCampaign = false;
  private leaseStart = 0;
  private leaseUntil = -Infinity;
  /** A pre-vote turned away only because we still heard from a leader; answered once that
   * window closes (tickElection), so a candidate whose clock ran a tick ahead of ours does
   * not wait a whole election timeout more. */
  private deferredPreVote: MsgVote | null = null;
  private msgs: Message<T, S>[] = [];
  private prevSoft: SoftState;
  private prevHard: HardState;

  constructor(config: RaftConfig<T>, init: RaftInitialState<T, S> = {}) {
    if (!config.peers.includes(config.id)) throw new Error(`raft: ${config.id} is not in peers`);
    if (new Set(config.peers).size !== config.peers.length) throw new Error('raft: duplicate peer ids');
    if (!(config.electionTicks >= 2)) throw new Error('raft: electionTicks must be >= 2');
    if (!(config.heartbeatTicks >= 1 && config.heartbeatTicks < config.electionTicks)) {
      throw new Error('raft: heartbeatTicks must be in [1, electionTicks)');
    }
    const T = config.electionTicks;
    this.cfg = {
      preVote: true,
      checkQuorum: true,
      leaseTicks: T - 1 - Math.ceil(T / 10),
      maxEntriesPerMsg: 64,
      ...config,
      firstEntry: config.firstEntry ?? (() => null), // (an explicit undefined means the default too)
    };
    if (this.cfg.leaseTicks > T - 1) throw new Error('raft: leaseTicks must be <= electionTicks - 1');
    this.id = config.id;
    this.peers = [...config.peers];
    this.peerSet = new Set(this.peers);
    this.quorum = Math.floor(this.peers.length / 2) + 1;
    const hs = init.hardState ?? { term: 0, vote: null, commit: 0 };
    this.log = RaftLog.restore<T, S>(init.snapshot ?? null, init.entries ?? [], hs.commit);
    this.term = hs.term;
    this.vote = hs.vote;
    this.prevHard = { term: hs.term, vote: hs.vote, commit: this.log.committed };
    this.prevSoft = { role: 'follower', leader: null };
    this.resetRandomizedTimeout();
  }

  // ---- inputs ------------------------------------------------------------------------

  /** Advance the logical clock by one tick. */
  tick(): void {
    this.now++;
    if (this.role === 'leader') this.tickLeader();
    else this.tickElection();
  }

  /** Start an election now (pre-vote first if enabled). */
  campaign(): void {
    this.hup(false);
  }

  /** Propose a command. Returns its log position, or null if this node is not an accepting leader. */
  propose(data: T): { index: number; term: number } | null {
    if (this.role !== 'leader' || this.transferee !== null) return null;
    const e = this.appendEntry(data);
    this.bcastAppend();
    return { index: e.index, term: e.term };
  }

  /** Ask the leader to hand leadership to `to`. Returns false if that cannot start. */
  transferLeadership(to: NodeId): boolean {
    if (this.role !== 'leader' || to === this.id || !this.peers.includes(to)) return false;
    if (this.transferee === to) return true;
    this.transferee = to;
    this.electionElapsed = 0;
    const pr = this.prs.get(to) as Progress;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to, true);
    return true;
  }

  /**
   * The application has applied up to `index` and captured its state as `data`: drop the
   * log up to there. Returns the snapshot, which the runtime must store (storage.compact).
   */
  compact(index: number, data: S): Snapshot<S> {
    const t = this.log.term(index);
    if (t === undefined) throw new Error(`raft: cannot compact at ${index}: not in log`);
    const snap: Snapshot<S> = { meta: { index, term: t, peers: [...this.peers] }, data };
    this.log.compact(snap);
    return snap;
  }

  step(m: Message<T, S>): void {
    if (m.to !== this.id || !this.peerSet.has(m.from) || m.from === this.id) return; // misrouted or from a non-member
    if (m.term > this.term) {
      if (m.type === 'vote' || m.type === 'preVote') {
        if (!m.force && this.hearsFromLeader()) {
          // We hear from a leader: ignore disruptive candidates (a pre-vote: until we stop hearing).
          if (m.type === 'preVote' && this.role !== 'leader') this.deferredPreVote = m;
          return;
        }
      }
      if (m.type === 'preVote') {
        // a pre-vote never changes our term
      } else if (m.type === 'preVoteResp' && !m.reject) {
        // granted pre-votes carry the term we will campaign in
      } else if (m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, null);
      }
    } else if (m.term < this.term) {
      if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === 'app' || m.type === 'heartbeat')) {
        // A stale leader: tell it our term so that it steps down.
        this.send({ type: 'appResp', to: m.from, term: this.term, index: 0, reject: false, hintIndex: 0, hintTerm: 0 });
      } else if (m.type === 'preVote') {
        this.send({ type: 'preVoteResp', to: m.from, term: this.term, reject: true });
      }
      return;
    }

    if (m.type === 'vote' || m.type === 'preVote') {
      this.handleVote(m);
      return;
    }
    switch (this.role) {
      case 'leader':
        this.stepLeader(m);
        break;
      case 'candidate':
      case 'pre-candidate':
        this.stepCandidate(m);
        break;
      case 'follower':
        this.stepFollower(m);
        break;
    }
  }

  // ---- outputs -----------------------------------------------------------------------

  softState(): SoftState {
    return { role: this.role, leader: this.leader };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  hasReady(): boolean {
    if (this.msgs.length) return true;
    if (this.log.pendingSnapshot) return true;
    if (this.log.unstableFrom <= this.log.lastIndex()) return true;
    if (this.log.committed > this.log.applied) return true;
    if (this.role !== this.prevSoft.role || this.leader !== this.prevSoft.leader) return true;
    const h = this.prevHard;
    return h.term !== this.term || h.vote !== this.vote || h.commit !== this.log.committed;
  }

  /** Collect pending work. Call once, handle it, then call advance() with it. */
  ready(): Ready<T, S> {
    const soft = this.softState();
    const hard = this.hardState();
    const h = this.prevHard;
    const hardChanged = h.term !== hard.term || h.vote !== hard.vote || h.commit !== hard.commit;
    const msgs = this.msgs;
    this.msgs = [];
    return {
      softState: soft,
      softStateChanged: soft.role !== this.prevSoft.role || soft.leader !== this.prevSoft.leader,
      hardState: hardChanged ? hard : null,
      entries: this.log.unstableEntries(),
      snapshot: this.log.pendingSnapshot,
      committedEntries: this.log.nextCommitted(),
      messages: msgs,
    };
  }

  /** The runtime has persisted, sent and applied everything in `rd`. */
  advance(rd: Ready<T, S>): void {
    this.prevSoft = rd.softState;
    if (rd.hardState) this.prevHard = rd.hardState;
    const log = this.log;
    if (rd.snapshot) {
      if (log.pendingSnapshot === rd.snapshot) log.pendingSnapshot = null;
      log.applied = Math.max(log.applied, rd.snapshot.meta.index);
    }
    if (rd.entries.length) {
      const first = rd.entries[0].index;
      const last = rd.entries[rd.entries.length - 1];
      if (log.unstableFrom >= first && log.term(last.index) === last.term) {
        log.unstableFrom = Math.max(log.unstableFrom, last.index + 1);
      }
    }
    if (rd.committedEntries.length) {
      log.applied = Math.max(log.applied, rd.committedEntries[rd.committedEntries.length - 1].index);
    }
  }

  /** This node's local clock (ticks since start). */
  tickNow(): number {
    return this.now;
  }

  /**
   * How many tick() calls from now until one can do more than count: send a message, change
   * the role, start or end the lease, answer a deferred pre-vote, abandon a transfer. (At
   * least 1; a message or a proposal may bring it closer, so ask again after any input.)
   * A runtime may sleep until then and make the ticks up when it wakes or an input arrives
   * — tick() up to the present first, then step() — and the node goes through exactly the
   * states it would with a tick() on every beat; an idle follower then wakes about once per
   * election timeout instead of every tick. The simulator checks the promise on every tick.
   */
  ticksUntilDue(): number {
    let k: number;
    if (this.role === 'leader') {
      // tickLeader: a heartbeat round, the check-quorum / transfer timeout, and the lease's
      // own edges (it may start late after a forced campaign; it ends at leaseUntil).
      k = Math.min(this.cfg.heartbeatTicks - this.heartbeatElapsed, this.cfg.electionTicks - this.electionElapsed);
      if (this.now < this.leaseStart) k = Math.min(k, this.leaseStart - this.now);
      if (this.now < this.leaseUntil) k = Math.min(k, this.leaseUntil - this.now);
    } else {
      // tickElection: the election timeout, and a deferred pre-vote once we stop hearing from the leader.
      k = this.randomizedTimeout - this.electionElapsed;
      // (Only deferred while hearsFromLeader, i.e. with check-quorum.)
      if (this.deferredPreVote) k = Math.min(k, this.lastLeaderContact + this.cfg.electionTicks - this.now);
    }
    return Math.max(1, k);
  }

  /**
   * Leader lease: the local tick until which (exclusive) no other node can be leader, or
   * null if this node holds no lease now.
   *
   * Why it holds: a follower that acknowledged our heartbeat sent at our tick s refuses
   * all votes for electionTicks of its own ticks after receiving it (check-quorum), and
   * so do we for ourselves; a majority did, so no rival can win an election before
   * s + (electionTicks - 1) ticks of the slowest of those clocks. The lease ends at
   * s + leaseTicks of OUR clock. CLOCK ASSUMPTION: tick rates of any two peers differ by
   * less than the margin (electionTicks - 1) / leaseTicks (about 12% at the defaults),
   * and a paused process counts its missed ticks when it resumes. A leader elected by a
   * leadership transfer (which overrides the followers' refusal) takes no lease for
   * electionTicks, and a leader that started a transfer gives its lease up for the term.
   * The lease also needs an entry of this term committed, so the leader knows the commit.
   */
  leaseValidUntilTick(): number | null {
    if (this.role !== 'leader' || !this.cfg.checkQuorum || this.forfeitedLease || this.transferee !== null) return null;
    if (this.log.term(this.log.committed) !== this.term) return null;
    if (this.now < this.leaseStart || this.now >= this.leaseUntil) return null;
    return this.leaseUntil;
  }

  /**
   * This leader started a leadership transfer in its term and so gave its lease up for the
   * rest of the term (a delayed TimeoutNow may still make the transferee win). If the
   * transfer failed, the term must end by another transfer for any leader lease to return.
   */
  /** The peer leadership is being handed to, null when no transfer runs. */
  transferTarget(): NodeId | null {
    return this.transferee;
  }

  leaseForfeited(): boolean {
    return this.role === 'leader' && this.forfeitedLease;
  }

  hasLease(): boolean {
    return this.leaseValidUntilTick() !== null;
  }

  status(): Status {
    let progress: Status['progress'] = null;
    if (this.role === 'leader') {
      progress = {};
      for (const [id, pr] of this.prs) progress[id] = { match: pr.match, next: pr.next, state: pr.state, active: pr.recentActive };
    }
    return {
      id: this.id,
      role: this.role,
      leader: this.leader,
      term: this.term,
      vote: this.vote,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      lastTerm: this.log.lastTerm(),
      snapshotIndex: this.log.snapIndex,
      tick: this.now,
      leaseUntilTick: this.leaseValidUntilTick(),
      transferee: this.transferee,
      progress,
    };
  }

  // ---- role changes ------------------------------------------------------------------

  private resetRandomizedTimeout(): void {
    const T = this.cfg.electionTicks;
    this.randomizedTimeout = T + Math.floor(this.cfg.random() * T);
  }

  private reset(term: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = null;
    }
    if (this.role === 'leader') this.lastLeaderContact = this.now; // our own promise as a lease voter
    this.leader = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedTimeout();
    this.transferee = null;
    this.votes.clear();
    this.prs.clear();
    this.forfeitedLease = false;
    this.leaseUntil = -Infinity;
  }

  private becomeFollower(term: number, leader: NodeId | null): void {
    this.reset(term);
    this.role = 'follower';
    this.leader = leader;
    if (leader !== null) this.lastLeaderContact = this.now;
  }

  private becomePreCandidate(): void {
    // Term and vote stay: a pre-vote changes nothing durable.
    this.reset(this.term);
    this.role = 'pre-candidate';
  }

  private becomeCandidate(): void {
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  private becomeLeader(forced: boolean): void {
    this.reset(this.term);
    this.deferredPreVote = null;
    this.role = 'leader';
    this.leader = this.id;
    this.lastLeaderContact = this.now;
    this.leaseStart = forced ? this.now + this.cfg.electionTicks : 0;
    const last = this.log.lastIndex();
    for (const p of this.peers) {
      const pr = new Progress(last + 1);
      pr.recentActive = true;
      this.prs.set(p, pr);
    }
    (this.prs.get(this.id) as Progress).match = last;
    this.appendEntry(this.cfg.firstEntry(this.term)); // lets earlier-term entries commit (the no-op, unless the application fills it)
    this.bcastAppend();
    // A heartbeat round at once, not heartbeatTicks later: the lease is counted from
    // acknowledged heartbeats only, and a new leader's VIP escalation waits for it.
    this.bcastHeartbeat();
  }

  private hup(force: boolean): void {
    if (this.role === 'leader') return;
    if (this.cfg.preVote && !force) this.runElection('preVote', false);
    else this.runElection('vote', force);
  }

  private runElection(kind: 'vote' | 'preVote', force: boolean): void {
    let voteTerm: number;
    if (kind === 'preVote') {
      this.becomePreCandidate();
      voteTerm = this.term + 1;
    } else {
      this.becomeCandidate();
      voteTerm = this.term;
    }
    this.forcedCampaign = force;
    if (this.poll(this.id, true, kind)) return;
    for (const p of this.peers) {
      if (p === this.id) continue;
      this.send({ type: kind, to: p, term: voteTerm, index: this.log.lastIndex(), logTerm: this.log.lastTerm(), force });
    }
  }

  /** Record a vote; returns true if the election is decided. */
  private poll(from: NodeId, granted: boolean, kind: 'vote' | 'preVote'): boolean {
    if (!this.votes.has(from)) this.votes.set(from, granted);
    let yes = 0;
    let no = 0;
    for (const v of this.votes.values()) {
      if (v) yes++;
      else no++;
    }
    if (yes >= this.quorum) {
      if (kind === 'preVote') this.runElection('vote', false);
      else this.becomeLeader(this.forcedCampaign);
      return true;
    }
    if (no >= this.quorum) {
      this.becomeFollower(this.term, null);
      return true;
    }
    return false;
  }

  /** True while this peer hears from a live leader (or is one): check-quorum's shield against
   * disruptive candidates — not the leader's read lease. */
  protected hearsFromLeader(): boolean {
    if (!this.cfg.checkQuorum) return false;
    if (this.role === 'leader') return true;
    return this.now - this.lastLeaderContact < this.cfg.electionTicks;
  }

  // ---- rule points ---------------------------------------------------------------------
  // Protected so that the simulator's test double (src/raft/sim/broken-node.ts) can break one
  // rule on purpose and prove the invariant checker catches it; production never overrides them.

  /** Whether this term's vote may go to the candidate (one vote per term; pre-votes are free). */
  protected mayGrantVote(m: MsgVote): boolean {
    return this.vote === m.from || (this.vote === null && this.leader === null) || (m.type === 'preVote' && m.term > this.term);
  }

  /** Whether index n may commit by counting replicas: only entries of the current term (Raft §5.4.2). */
  protected mayCommitByCounting(n: number): boolean {
    return this.log.term(n) === this.term;
  }

  // ---- ticking -----------------------------------------------------------------------

  private tickElection(): void {
    const d = this.deferredPreVote;
    if (d && !this.hearsFromLeader()) {
      this.deferredPreVote = null;
      if (d.term > this.term) this.handleVote(d);
    }
    this.electionElapsed++;
    if (this.electionElapsed >= this.randomizedTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    this.lastLeaderContact = this.now;
    this.updateLease();
    if (this.electionElapsed >= this.cfg.electionTicks) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum) {
        let active = 0;
        for (const [id, pr] of this.prs) {
          if (id === this.id || pr.recentActive) active++;
          pr.recentActive = false;
        }
        if (active < this.quorum) {
          this.becomeFollower(this.term, null);
          return;
        }
      }
      this.transferee = null; // a transfer that did not finish within an election timeout is abandoned
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat();
    }
  }

  private bcastHeartbeat(): void {
    for (const [id, pr] of this.prs) {
      if (id === this.id) continue;
      this.send({ type: 'heartbeat', to: id, term: this.term, commit: Math.min(pr.match, this.log.committed), tick: this.now });
    }
  }

  // ---- message handling --------------------------------------------------------------

  private handleVote(m: MsgVote): void {
    if (this.mayGrantVote(m) && this.log.isUpToDate(m.index, m.logTerm)) {
      const resp = m.type === 'vote' ? 'voteResp' : 'preVoteResp';
      this.send({ type: resp, to: m.from, term: m.term, reject: false });
      if (m.type === 'vote') {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: m.type === 'vote' ? 'voteResp' : 'preVoteResp', to: m.from, term: this.term, reject: true });
    }
  }

  private stepCandidate(m: Message<T, S>): void {
    switch (m.type) {
      case 'app':
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        break;
      case 'heartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        break;
      case 'snap':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        break;
      case 'voteResp':
      case 'preVoteResp':
        this.handleVoteResp(m);
        break;
      default:
        break;
    }
  }

  private handleVoteResp(m: MsgVoteResp): void {
    const kind = this.role === 'pre-candidate' ? 'preVote' : 'vote';
    if ((kind === 'preVote') !== (m.type === 'preVoteResp')) return;
    this.poll(m.from, !m.reject, kind);
  }

  private stepFollower(m: Message<T, S>): void {
    switch (m.type) {
      case 'app':
        this.heardFromLeader(m.from);
        this.handleAppend(m);
        break;
      case 'heartbeat':
        this.heardFromLeader(m.from);
        this.handleHeartbeat(m);
        break;
      case 'snap':
        this.heardFromLeader(m.from);
        this.handleSnapshot(m);
        break;
      case 'timeoutNow':
        this.hup(true);
        break;
      default:
        break;
    }
  }

  private heardFromLeader(from: NodeId): void {
    this.deferredPreVote = null;
    this.electionElapsed = 0;
    this.leader = from;
    this.lastLeaderContact = this.now;
  }

  private handleAppend(m: MsgApp<T>): void {
    const log = this.log;
    if (m.index < log.committed) {
      this.send({ type: 'appResp', to: m.from, term: this.term, index: log.committed, reject: false, hintIndex: 0, hintTerm: 0 });
      return;
    }
    const lastNew = log.maybeAppend(m.index, m.logTerm, m.entries);
    if (lastNew !== null) {
      log.commitTo(Math.min(m.commit, lastNew));
      this.send({ type: 'appResp', to: m.from, term: this.term, index: lastNew, reject: false, hintIndex: 0, hintTerm: 0 });
    } else {
      const hint = log.findConflictByTerm(Math.min(m.index, log.lastIndex()), m.logTerm);
      this.send({ type: 'appResp', to: m.from, term: this.term, index: m.index, reject: true, hintIndex: hint.index, hintTerm: hint.term });
    }
  }

  private handleHeartbeat(m: MsgHeartbeat): void {
    this.log.commitTo(m.commit);
    this.send({ type: 'heartbeatResp', to: m.from, term: this.term, tick: m.tick });
  }

  private handleSnapshot(m: MsgSnap<S>): void {
    const log = this.log;
    const s = m.snapshot;
    if (s.meta.index <= log.committed) {
      this.send({ type: 'appResp', to: m.from, term: this.term, index: log.committed, reject: false, hintIndex: 0, hintTerm: 0 });
      return;
    }
    if (log.matchTerm(s.meta.index, s.meta.term)) {
      log.commitTo(s.meta.index); // we already hold that prefix: just fast-forward the commit
    } else {
      log.restoreSnapshot(s);
    }
    this.send({ type: 'appResp', to: m.from, term: this.term, index: log.committed, reject: false, hintIndex: 0, hintTerm: 0 });
  }

  private stepLeader(m: Message<T, S>): void {
    const pr = this.prs.get(m.from);
    if (!pr) return;
    switch (m.type) {
      case 'appResp':
        pr.recentActive = true;
        this.handleAppResp(m, pr);
        break;
      case 'heartbeatResp':
        pr.recentActive = true;
        if (m.tick > pr.ackedTick) {
          pr.ackedTick = m.tick;
          this.updateLease();
        }
        if (pr.state === 'snapshot' && this.now - pr.snapshotSentTick >= this.cfg.electionTicks) pr.becomeProbe();
        if (pr.state === 'probe') pr.probeSent = false;
        if (pr.match < this.log.lastIndex()) this.sendAppend(m.from, true);
        break;
      default:
        break;
    }
  }

  private handleAppResp(m: MsgAppResp, pr: Progress): void {
    const log = this.log;
    if (m.reject) {
      let next = m.hintIndex + 1;
      if (m.hintTerm > 0 && m.hintIndex >= log.snapIndex) {
        next = log.findConflictByTerm(m.hintIndex, m.hintTerm).index + 1;
      }
      if (pr.maybeDecrTo(m.index, next)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.sendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === 'probe') pr.becomeReplicate();
    else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) pr.becomeReplicate();
    if (this.maybeCommit()) {
      this.bcastAppend();
    } else if (wasPaused || pr.next <= log.lastIndex()) {
      this.sendAppend(m.from, false);
    }
    if (m.from === this.transferee && pr.match === log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  private sendTimeoutNow(to: NodeId): void {
    this.forfeitedLease = true;
    this.send({ type: 'timeoutNow', to, term: this.term });
  }

  // ---- replication -------------------------------------------------------------------

  private appendEntry(data: T | null): Entry<T> {
    const e: Entry<T> = { term: this.term, index: this.log.lastIndex() + 1, data };
    this.log.append([e]);
    (this.prs.get(this.id) as Progress).maybeUpdate(e.index);
    this.maybeCommit();
    return e;
  }

  private maybeCommit(): boolean {
    const matches: number[] = [];
    for (const pr of this.prs.values()) matches.push(pr.match);
    matches.sort((a, b) => b - a);
    const n = matches[this.quorum - 1];
    if (n <= this.log.committed) return false;
    if (!this.mayCommitByCounting(n)) return false;
    return this.log.commitTo(n);
  }

  private updateLease(): void {
    const acked: number[] = [];
    for (const [id, pr] of this.prs) acked.push(id === this.id ? this.now : pr.ackedTick);
    acked.sort((a, b) => b - a);
    this.leaseUntil = acked[this.quorum - 1] + this.cfg.leaseTicks;
  }

  private bcastAppend(): void {
    for (const p of this.peers) if (p !== this.id) this.sendAppend(p, true);
  }

  private sendAppend(to: NodeId, sendIfEmpty: boolean): void {
    const pr = this.prs.get(to) as Progress;
    if (pr.isPaused()) return;
    const log = this.log;
    const prevIndex = pr.next - 1;
    const prevTerm = log.term(prevIndex);
    if (prevTerm === undefined) {
      // The entries this follower needs were compacted: send the snapshot.
      const snap = log.snapshot;
      if (!snap) throw new Error(`raft: no snapshot to send to ${to} (next ${pr.next})`);
      pr.becomeSnapshot(snap.meta.index, this.now);
      this.send({ type: 'snap', to, term: this.term, snapshot: snap });
      return;
    }
    const entries = log.slice(pr.next, log.lastIndex() + 1, this.cfg.maxEntriesPerMsg);
    if (!entries.length && !sendIfEmpty) return;
    this.send({ type: 'app', to, term: this.term, index: prevIndex, logTerm: prevTerm, entries, commit: log.committed });
    if (pr.state === 'replicate') {
      if (entries.length) pr.next = entries[entries.length - 1].index + 1;
    } else {
      pr.probeSent = true;
    }
  }

  private send(m: DistributiveOmit<Message<T, S>, 'from'>): void {
    (m as Message<T, S>).from = this.id;
    this.msgs.push(m as Message<T, S>);
  }
}

type DistributiveOmit<U, K extends PropertyKey> = U extends unknown ? Omit<U, K> : never;
