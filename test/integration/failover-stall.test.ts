// A short stall never becomes an outage. Under a pgbench write load through a peer, freeze
// PostgreSQL (SIGSTOP of the postmaster and every process it forked: nothing answers, so health
// checks time out while the server lives) a little longer than the detection bound, then
// resume. Whatever the engine did meanwhile, a few seconds later there is exactly
// one routable primary, writes succeed through the peer, every standby is attached again, and
// no server out of recovery is in service beside the primary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import pg from 'pg';
import { createCluster, pgBin, run, SUPERUSER, SUPERUSER_PASSWORD, type PgCluster, type PgNode } from '../support/pg.js';
import { clusterConfig, FAST_HEALTH, startPeer, waitFor, type TestPeer } from '../failover/support.js';

// period + timeout × (retries + 1) + retries × retry delay: the longest a stall can go unseen.
const BOUND = FAST_HEALTH.period_ms + FAST_HEALTH.timeout_ms * (FAST_HEALTH.max_retries + 1) + FAST_HEALTH.max_retries * FAST_HEALTH.retry_delay_ms;
const STALL_MS = BOUND + 800;
const SETTLE_MS = 20_000; // "a few seconds", on a 2-core machine shared with other tests
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The postmaster and its children (backends, walsender/receiver, background workers). */
function serverPids(n: PgNode): number[] {
  const pm = n.pid();
  return pm === undefined ? [] : [pm, ...n.childPids()];
}
const signalAll = (pids: number[], sig: NodeJS.Signals) => {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // exited meanwhile
    }
  }
};
// The whole server, as a VM pause or CPU starvation stalls it: the postmaster first (it forks
// nothing more), then what it had forked. (Stopping the postmaster alone would leave the
// health checks' kept connections answering: that is a server refusing new connections.)
function freeze(n: PgNode): void {
  signalAll(serverPids(n), 'SIGSTOP');
}
function thaw(n: PgNode): void {
  signalAll(serverPids(n).reverse(), 'SIGCONT');
}

