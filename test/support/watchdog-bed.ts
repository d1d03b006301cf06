// A three-peer watchdog cluster of real peer processes on loopback over a PostgreSQL test
// bed, for the integration tests and `npm run bench:cluster`. VIP commands write marker
// files (one per holder; escalation first removes the others', as the sample script does).
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import pg from 'pg';
import { createCluster, freePort, SUPERUSER, SUPERUSER_PASSWORD, type PgCluster } from './pg.js';
import type { TestChild } from './child.js';
import { startPeerProcess, type LogLine, type PeerProcess } from './peer.js';

export const NAMES = ['pgwd1', 'pgwd2', 'pgwd3'] as const;
export type Name = (typeof NAMES)[number];

export interface Bed {
  cluster: PgCluster;
  dir: string;
  peers: Map<Name, PeerProcess>;
  start(name: Name, over?: Record<string, unknown>): Promise<PeerProcess>;
  /** Online restart of a running peer (`start --takeover` with its config); resolves with the new process once ready. */
  restart(name: Name): Promise<PeerProcess>;
  cut(name: Name, cut: string[] | 'all' | null): void;
  holders(): Name[];
  failoverCount(): number;
  teardown(): Promise<void>;
}

type Tree = Record<string, unknown>;

export interface BedOptions {
  watchdog?: object;
  cluster?: PgCluster;
  /** teardown() leaves `cluster` running (its owner tears it down). */
  keepCluster?: boolean;
  failoverCommand?: (countFile: string) => string;
  /** follow_primary_command, given the file `follows` in the bed's directory (none by default). */
  followPrimaryCommand?: (followFile: string) => string;
  adminToken?: string;
  /** Merged into every peer's config (before the watchdog and failover sections the bed sets). */
  peer?: Record<string, unknown>;
  authKey?: string;
  /** Where the bed's and the peers' directories are made (default: the OS temp dir). */
  parentDir?: string;
  /** false: no PGWATCHDOG_FAULTS_FILE (cut() then does nothing); for the demo, which injects no faults. */
  faults?: boolean;
  /** How long a peer may take to log 'peer ready' (default: startPeerProcess's). */
  readyTimeoutMs?: number;
  /** Called as each peer is ready, in start order. */
  onStart?: (name: Name, p: PeerProcess) => void;
}

export async function bed(opts: BedOptions = {}): Promise<Bed> {
  const cluster = opts.cluster ?? (await createCluster({ standbys: 2, parentDir: opts.parentDir }));
  const dir = mkdtempSync(join(opts.parentDir ?? tmpdir(), 'pgwd-wd-'));
  const vipDir = join(dir, 'vip');
  const failovers = join(dir, 'failovers');
  writeFileSync(failovers, '');
  mkdirSync(vipDir);
  // Every port of every peer chosen here, once (freePort reserves each, so all differ): the
  // watchdog list and the admin URLs name them all before any peer starts.
  const [ports, adminPorts, proxyPorts] = await Promise.all([0, 1, 2].map(() => Promise.all(NAMES.map(() => freePort()))));
  // Each peer's admin API at a port known to all, so mutating calls can be forwarded.
  const watchdogPeers = NAMES.map((name, i) => ({ name, host: '127.0.0.1', port: ports[i], admin_url: `http://127.0.0.1:${adminPorts[i]}` }));
  const peers = new Map<Name, PeerProcess>();
  const start = async (name: Name, over: Record<string, unknown> = {}) => {
    const p = await startPeerProcess(
      cluster,
      {
        admin: { port: adminPorts[NAMES.indexOf(name)], ...(opts.adminToken ? { token: opts.adminToken } : {}) },
        ...opts.peer,
        ...over,
        proxy: { port: proxyPorts[NAMES.indexOf(name)], ...(opts.peer?.proxy as Tree | undefined), ...(over.proxy as Tree | undefined) },
        failover: { failover_command: opts.failoverCommand?.(failovers) ?? `echo %d %T >> ${failovers}`, ...(opts.followPrimaryCommand ? { follow_primary_command: opts.followPrimaryCommand(join(dir, 'follows')) } : {}) },
        watchdog: {
          auth_key: opts.authKey ?? 'test-key',
          peers: watchdogPeers,
          data_dir: join(dir, `raft-${name}`),
          vip: {
            address: '10.254.0.1/32',
            interface: 'lo',
            // As the sample script does, escalation first takes the address off every other peer.
            escalation_command: `rm -f ${vipDir}/*; touch ${vipDir}/${name}`,
            de_escalation_command: `rm -f ${vipDir}/${name}`,
          },
          ...opts.watchdog,
        },
      },
      { args: ['--name', name], env: opts.faults === false ? {} : { PGWATCHDOG_FAULTS_FILE: join(dir, `faults-${name}`) }, parentDir: opts.parentDir, readyTimeoutMs: opts.readyTimeoutMs },
    );
    watch(peers.get(name), p);
    peers.set(name, p);
    opts.onStart?.(name, p);
    return p;
  };
  const teardown = async (): Promise<void> => {
    // PGWD_LOGS=DIR keeps each peer's last log lines there, to read after a failure.
    if (process.env.PGWD_LOGS) for (const [n, p] of peers) writeFileSync(join(process.env.PGWD_LOGS, `${basename(dir)}-${n}.log`), p.logs.map((l) => JSON.stringify(l)).join('\n'));
    for (const p of peers.values()) watched.delete(p.child);
    await Promise.all([...peers.values()].map((p) => p.stop().catch(() => undefined)));
    if (!opts.keepCluster) await cluster.teardown();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const n of NAMES) await start(n);
  } catch (err) {
    // A peer that did not come up: the caller gets no bed to tear down, so the bed cleans up
    // what it started (otherwise the live peers keep the test process from ever exiting).
    await teardown();
    throw err;
  }
  const restart = async (name: Name) => {
    const old = peers.get(name)!;
    const p = await startPeerProcess(cluster, {}, { takeoverFrom: old, args: ['--name', name], env: opts.faults === false ? {} : { PGWATCHDOG_FAULTS_FILE: join(dir, `faults-${name}`) }, readyTimeoutMs: opts.readyTimeoutMs });
    watch(old, p);
    peers.set(name, p);
    await old.exited;
    return p;
  };
  return {
    cluster,
    dir,
    peers,
    start,
    restart,
    cut: (name, cut) => writeFileSync(join(dir, `faults-${name}`), cut === null ? '' : JSON.stringify({ cut })),
    holders: () => readdirSync(vipDir).sort() as Name[],
    failoverCount: () => readFileSync(failovers, 'utf8').split('\n').filter(Boolean).length,
    teardown,
  };
}

