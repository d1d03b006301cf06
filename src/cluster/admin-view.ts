// The admin part's WatchdogView (src/admin/watchdog-view.ts) over the running watchdog: it
// reads the Raft status, the replicated state, the gossiped views and the VIP runner, and
// asks the Raft runtime to transfer leadership. It decides nothing; it only reports.
//
// Who is coordinator, as this peer sees it: itself while it is leader with its lease (the
// state the watchdog gossips as LEADER); otherwise the Raft leader it is in contact with
// (heard from within the lease). A peer cut off, or in an election, names none.
// The VIP holder: the claim on record in the replicated state (vip.ts: a peer escalates
// only once its claim has committed), unless the claimant is lost or shut down.
// The failovers: the records of the replicated state, not this peer's engine history (only
// the coordinator's engine runs them).
import type { Config } from '../config/index.js';
import type { CoordinatorRoute, PeerState as AdminPeerState, ReplicatedFailovers, TransferOutcome, WatchdogFacts, WatchdogPeerFacts, WatchdogView } from '../admin/watchdog-view.js';
import type { PeerState } from './view.js';
import { peerAdminUrl, type Watchdog } from './watchdog.js';

const ADMIN_STATE: Record<PeerState, AdminPeerState> = {
  LEADER: 'coordinator',
  STANDBY: 'standby',
  JOINING: 'joining',
  LOST: 'lost',
  SHUTDOWN: 'shutdown',
  'NETWORK ISOLATION': 'isolated',
};

export interface ClusterAdminViewOptions {
  config: Config;
  watchdog: Watchdog;
  /** This peer's proxy port once it listens. */
  proxyPort: () => number | null;
  /** How long `transfer` waits for the new coordinator (default: two election timeouts). */
  transferTimeoutMs?: number;
}

