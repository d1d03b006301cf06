// Result sets of pgpool's SQL SHOW commands answered by the proxy itself. Pure: the session
// turns { columns, rows } into RowDescription / DataRow messages (all columns are text).
import { packageVersion } from '../version.js';
import type { BackendRegistry } from '../backends/registry.js';

export interface ShowResult {
  columns: string[];
  rows: (string | null)[][];
}

export const POOL_NODES_COLUMNS = [
  'node_id',
  'hostname',
  'port',
  'status',
  'pg_status',
  'lb_weight',
  'role',
  'pg_role',
  'select_cnt',
  'load_balance_node',
  'replication_delay',
  'replication_state',
  'replication_sync_state',
  'last_status_change',
];

const pad = (n: number) => String(n).padStart(2, '0');

/** pgpool prints times as local 'YYYY-MM-DD HH:MM:SS'. */
export function formatStatusTime(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * SHOW POOL_NODES. lb_weight is the node's share of the total weight, printed with six
 * decimals as pgpool does ("0.500000"); replication_delay is in bytes, 0 for the primary and
 * empty while unknown; replication state columns are empty for the primary, as in pgpool.
 */
export function poolNodesResult(registry: BackendRegistry, stats: { selectCount(id: number): number; loadBalanceNode?: number }): ShowResult {
  const nodes = registry.list();
  let total = 0;
  for (const b of nodes) if (b.weight > 0) total += b.weight;
  const rows = nodes.map((b): (string | null)[] => {
    const isPrimary = b.role === 'primary';
    return [
      String(b.id),
      b.host,
      String(b.port),
      b.status,
      b.pgStatus,
      (total > 0 && b.weight > 0 ? b.weight / total : 0).toFixed(6),
      b.role,
      b.pgRole,
      String(stats.selectCount(b.id)),
      stats.loadBalanceNode === b.id ? 'true' : 'false',
      isPrimary ? '0' : b.lagBytes === null ? null : String(b.lagBytes),
      isPrimary ? '' : b.replicationState,
      isPrimary ? '' : b.syncState,
      formatStatusTime(b.lastStatusChange),
    ];
  });
  return { columns: [...POOL_NODES_COLUMNS], rows };
}

/** SHOW POOL_VERSION, as pgpool answers it: one column, "<version> (<name>)". */
export function poolVersionResult(): { columns: ['pool_version']; rows: [[string]] } {
  return { columns: ['pool_version'], rows: [[`${packageVersion()} (pgwatchdog)`]] };
}

/** SHOW WATCHDOG_NODES: one row per watchdog peer, the per-node fields of pgpool's
 * pcp_watchdog_info (and of `pgwatchdog watchdog`). The admin part fills them from the
 * watchdog's facts (src/admin/views.ts watchdogNodes); the proxy only prints them. */
export const WATCHDOG_NODES_COLUMNS = [
  'node_id',
  'node_name',
  'hostname',
  'pgpool_port',
  'watchdog_port',
  'priority',
  'status_name',
  'membership',
  'is_coordinator',
  'delegate_ip',
  'vip_holder',
  'last_seen',
  'is_local',
] as const;

export type WatchdogNode = Record<(typeof WATCHDOG_NODES_COLUMNS)[number], string>;

export function watchdogNodesResult(nodes: readonly WatchdogNode[]): ShowResult {
  return { columns: [...WATCHDOG_NODES_COLUMNS], rows: nodes.map((n) => WATCHDOG_NODES_COLUMNS.map((c) => n[c])) };
}
