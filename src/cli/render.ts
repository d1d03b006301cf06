// Pure text rendering of the admin API's views for the terminal: tables that fit 80 columns
// (the widest flexible column gives way first, truncated with "…"), colour only when asked
// (the CLI asks on a TTY, and not under NO_COLOR).
import type { Progress } from '../admin/actions.js';
import type { BackendView, FailoverStepView, FailoverView, FailoversView, PeersView, StatusView } from '../admin/views.js';

export const WIDTH = 80;

export interface Style {
  colour: boolean;
}

const CODES = { red: 31, green: 32, yellow: 33, blue: 34, grey: 90, bold: 1 } as const;
type Colour = keyof typeof CODES;

export function paint(st: Style, colour: Colour | undefined, s: string): string {
  return st.colour && colour ? `\x1b[${CODES[colour]}m${s}\x1b[0m` : s;
}

/** The colour of a state word: green good, red bad, yellow in between. */
function stateColour(s: string): Colour | undefined {
  if (['up', 'coordinator', 'standalone', 'ok', 'primary', 'yes', 'QUORUM EXIST'].includes(s)) return 'green';
  if (['down', 'lost', 'isolated', 'failed', 'QUORUM ABSENT'].includes(s)) return 'red';
  if (['quarantine', 'waiting', 'candidate', 'joining'].includes(s)) return 'yellow';
  return undefined;
}

export interface Column {
  head: string;
  align?: 'left' | 'right';
  /** May be truncated to fit the width (at least `min` characters). */
  flex?: boolean;
  min?: number;
  /** Colour a cell by its text. */
  colour?: (text: string) => Colour | undefined;
}

function cut(s: string, w: number): string {
  if (s.length <= w) return s;
  return w <= 1 ? s.slice(0, w) : `${s.slice(0, w - 1)}…`;
}

/** A table with two spaces between columns, fitting `width` by shrinking flexible columns. */
export function table(st: Style, cols: Column[], rows: string[][], width = WIDTH): string {
  const widths = cols.map((c, i) => Math.max(c.head.length, ...rows.map((r) => (r[i] ?? '').length)));
  const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (cols.length - 1);
  while (total() > width) {
    let widest = -1;
    cols.forEach((c, i) => {
      if (c.flex && widths[i]! > Math.max(c.min ?? 4, c.head.length) && (widest < 0 || widths[i]! > widths[widest]!)) widest = i;
    });
    if (widest < 0) break;
    widths[widest]!--;
  }
  const line = (cells: string[], head: boolean) =>
    cols
      .map((c, i) => {
        const text = cut(cells[i] ?? '', widths[i]!);
        const padded = c.align === 'right' ? text.padStart(widths[i]!) : text.padEnd(widths[i]!);
        return head ? paint(st, 'bold', padded) : paint(st, c.colour?.(cells[i] ?? ''), padded);
      })
      .join('  ')
      .trimEnd();
  return [line(cols.map((c) => c.head), true), ...rows.map((r) => line(r, false))].join('\n');
}

