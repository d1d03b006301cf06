// TEMPORARY until balance.ts / show.ts land: minimal versions with the agreed signatures.
import type { BackendRegistry } from '../backends/registry.js';
export function chooseLoadBalanceNode(c: { id: number; weight: number }[], random: () => number): number | undefined {
  const total = c.reduce((a, b) => a + b.weight, 0);
  if (total <= 0) return c[0]?.id;
  let x = random() * total;
  for (const n of c) {
    if (x < n.weight) return n.id;
    x -= n.weight;
  }
  return c[c.length - 1]?.id;
}
export function poolNodesResult(registry: BackendRegistry, stats: { selectCount(id: number): number; loadBalanceNode?: number | undefined }): { columns: string[]; rows: (string | null)[][] } {
  return {
    columns: ['node_id', 'hostname', 'port', 'status', 'pg_status', 'lb_weight', 'role', 'pg_role', 'select_cnt', 'load_balance_node', 'replication_delay', 'replication_state', 'replication_sync_state', 'last_status_change'],
    rows: registry.list().map((b) => [String(b.id), b.host, String(b.port), b.status, b.pgStatus, String(b.weight), b.role, b.pgRole, String(stats.selectCount(b.id)), String(stats.loadBalanceNode === b.id), String(b.lagBytes ?? 0), b.replicationState, b.syncState, b.lastStatusChange.toISOString()]),
  };
}
export function poolVersionResult(): { columns: string[]; rows: (string | null)[][] } {
  return { columns: ['pool_version'], rows: [['pgwatchdog']] };
}
