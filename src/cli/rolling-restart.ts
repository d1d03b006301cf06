// `pgwatchdog rolling-restart -c FILE [--name PEER] …`: the rolling upgrade of a cluster whose
// peers run on this host (or whose configs and takeover sockets are reachable here): each peer
// in turn is restarted online (`restart`: its successor takes over listener, sessions and
// pool), the coordinator last, and the next one only once the last is back in the cluster and
// caught up. So the cluster keeps a majority throughout, runs one leadership transfer (when
// the coordinator's old process hands leadership over before it lets go), and no client
// reconnects. It stops at the first peer that does not come back, and says why.
import { hostname } from 'node:os';
import { loadConfig } from '../config/index.js';
import { ApiClient } from './client.js';
import type { Io } from './main.js';
import { restartPeer } from './restart.js';
import type { StatusView } from '../admin/views.js';

export interface RollingPeer {
  file: string;
  name: string;
  admin: string;
  token: string | undefined;
}

/** Pure: the order of the restarts (the coordinator last, the others as given), with the reason. */
export function restartOrder(names: string[], coordinator: string | null): { order: string[]; reason: string } {
  if (coordinator === null || !names.includes(coordinator)) {
    return { order: [...names], reason: coordinator === null ? 'no coordinator known: in the order given' : `the coordinator ${coordinator} is not among these peers: in the order given` };
  }
  return { order: [...names.filter((n) => n !== coordinator), coordinator], reason: `${coordinator} is the coordinator: it goes last and hands leadership over as it restarts` };
}

/**
 * Pure: is `name` back in the cluster and caught up, from every peer's status (undefined: that
 * peer did not answer)? Back: it answers, it is coordinator or standby and knows the leader,
 * the others see it so; caught up: it has applied what the leader had committed.
 */
export function backAndCaughtUp(name: string, views: Map<string, StatusView | undefined>): { ok: boolean; reason: string } {
  const own = views.get(name);
  if (!own) return { ok: false, reason: `${name} does not answer yet` };
  if (own.peer.state !== 'standby' && own.peer.state !== 'coordinator') return { ok: false, reason: `${name} is ${own.peer.state}` };
  if (own.raft.leader === null) return { ok: false, reason: `${name} knows no leader yet` };
  if (!own.peer.proxyListening) return { ok: false, reason: `${name}'s proxy is not accepting` };
  const leader = [...views.values()].find((v) => v?.peer.state === 'coordinator');
  if (!leader) return { ok: false, reason: 'no peer answers as coordinator' };
  if (own.raft.appliedIndex < leader.raft.commitIndex) return { ok: false, reason: `${name} has applied ${own.raft.appliedIndex} of the ${leader.raft.commitIndex} entries the coordinator committed` };
  for (const [other, v] of views) {
    if (other === name || !v) continue;
    const seen = v.peers.find((p) => p.name === name);
    if (!seen || (seen.state !== 'standby' && seen.state !== 'coordinator')) return { ok: false, reason: `${other} sees ${name} as ${seen?.state ?? 'unknown'}` };
  }
  return { ok: true, reason: `${name} is ${own.peer.state}, applied ${own.raft.appliedIndex} ≥ committed ${leader.raft.commitIndex}, and every peer sees it` };
}

/** The peers named by the command line: each `-c FILE` with the `--name` at the same position (or the file's watchdog.name). */
export function rollingPeers(files: string[], names: string[]): RollingPeer[] {
  if (names.length > 0 && names.length !== files.length) throw new Error(`give one --name per -c FILE, or none (${files.length} files, ${names.length} names)`);
  return files.map((file, i) => {
    const cfg = loadConfig(file);
    const name = names[i] ?? cfg.watchdog.name ?? hostname();
    const host = cfg.admin.host === '0.0.0.0' || cfg.admin.host === '::' ? '127.0.0.1' : cfg.admin.host;
    return { file, name, admin: `http://${host.includes(':') ? `[${host}]` : host}:${cfg.admin.port}`, token: cfg.admin.token || undefined };
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function statuses(peers: RollingPeer[]): Promise<Map<string, StatusView | undefined>> {
  const out = new Map<string, StatusView | undefined>();
  await Promise.all(
    peers.map(async (p) => {
      out.set(p.name, await new ApiClient({ admin: p.admin, timeoutMs: 2000 }).get<StatusView>('/v1/status').catch(() => undefined));
    }),
  );
  return out;
}

export async function rollingRestart(peers: RollingPeer[], io: Io, opts: { backTimeoutMs?: number } = {}): Promise<number> {
  const backTimeoutMs = opts.backTimeoutMs ?? 60_000;
  const names = peers.map((p) => p.name);
  if (new Set(names).size !== names.length) {
    io.err(`rolling-restart: a peer is named twice (${names.join(', ')}); give --name for each -c FILE`);
    return 2;
  }
  // Every peer must be in the cluster before the first restart: a restart while one is down
  // would leave two of three.
  for (const p of peers) {
    const r = await waitBack(p.name, peers, backTimeoutMs);
    if (!r.ok) {
      io.err(`rolling-restart: not starting: ${r.reason}`);
      return 1;
    }
  }
  const views = await statuses(peers);
  const coordinator = [...views.values()].find((v) => v?.peer.state === 'coordinator')?.peer.name ?? null;
  const { order, reason } = restartOrder(names, coordinator);
  io.out(`rolling restart of ${order.join(', ')} (${reason})`);
  for (const name of order) {
    const p = peers.find((x) => x.name === name)!;
    io.out(`${name}: restarting`);
    const code = await restartPeer(p.file, p.name, io);
    if (code !== 0) {
      io.err(`rolling-restart: stopped at ${name} (its restart failed; the peers after it were not restarted)`);
      return 1;
    }
    const r = await waitBack(name, peers, backTimeoutMs);
    if (!r.ok) {
      io.err(`rolling-restart: stopped: ${name} is not back in the cluster within ${backTimeoutMs} ms (${r.reason}); the peers after it were not restarted`);
      return 1;
    }
    io.out(`${name}: back (${r.reason})`);
  }
  io.out(`rolling restart done: ${order.length} peers restarted`);
  return 0;
}

async function waitBack(name: string, peers: RollingPeer[], timeoutMs: number): Promise<{ ok: boolean; reason: string }> {
  const deadline = Date.now() + timeoutMs;
  let last = { ok: false, reason: 'not checked' };
  while (Date.now() < deadline) {
    last = backAndCaughtUp(name, await statuses(peers));
    if (last.ok) return last;
    await sleep(200);
  }
  return last;
}
