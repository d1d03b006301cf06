// The backend registry: one record per configured PostgreSQL backend, holding what this
// peer knows and has decided about it. Health checks and the replication monitor write
// observations (pg_*), the failover engine (and later the replicated cluster state)
// writes decisions (status, role); the proxy only reads, to route.
import { EventEmitter } from 'node:events';
import type { Config } from '../config/index.js';

/** pgpool's node states. `up`: routable; `down`: detached; `quarantine`: detached locally
 * without consensus, no command run; `waiting`: attached, not yet checked; `unused`: never
 * attached. */
export type BackendStatus = 'up' | 'down' | 'quarantine' | 'waiting' | 'unused';
export type BackendRole = 'primary' | 'standby' | 'unknown';

export interface BackendState {
  readonly id: number;
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly weight: number;
  readonly dataDir: string;
  readonly priority: number;
  readonly failoverAllowed: boolean;
  /** Decided state (pgpool's `status`). */
  status: BackendStatus;
  /** Decided role (pgpool's `role`). */
  role: BackendRole;
  /** Last health-check result (pgpool's `pg_status`). */
  pgStatus: 'up' | 'down' | 'unknown';
  /** Role the server itself reported (pgpool's `pg_role`). */
  pgRole: BackendRole;
  /** WAL position: current LSN on a primary, last replayed LSN on a standby. */
  lsn: bigint | null;
  /** Last received LSN on a standby. */
  receiveLsn: bigint | null;
  /** Primary: WAL insert position (pg_current_wal_insert_lsn), which covers every commit that
   * returned before the sample, asynchronous ones (synchronous_commit off) included; null on a
   * standby or when unknown. */
  insertLsn: bigint | null;
  /** When the replication monitor sent the query behind `lsn`/`insertLsn` (mono-clock.ts ms;
   * the query ran on the server after this instant), null when there is no sample. Read on
   * demand: it moves with every sample, so it is set by `sampled()`, never by a patch, and on
   * its own is no 'change' (an idle peer would otherwise emit one per sample). */
  sampledAt: number | null;
  /** Replay lag behind the primary in bytes (standbys), null when unknown. */
  lagBytes: number | null;
  /** Replay lag in milliseconds (standbys), null when unknown. */
  lagMs: number | null;
  /** From the primary's pg_stat_replication: e.g. "streaming". */
  replicationState: string;
  /** From the primary's pg_stat_replication: "async", "sync", "quorum", "potential". */
  syncState: string;
  lastStatusChange: Date;
}

export type BackendPatch = Partial<Omit<BackendState, 'id' | 'name' | 'host' | 'port' | 'weight' | 'dataDir' | 'priority' | 'failoverAllowed' | 'sampledAt'>>;

export interface BackendChange {
  id: number;
  before: Readonly<BackendState>;
  after: Readonly<BackendState>;
  reason: string;
}

/**
 * Gates on this peer's routing, set by whoever owns the reason (the watchdog's interlock and
 * isolation rules; the failover engine while it fails over in single-peer mode). They are not
 * backend states: SHOW POOL_NODES and the failover engine keep seeing the decided status.
 *   - `held`: a statement that needs one of these backends, outside a transaction, waits until
 *     the hold is lifted or `untilMs` (epoch ms) passes, instead of failing.
 *   - `refuseWrites`: non-null, this peer answers writes with an error that says this reason
 *     (an isolated peer must not write to a possibly deposed primary); reads keep going.
 */
export interface RoutingGates {
  held: readonly { id: number; reason: string; untilMs: number }[];
  refuseWrites: string | null;
}

/** The one lag rule: a standby takes reads while up and (when its lag is known) within maxLagBytes. */
function readable(b: BackendState, maxLagBytes: number): boolean {
  return b.status === 'up' && b.role === 'standby' && (b.lagBytes === null || b.lagBytes <= maxLagBytes);
}

export const OPEN_GATES: RoutingGates = Object.freeze({ held: Object.freeze([]) as readonly never[], refuseWrites: null });

