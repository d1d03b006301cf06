// A peer's local view, as it gossips it to the others: what its own health checks see of
// every backend, and its own status. Views are observations, never decisions: the
// coordinator tallies them (tally.ts) and only a committed Raft entry changes the
// replicated cluster state. The transport validates every incoming view with
// `peerViewSchema`, so a peer's bad or hostile message cannot reach the tally.
import { z } from 'zod';

/** Peer states shown to users, named as pgpool names them. */
export const PEER_STATES = ['LEADER', 'STANDBY', 'JOINING', 'LOST', 'SHUTDOWN', 'NETWORK ISOLATION'] as const;
export type PeerState = (typeof PEER_STATES)[number];

/** Bounds that keep one message small; a real cluster is far below them. */
export const VIEW_LIMITS = { backends: 256, name: 128, version: 64 } as const;

// PostgreSQL's text form of an LSN ("16/B374D848"), as backends/lsn.ts formats and parses it.
const lsnText = z.string().regex(/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/, 'an LSN like "16/B374D848"');

export const backendViewSchema = z
  .object({
    /** Index into the configured `backends` list. */
    id: z.number().int().min(0).max(VIEW_LIMITS.backends - 1),
    /** This peer's last health-check result (the registry's pgStatus). */
    health: z.enum(['up', 'down', 'unknown']),
    /** The role the server itself reports (pg_is_in_recovery), the registry's pgRole. */
    role: z.enum(['primary', 'standby', 'unknown']),
    /** Current LSN on a primary, last replayed on a standby; null when unknown. */
    lsn: lsnText.nullable(),
    /** Since when (ms since the epoch, the sender's clock) `health` has had its value. */
    since: z.number().int().min(0),
  })
  .strict();

export const peerStatusSchema = z
  .object({
    /** The proxy accepts clients. */
    proxyUp: z.boolean(),
    /** Client sessions open on this peer's proxy. */
    sessions: z.number().int().min(0),
    /** pgwatchdog version, to spot mixed-version clusters. */
    version: z.string().min(1).max(VIEW_LIMITS.version),
    /** Leadership goes to the highest priority peer that is up to date. */
    priority: z.number().int(),
    state: z.enum(PEER_STATES),
    /** Where this peer's proxy accepts clients (a wildcard listen address is given as the
     * peer's watchdog host), null until it listens: peers forward CancelRequests there. */
    proxy: z.object({ host: z.string().min(1).max(255), port: z.number().int().min(1).max(65535) }).strict().nullable().optional(),
    /** This peer's admin API base URL (watchdog.peers[].admin_url, or its admin listener). */
    adminUrl: z.string().min(1).max(1024).nullable().optional(),
  })
  // Not strict: a field a newer peer adds is dropped here, not the whole view, so peers of
  // two versions keep tallying each other's views during a rolling upgrade.
  .strip();

export const peerViewSchema = z
  .object({
    /** The sender's `watchdog.name`. */
    peer: z.string().min(1).max(VIEW_LIMITS.name),
    /** Grows by one with every view this peer sends (from 0 at each start, see `startedAt`). */
    seq: z.number().int().min(0),
    /** When this peer process started (ms since the epoch): a restart resets `seq`, so a
     * receiver orders views by (startedAt, seq) and drops an older one that arrives late. */
    startedAt: z.number().int().min(0),
    backends: z.array(backendViewSchema).max(VIEW_LIMITS.backends),
    status: peerStatusSchema,
  })
  .strict();

export type BackendView = z.output<typeof backendViewSchema>;
export type PeerStatus = z.output<typeof peerStatusSchema>;
export type PeerView = z.output<typeof peerViewSchema>;

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
