// A peer's local view, as it gossips it to the others: what its own health checks see of
// every backend, and its own status. Views are observations, never decisions: the
// coordinator tallies them (tally.ts) and only a committed Raft entry changes the
// replicated cluster state. The transport checks every incoming view with `parsePeerView`
// (by hand, check.ts: views arrive every second from every peer), so a peer's bad or hostile
// message cannot reach the tally.
import { arrayOf, isBool, isCount, isInt, isString, nullable, objectOf, oneOf, optional, type FieldCheck } from './check.js';

/** Peer states shown to users, named as pgpool names them. */
export const PEER_STATES = ['LEADER', 'STANDBY', 'JOINING', 'LOST', 'SHUTDOWN', 'NETWORK ISOLATION'] as const;
export type PeerState = (typeof PEER_STATES)[number];

/** Bounds that keep one message small; a real cluster is far below them. */
export const VIEW_LIMITS = { backends: 256, name: 128, version: 64 } as const;

export interface BackendView {
  /** Index into the configured `backends` list. */
  id: number;
  /** This peer's last health-check result (the registry's pgStatus). */
  health: 'up' | 'down' | 'unknown';
  /** The role the server itself reports (pg_is_in_recovery), the registry's pgRole. */
  role: 'primary' | 'standby' | 'unknown';
  /** Current LSN on a primary, last replayed on a standby, in PostgreSQL's text form ("16/B374D848"); null when unknown. */
  lsn: string | null;
  /** Since when (ms since the epoch, the sender's clock) `health` has had its value. */
  since: number;
}

export interface PeerStatus {
  /** The proxy accepts clients. */
  proxyUp: boolean;
  /** Client sessions open on this peer's proxy. */
  sessions: number;
  /** pgwatchdog version, to spot mixed-version clusters. */
  version: string;
  /** Leadership goes to the highest priority peer that is up to date. */
  priority: number;
  state: PeerState;
  /** Where this peer's proxy accepts clients (a wildcard listen address is given as the
   * peer's watchdog host), null until it listens: peers forward CancelRequests there. */
  proxy?: { host: string; port: number } | null;
  /** This peer's admin API base URL (watchdog.peers[].admin_url, or its admin listener). */
  adminUrl?: string | null;
}

export interface PeerView {
  /** The sender's `watchdog.name`. */
  peer: string;
  /** Grows by one with every view this peer sends (from 0 at each start, see `startedAt`). */
  seq: number;
  /** When this peer process started (ms since the epoch): a restart resets `seq`, so a
   * receiver orders views by (startedAt, seq) and drops an older one that arrives late. */
  startedAt: number;
  backends: BackendView[];
  status: PeerStatus;
}

// PostgreSQL's text form of an LSN, as backends/lsn.ts formats and parses it.
const LSN = /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/;

const backendView = objectOf({
  id: isInt(0, VIEW_LIMITS.backends - 1),
  health: oneOf(['up', 'down', 'unknown']),
  role: oneOf(['primary', 'standby', 'unknown']),
  lsn: nullable(isString(3, 17, LSN, 'an LSN like "16/B374D848"')),
  since: isCount,
});

const statusFields: Record<keyof PeerStatus, FieldCheck> = {
  proxyUp: isBool,
  sessions: isCount,
  version: isString(1, VIEW_LIMITS.version),
  priority: isInt(),
  state: oneOf(PEER_STATES),
  proxy: optional(nullable(objectOf({ host: isString(1, 255), port: isInt(1, 65535) }))),
  adminUrl: optional(nullable(isString(1, 1024))),
};

const peerView = objectOf({
  peer: isString(1, VIEW_LIMITS.name),
  seq: isCount,
  startedAt: isCount,
  backends: arrayOf(VIEW_LIMITS.backends, backendView),
  // Unknown status fields are allowed and dropped, not the whole view: peers of two versions
  // keep tallying each other's views during a rolling upgrade (a newer peer may add one).
  status: objectOf(statusFields, 'allow'),
});

/** A checked view (the status without fields this version does not know), or the first problem as "path: what" (paths from `path`). */
export function parsePeerView(v: unknown, path = ''): { view: PeerView } | { problem: string } {
  const problem = peerView(v, path);
  if (problem !== null) return { problem };
  const view = v as PeerView;
  const st = view.status as unknown as Record<string, unknown>;
  let known = true;
  for (const k in st) if (!Object.hasOwn(statusFields, k)) known = false;
  if (known) return { view };
  const status: Record<string, unknown> = {};
  for (const k in statusFields) if (k in st) status[k] = st[k];
  return { view: { ...view, status: status as unknown as PeerStatus } };
}

/** True when `next` supersedes `prev` from the same peer (newer process, or same process and higher seq). */
export function isNewerView(prev: PeerView | undefined, next: PeerView): boolean {
  if (prev === undefined) return true;
  if (next.startedAt !== prev.startedAt) return next.startedAt > prev.startedAt;
  return next.seq > prev.seq;
}

/** A view as the receiver holds it: the view, and how long ago (ms, receiver's clock) it arrived. */
export interface AgedView {
  view: PeerView;
  ageMs: number;
}
