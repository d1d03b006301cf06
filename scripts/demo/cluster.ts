// The demo's cluster: a PostgreSQL primary with two streaming standbys (the test bed) and three
// pgwatchdog peers on loopback configured as one watchdog cluster (test/support/watchdog-bed.ts:
// `watchdog.peers`, a Raft data_dir per peer, an auth key and an admin token made for this run).
// Everything lives under the run's directory. The VIP is simulated: no address may be added on
// loopback outside a network namespace, so the escalation command writes a marker file
// (DIR/…/vip/PEER) after removing the other peers' markers, as scripts/escalation.sh removes the
// address from the other hosts before adding it.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { StatusView } from '../../src/admin/views.js';
import { run } from '../../src/cli/main.js';
import { createCluster, SUPERUSER, SUPERUSER_PASSWORD } from '../../test/support/pg.js';
import type { PeerProcess } from '../../test/support/peer.js';
import { bed, NAMES, type Bed, type Name } from '../../test/support/watchdog-bed.js';

export type Say = (s: string) => void;

export interface DemoCluster {
  bed: Bed;
  token: string;
  conn(p: PeerProcess): string;
  status(name: Name): Promise<StatusView>;
  /** Every peer's status, or the error that kept one from answering. */
  statuses(): Promise<Map<Name, StatusView | Error>>;
  /** Commits one row through the peer; resolves to the port of the server that took it. */
  write(p: PeerProcess): Promise<number>;
  teardown(): Promise<void>;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until<T>(timeoutMs: number, fn: () => Promise<T | undefined>, everyMs = 100): Promise<T | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() >= end) return undefined;
    await sleep(everyMs);
  }
}

export async function startDemoCluster(root: string, say: Say): Promise<DemoCluster> {
  say('starting a PostgreSQL primary and two streaming standbys …');
  const cluster = await createCluster({ standbys: 2, parentDir: root });
  say(`PostgreSQL up: primary :${cluster.primary.port} (backend 0), standbys :${cluster.standbys.map((s) => s.port).join(', :')} (backends 1, 2)`);
  const token = randomBytes(12).toString('base64url');
  say(`starting three peers (${NAMES.join(', ')}) as one watchdog cluster: auth key and admin token made for this run, Raft logs under ${root}`);
  const b = await bed({
    cluster,
    parentDir: root,
    authKey: randomBytes(24).toString('base64url'),
    adminToken: token,
    faults: false,
    // A first start compiles the TypeScript sources (tsx caches them for the next ones): slow on a busy machine.
    readyTimeoutMs: 90_000,
    // The product's default health checks (the test bed's are tighter), so the scenarios'
    // timings are those of a default deployment; reads balanced over the standbys.
    peer: { proxy: { load_balance: true }, health_check: { period_ms: 1000, timeout_ms: 2000, connect_timeout_ms: 2000, max_retries: 1, retry_delay_ms: 200 } },
    onStart: (name, p) => say(`peer ${name} ready: proxy 127.0.0.1:${p.port}, admin http://127.0.0.1:${p.adminPort}/`),
  });
  const conn = (p: PeerProcess) => `postgresql://${SUPERUSER}:${SUPERUSER_PASSWORD}@127.0.0.1:${p.port}/postgres`;
  const status = async (name: Name): Promise<StatusView> => {
    const p = b.peers.get(name)!;
    const r = await fetch(`http://127.0.0.1:${p.adminPort}/v1/status`, { signal: AbortSignal.timeout(2000) });
    if (!r.ok) throw new Error(`${name}: /v1/status answered HTTP ${r.status}`);
    return (await r.json()) as StatusView;
  };
  const write = async (p: PeerProcess): Promise<number> => {
    const c = new pg.Client({ connectionString: conn(p), connectionTimeoutMillis: 2000 });
    c.on('error', () => undefined);
    await c.connect();
    try {
      await c.query('CREATE TABLE IF NOT EXISTS demo_writes (id serial PRIMARY KEY, via text, at timestamptz DEFAULT now())');
      const r = await c.query<{ port: number }>('INSERT INTO demo_writes (via) VALUES ($1) RETURNING inet_server_port() AS port', [String(p.port)]);
      return r.rows[0]!.port;
    } finally {
      await c.end().catch(() => undefined);
    }
  };
  return {
    bed: b,
    token,
    conn,
    status,
    async statuses() {
      const got = await Promise.all(NAMES.map((n) => status(n).catch((e: Error) => e)));
      return new Map(NAMES.map((n, i) => [n, got[i]!]));
    },
    write,
    teardown: () => b.teardown(),
  };
}

/** Why the cluster is not healthy yet (every peer agrees on one coordinator and one primary, all backends up), or undefined when it is. */
export function unhealthy(st: Map<Name, StatusView | Error>): string | undefined {
  const views = [...st.entries()];
  const bad = views.find(([, v]) => v instanceof Error);
  if (bad) return `${bad[0]} does not answer: ${(bad[1] as Error).message}`;
  const ok = views as [Name, StatusView][];
  const coordinators = new Set(ok.map(([, v]) => v.coordinator));
  if (coordinators.size !== 1 || coordinators.has(null)) return `peers disagree on the coordinator: ${ok.map(([n, v]) => `${n} says ${v.coordinator ?? 'none'}`).join(', ')}`;
  const odd = ok.find(([, v]) => v.peer.state !== 'coordinator' && v.peer.state !== 'standby');
  if (odd) return `${odd[0]} is ${odd[1].peer.state}`;
  const primaries = new Set(ok.map(([, v]) => v.primary));
  if (primaries.size !== 1 || primaries.has(null)) return `peers disagree on the primary: ${ok.map(([n, v]) => `${n} routes to ${v.primary ?? 'none'}`).join(', ')}`;
  const down = ok.find(([, v]) => v.backends.some((x) => x.status !== 'up'));
  if (down) return `${down[0]} sees backend(s) ${down[1].backends.filter((x) => x.status !== 'up').map((x) => `${x.id} ${x.status}`).join(', ')}`;
  return undefined;
}

/** One line per peer: its state, whom it names coordinator, where it routes writes, what it sees of the backends. */
export function peerLines(st: Map<Name, StatusView | Error>): string[] {
  const lines = ['  peer    state        coordinator  primary  backends up  VIP holder'];
  for (const [n, v] of st) {
    if (v instanceof Error) lines.push(`  ${n.padEnd(7)} (not answering: ${v.message})`);
    else lines.push(`  ${n.padEnd(7)} ${v.peer.state.padEnd(12)} ${(v.coordinator ?? 'none').padEnd(12)} ${String(v.primary ?? 'none').padEnd(8)} ${`${v.backends.filter((x) => x.status === 'up').length} of ${v.backends.length}`.padEnd(12)} ${v.vip.holder ?? 'none'}`);
  }
  return lines;
}

/** `pgwatchdog status` against a peer, as an operator would run it (the CLI's own code, run in
 * this process: a second node process starting under a loaded machine's CPU can take longer
 * than the command itself). */
export async function cliStatus(p: PeerProcess): Promise<string> {
  const admin = `http://127.0.0.1:${p.adminPort}`;
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(['status', '--admin', admin], { out: (s) => out.push(s), err: (s) => err.push(s), tty: false });
  return code === 0 ? `$ pgwatchdog status --admin ${admin}\n${out.join('\n').trimEnd()}` : `pgwatchdog status --admin ${admin} failed (exit ${code}): ${err.join(' ').trim()}`;
}
