// The VIP for real: three peers in three network namespaces on a bridge, the sample
// scripts/escalation.sh and de_escalation.sh moving a real address, and a client in a fourth
// namespace writing through that address while the coordinator's namespace is cut off (its
// link taken down) and then while its process is killed with -9. A sampler reads every
// namespace's addresses every ~50 ms: the VIP is never on two namespaces at once.
//
// Addresses: 10.213.N.0/24 with N from this process id, on a bridge private to the test;
// nothing else is touched. PostgreSQL (the usual test bed) runs in the root namespace and
// listens on the bridge's address too, so the peers reach it over the bridge as they would
// reach a database host; running the servers inside a namespace would need a second test bed
// for no gain (the test is about the peers and the VIP, not the database's network).
//
// Runs as root where `ip netns` works; otherwise it is skipped and says why.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCluster, freePort, SUPERUSER, type PgCluster } from '../support/pg.js';
import { startPeerProcess, type PeerProcess } from '../support/peer.js';
import { waitFor } from '../support/watchdog-bed.js';

const SCRIPTS = new URL('../../scripts/', import.meta.url).pathname;
const tag = String(process.pid % 100_000);
const net = `10.213.${(process.pid % 250) + 1}`;
const BRIDGE = `wdbr${tag}`;
const NAMES = ['pgwd1', 'pgwd2', 'pgwd3'] as const;
type Name = (typeof NAMES)[number];
const ns = (n: Name | 'client') => `wd${tag}${n === 'client' ? 'c' : n.slice(-1)}`;
const hostLink = (n: Name | 'client') => `wdh${tag}${n === 'client' ? 'c' : n.slice(-1)}`;
const addr = (n: Name | 'client') => `${net}.${n === 'client' ? 20 : 10 + Number(n.slice(-1))}`;
const VIP = `${net}.100`;

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Why this test cannot run here, or null when it can. */
function cannotRun(): string | null {
  if (process.getuid?.() !== 0) return 'not root: creating network namespaces needs CAP_SYS_ADMIN';
  const probe = `wdprobe${tag}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `ip netns does not work here: ${r.error?.message ?? r.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return null;
}

/** Removes every namespace and link this test made (safe to call twice, and on a half-built setup). */
function cleanup(): void {
  for (const n of [...NAMES, 'client'] as const) spawnSync('ip', ['netns', 'del', ns(n)], { stdio: 'ignore' });
  spawnSync('ip', ['link', 'del', BRIDGE], { stdio: 'ignore' });
}

function buildNetwork(): void {
  cleanup();
  process.on('exit', cleanup);
  ip('link', 'add', BRIDGE, 'type', 'bridge');
  ip('addr', 'add', `${net}.1/24`, 'dev', BRIDGE);
  ip('link', 'set', BRIDGE, 'up');
  for (const n of [...NAMES, 'client'] as const) {
    ip('netns', 'add', ns(n));
    ip('link', 'add', hostLink(n), 'type', 'veth', 'peer', 'name', `wdp${tag}`);
    ip('link', 'set', `wdp${tag}`, 'netns', ns(n));
    ip('-n', ns(n), 'link', 'set', `wdp${tag}`, 'name', 'eth0');
    ip('-n', ns(n), 'addr', 'add', `${addr(n)}/24`, 'dev', 'eth0');
    ip('-n', ns(n), 'link', 'set', 'eth0', 'up');
    ip('-n', ns(n), 'link', 'set', 'lo', 'up');
    ip('link', 'set', hostLink(n), 'master', BRIDGE, 'up');
  }
}

/** Namespaces whose eth0 carries the VIP now. */
function holds(n: Name): boolean {
  return ip('-n', ns(n), '-o', 'addr', 'show', 'dev', 'eth0').includes(` ${VIP}/`);
}

function holders(): Name[] {
  const seen = NAMES.filter(holds);
  if (seen.length < 2) return seen;
  // The namespaces are read one after another, not at one instant: an address that moved from
  // an earlier-read namespace to a later-read one in between shows on both. Read the earlier
  // ones again after the last: one that still holds the address held it throughout (the
  // escalation script deletes before it adds), so it and the last really held it at once.
  const last = seen[seen.length - 1];
  return [...seen.slice(0, -1).filter(holds), last];
}

/** One write through the VIP from the client's namespace (psql, a fresh connection). */
function writeThroughVip(proxyPort: number, what: string): boolean {
  const r = spawnSync(
    'ip',
    ['netns', 'exec', ns('client'), 'psql', `host=${VIP} port=${proxyPort} user=${SUPERUSER} dbname=postgres connect_timeout=2`, '-qAtc', `INSERT INTO vipw VALUES ('${what}') RETURNING 1`],
    { encoding: 'utf8', timeout: 5000 },
  );
  return r.status === 0 && r.stdout.trim() === '1';
}

const skip = cannotRun();

describe('watchdog VIP in network namespaces', { skip: skip ?? false, concurrency: false }, () => {
  let cluster: PgCluster | undefined;
  const peers = new Map<Name, PeerProcess>();
  let proxyPort = 0;
  let start: (n: Name) => Promise<PeerProcess>;
  let samples = 0;
  const doubles: string[] = [];
  let sampler: NodeJS.Timeout | undefined;

  before(async () => {
    buildNetwork();
    cluster = await createCluster({ standbys: 1, settings: { listen_addresses: `127.0.0.1,${net}.1` } });
    for (const n of cluster.nodes) appendFileSync(join(n.dataDir, 'pg_hba.conf'), `host all all ${net}.0/24 scram-sha-256\nhost replication all ${net}.0/24 scram-sha-256\n`);
    for (const n of cluster.nodes) await n.sql('SELECT pg_reload_conf()');
    await cluster.primary.sql('CREATE TABLE vipw (what text)');
    // Inside its own namespace every peer can use the same ports.
    const [wdPort, adminPort] = await Promise.all([freePort(), freePort()]);
    proxyPort = await freePort();
    const c = cluster;
    start = async (n: Name) => {
      const others = NAMES.filter((o) => o !== n).map(ns);
      const p = await startPeerProcess(
        c,
        {
          proxy: { host: '0.0.0.0', port: proxyPort },
          admin: { host: '127.0.0.1', port: adminPort },
          backends: c.nodes.map((b) => ({ name: b.name, host: `${net}.1`, port: b.port, data_dir: b.dataDir })),
          watchdog: {
            auth_key: 'netns-key',
            peers: NAMES.map((name) => ({ name, host: addr(name), port: wdPort })),
            data_dir: join(c.dir, `raft-${n}`),
            vip: {
              address: `${VIP}/24`,
              interface: 'eth0',
              // The sample scripts as shipped: REMOTE says how to reach another peer's host
              // (here its namespace; ssh on real hosts).
              escalation_command: `REMOTE='ip netns exec' sh ${SCRIPTS}escalation.sh %V %I ${others.join(' ')}`,
              de_escalation_command: `sh ${SCRIPTS}de_escalation.sh %V %I`,
            },
          },
        },
        { args: ['--name', n], wrap: ['ip', 'netns', 'exec', ns(n)], readyTimeoutMs: 60_000 },
      );
      peers.set(n, p);
      return p;
    };
    await Promise.all(NAMES.map((n) => start(n)));
    sampler = setInterval(() => {
      const h = holders();
      samples++;
      if (h.length > 1) doubles.push(`${new Date().toISOString()}: ${h.join(' and ')}`);
    }, 50);
  });

  after(async () => {
    clearInterval(sampler);
    await Promise.all([...peers.values()].map((p) => p.stop().catch(() => undefined)));
    await cluster?.teardown();
    cleanup();
  });

  const oneHolder = (not?: Name) =>
    waitFor(
      `exactly one namespace holding ${VIP}${not ? ` other than ${not}` : ''}`,
      () => {
        const h = holders();
        return h.length === 1 && h[0] !== not ? h[0] : undefined;
      },
      30_000,
    );

  it('the coordinator takes the VIP and the client writes through it', async () => {
    await oneHolder();
    await waitFor('a write through the VIP', () => writeThroughVip(proxyPort, 'first'), 30_000);
    assert.deepEqual(doubles, []);
  });

  it('the coordinator cut off: the VIP moves, never on two namespaces, and the client writes again', async () => {
    const first = await oneHolder();
    ip('link', 'set', hostLink(first), 'down');
    try {
      const second = await oneHolder(first);
      assert.notEqual(second, first);
      await waitFor('a write through the VIP after the move', () => writeThroughVip(proxyPort, `after cut of ${first}`), 30_000);
    } finally {
      ip('link', 'set', hostLink(first), 'up');
    }
    assert.deepEqual(doubles, [], 'samples with the VIP on two namespaces');
  });

  it('the coordinator killed with -9: the VIP moves, never on two namespaces, and the client writes again', async () => {
    const first = await oneHolder();
    await peers.get(first)!.kill9();
    const second = await oneHolder(first);
    assert.notEqual(second, first);
    await waitFor('a write through the VIP after the kill', () => writeThroughVip(proxyPort, `after kill of ${first}`), 30_000);
    await start(first);
    await new Promise((r) => setTimeout(r, 2000));
    assert.deepEqual(holders(), [second], 'the restarted peer dropped nothing it does not hold and took nothing back');
    assert.deepEqual(doubles, [], 'samples with the VIP on two namespaces');
    assert.ok(samples > 20, `sampled ${samples} times`);
    const rows = await cluster!.primary.sql<{ what: string }>('SELECT what FROM vipw');
    assert.ok(rows.some((r) => r.what.startsWith('after kill')), JSON.stringify(rows));
  });
});