/** The peers of the live beds: one that dies without the test asking (stop, kill9, a
 * takeover) fails every waitFor at once, with its exit and last lines. */
const watched = new Set<TestChild>();

function watch(replaced: PeerProcess | undefined, p: PeerProcess): void {
  if (replaced) watched.delete(replaced.child);
  watched.add(p.child);
}

export async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    for (const c of watched) if (c.crash) throw new Error(`while waiting for ${what}: ${c.crash.message}`, { cause: c.crash });
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export const isEscalated = (l: LogLine) => l.msg === 'VIP escalation succeeded';

export async function query(p: PeerProcess, sql: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ host: p.host, port: p.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres', connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

/** The peer that holds the VIP marker, once exactly one does. */
export async function oneHolder(b: Bed, timeoutMs = 20_000): Promise<Name> {
  return waitFor('exactly one VIP holder', () => {
    const h = b.holders();
    return h.length === 1 ? h[0] : undefined;
  }, timeoutMs);
}

/**
 * Every peer sees every other peer alive (a fresh view, which a peer sends over a link as soon
 * as it is up) and is itself joined: what a scenario that kills something must wait for, or a
 * peer whose link is still in its redial backoff is missing from the tally.
 */
export async function allLinked(b: Bed, timeoutMs = 20_000): Promise<void> {
  await waitFor(
    'every peer linked to every other with fresh views',
    async () => {
      for (const p of b.peers.values()) {
        const r = await fetch(`http://127.0.0.1:${p.adminPort}/v1/peers`);
        if (!r.ok) return false;
        const v = (await r.json()) as { state: string; info: { remoteNodes: number; aliveRemoteNodes: number } };
        if (v.info.aliveRemoteNodes !== v.info.remoteNodes || (v.state !== 'standby' && v.state !== 'coordinator')) return false;
      }
      return true;
    },
    timeoutMs,
  );
}

/** A client session through peer `p`, once the peer routes sessions (a coordinator escalates before its first entries commit). */
export function sessionThrough(p: PeerProcess, timeoutMs = 20_000): Promise<pg.Client> {
  return waitFor(
    `a session through the peer on port ${p.port}`,
    async () => {
      const x = new pg.Client({ host: p.host, port: p.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
      x.on('error', () => undefined);
      try {
        await x.connect();
        await x.query('SELECT 1');
        return x;
      } catch {
        await x.end().catch(() => undefined);
        return undefined;
      }
    },
    timeoutMs,
  );
}