export function bytes(n: number | null): string {
  if (n === null) return '?';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

export function ago(iso: string | null, now: string): string {
  if (iso === null) return '-';
  const s = Math.max(0, Math.round((Date.parse(now) - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

function lagText(b: BackendView): string {
  if (b.role !== 'standby') return '-';
  return b.lagMs === null ? bytes(b.lagBytes) : `${bytes(b.lagBytes)} ${(b.lagMs / 1000).toFixed(1)}s`;
}

export function backendsTable(st: Style, backends: BackendView[]): string {
  return table(
    st,
    [
      { head: 'ID', align: 'right' },
      { head: 'NAME', flex: true, min: 6 },
      { head: 'ADDRESS', flex: true, min: 9 },
      { head: 'STATUS', colour: stateColour },
      { head: 'ROLE', colour: (s) => (s === 'primary' ? 'blue' : undefined) },
      { head: 'LSN', flex: true, min: 9 },
      { head: 'LAG', align: 'right' },
      { head: 'SYNC', flex: true, min: 5 },
      { head: 'SESS', align: 'right' },
    ],
    backends.map((b) => [String(b.id), b.name, `${b.host}:${b.port}`, b.status, b.role, b.lsn ?? '-', lagText(b), b.syncState || '-', String(b.sessions)]),
  );
}

/** `pgwatchdog nodes`: SHOW POOL_NODES' facts, fitted to the terminal. */
export function nodesTable(st: Style, backends: BackendView[]): string {
  return table(
    st,
    [
      { head: 'ID', align: 'right' },
      { head: 'ADDRESS', flex: true, min: 9 },
      { head: 'STATUS', colour: stateColour },
      { head: 'PG', colour: stateColour },
      { head: 'ROLE', colour: (s) => (s === 'primary' ? 'blue' : undefined) },
      { head: 'LB', align: 'right' },
      { head: 'LAG', align: 'right' },
      { head: 'REPL', flex: true, min: 4 },
      { head: 'SYNC', flex: true, min: 4 },
      { head: 'READS', align: 'right' },
    ],
    backends.map((b) => [
      String(b.id),
      `${b.host}:${b.port}`,
      b.status,
      b.pgStatus,
      b.role,
      b.lbWeight.toFixed(2),
      b.role !== 'standby' ? '-' : bytes(b.lagBytes),
      b.replicationState || '-',
      b.syncState || '-',
      String(b.readsRouted),
    ]),
  );
}

function peersTable(st: Style, s: { peers: PeersView['peers']; now: string }): string {
  return table(
    st,
    [
      { head: 'PEER', flex: true, min: 6 },
      { head: 'STATE', colour: stateColour },
      { head: 'COORD' },
      { head: 'VIP' },
      { head: 'PRIO', align: 'right' },
      { head: 'LAST SEEN' },
    ],
    s.peers.map((p) => [`${p.name}${p.self ? ' *' : ''}`, p.state, p.coordinator ? 'yes' : '-', p.vipHolder ? 'yes' : '-', String(p.priority), p.self ? 'now' : ago(p.lastSeen, s.now)]),
  );
}

/** One failover in one line (without its result text, which `failoversScreen` puts below). */
export function failoverLine(f: FailoverView): string {
  const when = f.finishedAt.slice(11, 19);
  return `#${f.seq} ${when} ${f.kind}${f.switchover ? ' (switchover)' : ''} of ${f.nodes.join(',') || '-'} by ${f.ranBy}${f.resumes > 0 ? ` (resumed ${f.resumes}x)` : ''}, term ${f.term}: ${f.ok ? 'ok' : 'FAILED'} in ${f.durationMs} ms`;
}

/** `pgwatchdog status`: one screen. */
export function statusScreen(st: Style, s: StatusView): string {
  const q = s.quorum;
  const head = [
    `peer ${paint(st, 'bold', s.peer.name)} ${paint(st, stateColour(s.peer.state), s.peer.state)}`,
    `coordinator ${s.coordinator ?? paint(st, 'red', 'none')}`,
    `VIP ${s.vip.address ? `${s.vip.address} on ${s.vip.holder ?? 'nobody'}` : 'none'}`,
    `quorum ${q.alive}/${q.members} ${q.present ? paint(st, 'green', 'ok') : paint(st, 'red', 'ABSENT')}`,
    `term ${s.raft.term}`,
    `commit ${s.raft.commitIndex}`,
  ];
  const f = s.failover;
  const lines = [
    head.slice(0, 4).join('  '),
    [...head.slice(4), `clients ${s.clients.total} (${s.clients.active} active)`, `proxy ${s.peer.proxyListening ? 'accepting' : paint(st, 'red', 'NOT accepting')}`].join('  '),
    '',
    peersTable(st, s),
    '',
    backendsTable(st, s.backends),
    '',
    f.active ? `failover running: #${f.active.seq} ${f.active.kind} of ${f.active.ids.join(',')} (${f.queued} queued)` : f.last ? `last failover: ${cut(failoverLine(f.last), WIDTH - 15)}` : 'no failover yet',
  ];
  return lines.join('\n');
}

/** `pgwatchdog watchdog`: pcp_watchdog_info's cluster section, then its per-node fields. */
export function watchdogScreen(st: Style, p: PeersView): string {
  const i = p.info;
  const kv: [string, string][] = [
    ['Total Nodes', String(i.totalNodes)],
    ['Remote Nodes', String(i.remoteNodes)],
    ['Alive Remote Nodes', String(i.aliveRemoteNodes)],
    ['Nodes required for quorum', String(i.nodesRequiredForQuorum)],
    ['Quorum state', paint(st, stateColour(i.quorumState), i.quorumState)],
    ['Local node escalation', i.localNodeEscalation ? 'YES' : 'NO'],
    ['Leader Node Name', i.leaderNodeName ?? '(none)'],
    ['Leader Host Name', i.leaderHostName ?? '(none)'],
    ['Delegate IP', p.vip.address ?? '(none)'],
    ['VIP holder', p.vip.holder ?? '(none)'],
    ['Raft term / commit index', `${p.raft.term} / ${p.raft.commitIndex}`],
  ];
  const w = Math.max(...kv.map(([k]) => k.length));
  const nodes = table(
    st,
    [
      { head: 'ID', align: 'right' },
      { head: 'NAME', flex: true, min: 6 },
      { head: 'HOST', flex: true, min: 6 },
      { head: 'PORT', align: 'right' },
      { head: 'WD', align: 'right' },
      { head: 'PRIO', align: 'right' },
      { head: 'STATUS', flex: true, min: 6, colour: (s) => (s === 'LEADER' || s === 'STANDALONE' ? 'green' : s === 'LOST' || s === 'IN NETWORK TROUBLE' ? 'red' : undefined) },
      { head: 'MEMBER', flex: true, min: 6 },
      { head: 'VIP' },
    ],
    p.nodes.map((n) => [n.node_id, `${n.node_name}${n.is_local === 'true' ? ' *' : ''}`, n.hostname, n.pgpool_port || '-', n.watchdog_port || '-', n.priority, n.status_name, n.membership, n.vip_holder === 'true' ? 'yes' : '-']),
  );
  return ['Watchdog Cluster Information', ...kv.map(([k, v]) => `${k.padEnd(w)} : ${v}`), '', 'Watchdog Node Information', nodes].join('\n');
}

export function failoversScreen(st: Style, f: FailoversView): string {
  const out: string[] = [
    f.source === 'cluster'
      ? `failover records of the watchdog cluster (as applied at log index ${f.appliedIndex ?? '?'})`
      : 'failovers run by this peer (no watchdog)',
  ];
  if (f.active) out.push(cut(`running: #${f.active.seq} ${f.active.kind} of ${f.active.ids.join(',')} since ${f.active.startedAt} — ${f.active.reason}`, WIDTH));
  for (const q of f.queue) out.push(cut(`queued:  #${q.seq} ${q.kind} of ${q.ids.join(',')} — ${q.reason}`, WIDTH));
  if (f.history.length === 0) out.push('no failover yet');
  for (const h of f.history) {
    out.push(paint(st, h.ok ? undefined : 'red', cut(failoverLine(h), WIDTH)));
    out.push(cut(`  ${h.result}`, WIDTH));
    for (const s of h.steps) out.push(stepLine(st, s, h.ranBy));
  }
  return out.join('\n');
}

/** A step: its outcome (`begun`: no end on record), duration when known, and the peer that ran
 * it when that is not `ranBy` (the failover's runner), with its runs when more than one. */
export function stepLine(st: Style, s: FailoverStepView, ranBy: string = s.peer): string {
  const mark = s.ok === null ? 'begun' : s.ok ? 'ok' : 'FAILED';
  const who = s.peer === ranBy ? '' : ` by ${s.peer} (term ${s.term})`;
  const rest = cut(` ${s.name}${s.backend !== null ? ` [${s.backend}]` : ''}${s.ms === null ? '' : ` ${s.ms} ms`}${who}${s.runs > 1 ? `, ${s.runs} runs` : ''}: ${s.detail}`, WIDTH - 4 - mark.length);
  return `    ${paint(st, s.ok === null ? 'yellow' : s.ok ? 'green' : 'red', mark)}${rest}`;
}

/** One line per progress event of an action (the CLI prints them as they arrive). */
export function progressLine(p: Progress): string {
  const t = p.at.slice(11, 23);
  switch (p.type) {
    case 'queued':
      return `${t} queued${p.seq !== null ? ` as request #${p.seq}` : ''}: ${p.action} backend ${p.backend}`;
    case 'started':
      return `${t} started request #${p.seq}`;
    case 'change':
      return `${t} backend ${p.backend}: ${p.was.status}/${p.was.role} -> ${p.status}/${p.role} (${p.reason})`;
  }
}