/** One query on a new connection; null when it fails. */
async function queryOnce<T>(host: string, port: number, sql: string): Promise<T | null> {
  const c = new pg.Client({ host, port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres', connectionTimeoutMillis: 2000 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return (await c.query<{ v: T }>(sql)).rows[0]!.v;
  } catch {
    return null;
  } finally {
    await c.end().catch(() => undefined);
  }
}

const inRecovery = (n: PgNode) => queryOnce<boolean>(n.host, n.port, 'SELECT pg_is_in_recovery() AS v');
const writeThrough = (peer: TestPeer) => queryOnce<number>(peer.proxyAddress!.host, peer.proxyAddress!.port, 'INSERT INTO stall_probe DEFAULT VALUES RETURNING inet_server_port() AS v');

/** The settled state, or a description of what is not settled yet. */
async function settled(cluster: PgCluster, peer: TestPeer): Promise<{ ok: true; primary: number } | { ok: false; why: string }> {
  const list = peer.registry.list();
  const primaries = list.filter((b) => b.status === 'up' && b.role === 'primary');
  if (primaries.length !== 1) return { ok: false, why: `${primaries.length} routable primaries` };
  const primary = primaries[0]!.id;
  for (const n of cluster.nodes) {
    const id = cluster.nodes.indexOf(n);
    if (n.pid() === undefined) continue; // killed
    const rec = await inRecovery(n);
    const b = peer.registry.get(id);
    if (rec === null) return { ok: false, why: `backend ${id} does not answer` };
    if (rec && !(b.status === 'up' && b.role === 'standby')) return { ok: false, why: `standby ${id} is ${b.status} ${b.role} in the registry` };
    if (!rec && id !== primary && b.status !== 'down') return { ok: false, why: `backend ${id} is out of recovery and ${b.status} beside the primary ${primary}` };
  }
  const port = await writeThrough(peer);
  if (port !== cluster.nodes[primary]!.port) return { ok: false, why: `a write through the peer ${port === null ? 'failed' : `landed on port ${port}`}` };
  return { ok: true, primary };
}

async function withStall(name: string, act: (cluster: PgCluster, peer: TestPeer) => Promise<void>, check: (cluster: PgCluster, peer: TestPeer, primary: number) => void): Promise<void> {
  const cluster = await createCluster({ standbys: 2 });
  let pgbench: ChildProcess | undefined;
  let peer: TestPeer | undefined;
  try {
    const env = { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD };
    await run(pgBin('pgbench'), ['-i', '-s', '1', '-q', '-h', cluster.primary.host, '-p', String(cluster.primary.port), '-U', SUPERUSER, 'postgres'], { asPostgres: false, env });
    peer = await startPeer(clusterConfig(cluster));
    await waitFor('the primary and both standbys attached', () => peer!.registry.list().every((b) => b.status === 'up'));
    const c = new pg.Client({ host: peer.proxyAddress!.host, port: peer.proxyAddress!.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
    await c.connect();
    await c.query('CREATE TABLE stall_probe (id bigserial primary key)');
    await c.end();
    await cluster.waitReplicated();
    pgbench = spawn(pgBin('pgbench'), ['-N', '-n', '-c', '4', '-j', '2', '-T', '120', '-h', peer.proxyAddress!.host, '-p', String(peer.proxyAddress!.port), '-U', SUPERUSER, 'postgres'], { env, stdio: 'ignore' });
    await sleep(1000);

    await act(cluster, peer);
    const resumed = Date.now();
    let last = '';
    const end = await waitFor(
      `${name}: one primary, writes through the peer, every standby attached`,
      async () => {
        const s = await settled(cluster, peer!);
        if (!s.ok) last = s.why;
        return s.ok ? s : undefined;
      },
      SETTLE_MS,
      200,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last: ${last}; failovers: ${JSON.stringify(peer!.results.map((r) => [r.seq, r.kind, r.ids, r.summary]))}`);
    });
    console.log(`# ${name}: settled ${Date.now() - resumed} ms after the resume; primary ${end.primary}; requests: ${peer.results.map((r) => `${r.seq} ${r.kind} ${r.ids.join(',')}: ${r.summary}`).join(' | ')}`);
    check(cluster, peer, end.primary);
    // Still so a few seconds later, and a write still succeeds.
    await sleep(2000);
    const again = await settled(cluster, peer);
    assert.deepEqual(again, { ok: true, primary: end.primary }, `${name}: still settled 2 s later`);
  } finally {
    for (const n of cluster.nodes) thaw(n);
    pgbench?.kill('SIGKILL');
    await peer?.stop();
    await cluster.teardown();
  }
}

test('stall (a): every server frozen past the detection bound, then resumed — the old primary stays the only primary, all attached again', async () => {
  await withStall(
    'stall (a) all servers',
    async (cluster) => {
      for (const n of cluster.nodes) freeze(n);
      await sleep(STALL_MS);
      for (const n of cluster.nodes) thaw(n);
    },
    (_cluster, peer, primary) => {
      assert.equal(primary, 0, 'no failover left a new primary beside the old one');
      assert.deepEqual(
        peer.registry.list().map((b) => [b.status, b.role]),
        [
          ['up', 'primary'],
          ['up', 'standby'],
          ['up', 'standby'],
        ],
      );
    },
  );
});

test('stall (b): the standbys frozen and detached, then the primary killed, then the standbys resumed — one of them is promoted, the other follows', async () => {
  await withStall(
    'stall (b) standbys, then kill -9 of the primary',
    async (cluster, peer) => {
      for (const n of cluster.standbys) freeze(n);
      await sleep(STALL_MS);
      // Conditions, not only time: on a loaded machine detection can take longer than the bound.
      await waitFor('both frozen standbys detached', () => peer.registry.list().slice(1).every((b) => b.status === 'down'), SETTLE_MS);
      await cluster.primary.kill9();
      // The primary's failure is handled while no standby answers: no candidate.
      await waitFor('the kill handled with no candidate', () => peer.results.some((r) => /no promotion/.test(r.summary)), SETTLE_MS);
      for (const n of cluster.standbys) thaw(n);
    },
    (_cluster, peer, primary) => {
      assert.ok(primary === 1 || primary === 2, `a standby was promoted (primary ${primary})`);
      assert.equal(peer.registry.get(0).status, 'down');
      assert.ok(
        peer.results.some((r) => /no promotion/.test(r.summary)),
        'the kill found no candidate first (the state this test is about)',
      );
    },
  );
});

test('stall (c): the primary frozen past the detection bound, then resumed — one primary (failed over and fenced, or kept), standbys attached', async () => {
  await withStall(
    'stall (c) primary',
    async (cluster) => {
      freeze(cluster.primary);
      await sleep(STALL_MS);
      thaw(cluster.primary);
    },
    (_cluster, peer, primary) => {
      if (primary !== 0) assert.equal(peer.registry.get(0).status, 'down', 'the old primary stays fenced');
    },
  );
});