export function clusterAdminView(o: ClusterAdminViewOptions): WatchdogView {
  const wd = o.config.watchdog;
  const w = o.watchdog;
  const leaseMs = (wd.election_timeout_ticks - 1) * wd.tick_ms;
  const majority = Math.floor(wd.peers.length / 2) + 1;
  const adminUrl = (p: Config['watchdog']['peers'][number]) => peerAdminUrl(o.config, p);

  const coordinatorOf = (): string | null => {
    const st = w.status();
    if (st.peerState === 'LEADER') return w.self;
    const r = st.raft;
    if (r.leader === null || r.leader === w.self || r.sinceContactMs === null || r.sinceContactMs > leaseMs) return null;
    return r.leader;
  };

  const facts = (): WatchdogFacts => {
    const st = w.status();
    const views = w.gossip.views();
    const now = Date.now();
    const coordinator = coordinatorOf();
    const stateOf = (name: string): PeerState => {
      if (name === w.self) return st.peerState;
      const v = views.get(name);
      if (v === undefined) return 'LOST';
      if (v.view.status.state === 'SHUTDOWN') return 'SHUTDOWN';
      return v.ageMs <= w.maxViewAgeMs ? v.view.status.state : 'LOST';
    };
    const vipAddress = wd.vip?.address ?? null;
    // The claim on record (a peer escalates only once its claim has committed), unless this
    // peer knows the claimant is gone (killed holders cannot record a release).
    let holder: string | null = vipAddress === null ? null : (st.state.vipHolder?.peer ?? null);
    if (holder !== null && (stateOf(holder) === 'LOST' || stateOf(holder) === 'SHUTDOWN')) holder = null;
    const peers: WatchdogPeerFacts[] = wd.peers.map((p) => {
      const self = p.name === w.self;
      const v = views.get(p.name);
      return {
        name: p.name,
        host: p.host,
        // Other peers' proxy ports and admin URLs as they gossip them (their own word).
        proxyPort: self ? o.proxyPort() : (v?.view.status.proxy?.port ?? null),
        watchdogPort: p.port,
        adminUrl: (self ? null : v?.view.status.adminUrl) ?? adminUrl(p),
        priority: p.priority,
        state: ADMIN_STATE[stateOf(p.name)],
        self,
        coordinator: p.name === coordinator,
        vipHolder: p.name === holder,
        lastSeen: self || v === undefined ? null : new Date(now - v.ageMs).toISOString(),
      };
    });
    const alive = peers.filter((p) => p.self || (p.state !== 'lost' && p.state !== 'shutdown')).length;
    return {
      mode: 'cluster',
      self: w.self,
      state: ADMIN_STATE[st.peerState],
      coordinator,
      vip: { address: vipAddress, holder },
      quorum: { present: alive >= majority, members: wd.peers.length, alive, required: majority },
      raft: { term: st.raft.term, commitIndex: st.raft.commit, appliedIndex: st.raft.applied, leader: st.raft.leader },
      escalations: w.vip?.escalations ?? 0,
      deEscalations: w.vip?.deEscalations ?? 0,
      peers,
    };
  };

  const coordinatorAdmin = (): CoordinatorRoute => {
    const c = coordinatorOf();
    if (c === w.self) return { kind: 'self' };
    if (c === null) {
      const st = w.status();
      return { kind: 'none', reason: `no coordinator known to ${w.self} (${st.peerState}, Raft ${st.raft.role} in term ${st.raft.term}): an election may be under way or this peer is cut off` };
    }
    const p = wd.peers.find((x) => x.name === c);
    if (!p) return { kind: 'none', reason: `the Raft leader ${c} is not one of watchdog.peers` };
    return { kind: 'forward', peer: c, url: adminUrl(p) };
  };

  const transfer = async (to: string): Promise<TransferOutcome> => {
    if (!wd.peers.some((p) => p.name === to)) return { ok: false, summary: `"${to}" is not one of watchdog.peers (${wd.peers.map((p) => p.name).join(', ')})` };
    if (to === w.self && coordinatorOf() === w.self) return { ok: true, summary: `${to} is already the coordinator` };
    if (!w.runtime.transfer(to)) return { ok: false, summary: `${w.self} cannot hand leadership to ${to}: it is not the Raft leader (leader: ${w.status().raft.leader ?? 'none'})` };
    const timeoutMs = o.transferTimeoutMs ?? 2 * wd.election_timeout_ticks * wd.tick_ms;
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const r = w.status().raft;
      if (r.leader === to && r.role !== 'leader') return { ok: true, summary: `leadership handed from ${w.self} to ${to} in term ${r.term}` };
      await new Promise((res) => setTimeout(res, wd.tick_ms));
    }
    const r = w.status().raft;
    return { ok: false, summary: `${to} did not take leadership within ${timeoutMs} ms (leader now: ${r.leader ?? 'none'}, term ${r.term}); it may be behind or unreachable` };
  };

  // Listeners hear of a change in what an operator sees (states, coordinator, VIP, term),
  // not of every gossip round or Raft heartbeat.
  const subscribe = (fn: () => void): (() => void) => {
    let last = '';
    const check = () => {
      const f = facts();
      // A record started or finished: its seq and whether it has finished.
      const records = w.state.state.failovers.map((r) => `${r.seq}${r.finished ? '+' : ''}`);
      const key = JSON.stringify([f.state, f.coordinator, f.vip.holder, f.raft.term, f.raft.leader, f.quorum.alive, f.peers.map((p) => p.state), records]);
      if (key === last) return;
      last = key;
      fn();
    };
    w.runtime.on('status', check);
    w.state.on('change', check);
    w.gossip.on('view', check);
    // A lost peer sends nothing: only time tells.
    const timer = setInterval(check, Math.max(250, w.maxViewAgeMs / 2));
    timer.unref();
    return () => {
      clearInterval(timer);
      w.runtime.off('status', check);
      w.state.off('change', check);
      w.gossip.off('view', check);
    };
  };

  // The replicated records as applied here: every peer that applied the same index answers
  // the same, whichever of them ran the failover.
  const failoverRecords = (): ReplicatedFailovers => {
    const st = w.state.state;
    return { appliedIndex: st.index, records: st.failovers };
  };

  return { facts, failoverRecords, coordinatorAdmin, transfer, subscribe };
}
