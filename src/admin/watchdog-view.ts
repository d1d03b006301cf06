// WatchdogView: the one narrow door through which the admin API, the CLI's views, the
// dashboard, /metrics and SHOW WATCHDOG_NODES learn what the watchdog knows and ask it to act.
//
// Why a port of its own: the watchdog (src/cluster) is built in parallel with the admin part.
// Everything in src/admin reads watchdog facts only through this interface, so the integrator
// plugs the real watchdog in by writing ONE adapter (an object satisfying `WatchdogView`) and
// passing it to `Peer` — nothing else in src/admin changes. Until then `singlePeerView()`
// answers with the facts of a peer that runs alone: it is its own coordinator, there is no
// Raft (term and commit 0), no VIP unless configured, and quorum is trivially present.
//
// Contract for an implementation (the real watchdog adapter must keep it):
// - `facts()` is synchronous, cheap (no I/O; read cached state) and returns plain JSON data
//   (no bigint, no Date): it is called on every API request, every /metrics scrape and once
//   per second for the live dashboard, in the proxy's process.
// - `peers` lists every configured peer, this one included (`self: true`), in config order.
// - `coordinatorAdmin()` says where mutating admin calls go: `self` (this peer is the
//   coordinator: run them here), `forward` (the coordinator's admin API base URL: the admin
//   server forwards the call there with the caller's token and answers with its result), or
//   `none` (no coordinator known now — e.g. an election or no quorum; answered 503 with the
//   reason).
// - `transfer(to)` hands the coordinator role to peer `to`; only called on the coordinator
//   (calls elsewhere are forwarded first). Resolves with the outcome, rejects only on a bug.
// - `subscribe(fn)` calls fn whenever a fact changes (state, coordinator, VIP, quorum, term,
//   a failover record started or finished); the dashboard then refreshes at once instead of
//   at its next tick. May never call.
// - `failoverRecords()` returns the failover records of the replicated cluster state as this
//   peer has applied them (cheap: the state as it stands, not a copy), or undefined when there
//   is no replicated state (a peer without a watchdog: its own engine's history is shown).

import type { FailoverRecord } from '../cluster/state.js';

/** A peer's watchdog state. Named as an operator reads them; `statusName` maps them to
 * pgpool's pcp_watchdog_info names. */
export type PeerState =
  /** Raft leader holding a valid lease: runs failovers, holds the VIP. */
  | 'coordinator'
  /** Follows the coordinator. */
  | 'standby'
  /** Electing (Raft candidate or pre-candidate). */
  | 'candidate'
  /** Started, not yet in touch with a coordinator. */
  | 'joining'
  /** This peer cannot reach a majority. */
  | 'isolated'
  /** Seen from here: not heard from within the election timeout. */
  | 'lost'
  /** Stopped cleanly (told the others). */
  | 'shutdown'
  /** No watchdog configured: this peer decides alone. */
  | 'standalone';

export interface WatchdogPeerFacts {
  name: string;
  /** Host of the peer (watchdog.peers[].host; for a standalone peer the proxy's host). */
  host: string;
  /** The peer's proxy port (pgpool's "Pgpool port"); null when unknown. */
  proxyPort: number | null;
  /** The peer's watchdog port; null without a watchdog. */
  watchdogPort: number | null;
  /** The peer's admin API base URL (watchdog.peers[].admin_url), null when unknown. */
  adminUrl: string | null;
  priority: number;
  state: PeerState;
  /** Is this the peer answering? */
  self: boolean;
  coordinator: boolean;
  vipHolder: boolean;
  /** ISO time this peer last heard from it; null for itself and for peers never heard from. */
  lastSeen: string | null;
}

export interface WatchdogFacts {
  /** 'standalone': no watchdog peers configured; 'cluster': a watchdog runs. */
  mode: 'standalone' | 'cluster';
  self: string;
  state: PeerState;
  /** Name of the coordinator, null while none is known. */
  coordinator: string | null;
  vip: { address: string | null; holder: string | null };
  quorum: { present: boolean; members: number; alive: number; required: number };
  raft: { term: number; commitIndex: number; appliedIndex: number; leader: string | null };
  /** VIP escalations and de-escalations this peer ran since it started. */
  escalations: number;
  deEscalations: number;
  peers: WatchdogPeerFacts[];
}

export interface TransferOutcome {
  ok: boolean;
  /** What happened, or why not, in one line. */
  summary: string;
}

export type CoordinatorRoute = { kind: 'self' } | { kind: 'forward'; peer: string; url: string } | { kind: 'none'; reason: string };

/** The replicated failover records, and the log index they reflect: two peers that applied
 * the same index hold the same records. */
export interface ReplicatedFailovers {
  appliedIndex: number;
  records: readonly FailoverRecord[];
}

export interface WatchdogView {
  facts(): WatchdogFacts;
  /** Absent (or undefined) without a replicated state. */
  failoverRecords?(): ReplicatedFailovers | undefined;
  coordinatorAdmin(): CoordinatorRoute;
  transfer(to: string): Promise<TransferOutcome>;
  subscribe(fn: () => void): () => void;
}

/** pgpool's status names (pcp_watchdog_info "Status Name") for our states. */
export function statusName(s: PeerState): string {
  switch (s) {
    case 'coordinator':
      return 'LEADER';
    case 'standby':
      return 'STANDBY';
    case 'candidate':
      return 'STANDING FOR LEADER';
    case 'joining':
      return 'JOINING';
    case 'isolated':
      return 'IN NETWORK TROUBLE';
    case 'lost':
      return 'LOST';
    case 'shutdown':
      return 'SHUTDOWN';
    case 'standalone':
      return 'STANDALONE';
  }
}

/** The facts of a peer that runs without a watchdog: alone, and so its own coordinator. */
export function singlePeerView(opts: { name: string; host: string; proxyPort: () => number | null; vipAddress?: string | null }): WatchdogView {
  const vip = opts.vipAddress ?? null;
  return {
    facts: () => ({
      mode: 'standalone',
      self: opts.name,
      state: 'standalone',
      coordinator: opts.name,
      vip: { address: vip, holder: null },
      quorum: { present: true, members: 1, alive: 1, required: 1 },
      raft: { term: 0, commitIndex: 0, appliedIndex: 0, leader: null },
      escalations: 0,
      deEscalations: 0,
      peers: [
        {
          name: opts.name,
          host: opts.host,
          proxyPort: opts.proxyPort(),
          watchdogPort: null,
          adminUrl: null,
          priority: 0,
          state: 'standalone',
          self: true,
          coordinator: true,
          vipHolder: false,
          lastSeen: null,
        },
      ],
    }),
    coordinatorAdmin: () => ({ kind: 'self' }),
    transfer: (to) =>
      Promise.resolve({ ok: false, summary: `no watchdog: peer ${opts.name} runs alone (watchdog.peers is empty), there is no coordinator role to hand to "${to}"` }),
    subscribe: () => () => undefined,
  };
}