export class BackendRegistry extends EventEmitter<{ change: [BackendChange]; gates: [RoutingGates, string]; sampled: [number, number] }> {
  private readonly backends: BackendState[];
  private currentGates: RoutingGates = OPEN_GATES;

  constructor(cfg: Pick<Config, 'backends'>) {
    super();
    this.backends = cfg.backends.map((b, id) => ({
      id,
      name: b.name ?? `${b.host}:${b.port}`,
      host: b.host,
      port: b.port,
      weight: b.weight,
      dataDir: b.data_dir,
      priority: b.priority,
      failoverAllowed: b.failover === 'allow',
      status: 'waiting',
      role: 'unknown',
      pgStatus: 'unknown',
      pgRole: 'unknown',
      lsn: null,
      receiveLsn: null,
      insertLsn: null,
      sampledAt: null,
      lagBytes: null,
      lagMs: null,
      replicationState: '',
      syncState: '',
      lastStatusChange: new Date(),
    }));
  }

  get size(): number {
    return this.backends.length;
  }

  list(): readonly Readonly<BackendState>[] {
    return this.backends;
  }

  get(id: number): Readonly<BackendState> {
    const b = this.backends[id];
    if (!b) throw new RangeError(`no backend ${id}: configured backends are 0..${this.backends.length - 1}`);
    return b;
  }

  /** The routable primary, if one is known. */
  primary(): Readonly<BackendState> | undefined {
    return this.backends.find((b) => b.status === 'up' && b.role === 'primary');
  }

  /** Standbys that may take reads: up, and (when lag is known) within maxLagBytes. */
  readableStandbys(maxLagBytes: number): Readonly<BackendState>[] {
    return this.backends.filter((b) => readable(b, maxLagBytes));
  }

  /** Whether standby `id` may take reads now (the rule of readableStandbys, for one backend). */
  isReadableStandby(id: number, maxLagBytes: number): boolean {
    const b = this.backends[id];
    return b !== undefined && readable(b, maxLagBytes);
  }

  /** The routing gates in force (OPEN_GATES when none). */
  gates(): RoutingGates {
    return this.currentGates;
  }

  /** Replaces the routing gates; emits 'gates' with the reason only if they differ. */
  setGates(g: RoutingGates, reason: string): void {
    if (JSON.stringify(g) === JSON.stringify(this.currentGates)) return;
    this.currentGates = g;
    this.emit('gates', g, reason);
  }

  /** A reloaded load-balancing weight (config-derived, so not part of BackendPatch). */
  setWeight(id: number, weight: number): void {
    const b = this.backends[id];
    if (!b) throw new RangeError(`no backend ${id}: configured backends are 0..${this.backends.length - 1}`);
    this.backends[id] = { ...b, weight };
  }

  /**
   * Records when the sample behind `lsn`/`insertLsn` was sent (call it after the update() with
   * that sample's values, so the time never runs ahead of the positions it covers). Emits
   * 'sampled' (id, sentAt), not 'change': only a process that mirrors the field elsewhere (the
   * workers' supervisor, while a worker's session waits on a sample) listens.
   */
  sampled(id: number, sentAt: number): void {
    const b = this.backends[id];
    if (!b) throw new RangeError(`no backend ${id}: configured backends are 0..${this.backends.length - 1}`);
    if (b.sampledAt === sentAt) return;
    b.sampledAt = sentAt;
    this.emit('sampled', id, sentAt);
  }

  /** Applies a patch; emits 'change' (with the reason, for the log) only if something differs. */
  update(id: number, patch: BackendPatch, reason: string): void {
    const b = this.backends[id];
    if (!b) throw new RangeError(`no backend ${id}: configured backends are 0..${this.backends.length - 1}`);
    let changed = false;
    for (const [k, v] of Object.entries(patch) as [keyof BackendPatch, unknown][]) {
      if (b[k] !== v) {
        changed = true;
        break;
      }
    }
    if (!changed) return;
    const before = { ...b };
    Object.assign(b, patch);
    if ((patch.status !== undefined && patch.status !== before.status) || (patch.role !== undefined && patch.role !== before.role)) {
      b.lastStatusChange = new Date();
    }
    this.emit('change', { id, before, after: { ...b }, reason });
  }
}
