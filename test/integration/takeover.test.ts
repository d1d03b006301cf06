// Online restart (`pgwatchdog start --takeover`, `pgwatchdog restart`): a new peer process
// takes the listener, the sessions and their backend connections over from the running one.
// Real peer processes, real PostgreSQL, real clients.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { rmSync } from 'node:fs';
import * as fdpass from '../../src/takeover/fdpass.js';
import { createCluster, SUPERUSER, SUPERUSER_PASSWORD, type PgCluster } from '../support/pg.js';
import { startPeerProcess, type PeerProcess } from '../support/peer.js';

function client(p: PeerProcess): pg.Client {
  return new pg.Client({ host: p.host, port: p.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
}

/** Stops whichever of the two processes still runs (the last one removes the shared dir), then the test bed. */
async function cleanUp(old: PeerProcess | undefined, next: PeerProcess | undefined, cluster: PgCluster): Promise<void> {
  if (next) {
    next.ownsDir = true;
    await next.stop();
  }
  if (old && old.proc.exitCode === null) await old.stop();
  await cluster.teardown();
}

/** Connects and disconnects in a loop until stopped; counts refused or failed connections. */
function churn(p: PeerProcess): { stop: () => Promise<{ ok: number; failed: string[] }> } {
  let running = true;
  const failed: string[] = [];
  let ok = 0;
  const loop = (async () => {
    while (running) {
      const c = client(p);
      let connected = false;
      try {
        await c.connect();
        connected = true;
        await c.query('SELECT 1');
        ok++;
      } catch (err) {
        failed.push(`${connected ? 'query' : 'connect'}: ${(err as Error).message}`);
      } finally {
        await c.end().catch(() => undefined);
      }
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { ok, failed };
    },
  };
}

test('start --takeover: the listener moves without refusing a connection; the old process exits when it holds nothing', async () => {
  const cluster = await createCluster({ standbys: 0 });
  let old: PeerProcess | undefined;
  let next: PeerProcess | undefined;
  try {
    old = await startPeerProcess(cluster, { proxy: { takeover: { session_wait_ms: 3000 } } });
    const held = client(old);
    const heldErrors: string[] = [];
    held.on('error', (err) => heldErrors.push(err.message));
    await held.connect();
    const pidBefore = (await held.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    const c = churn(old);
    await new Promise((r) => setTimeout(r, 300));
    next = await startPeerProcess(cluster, {}, { takeoverFrom: old });
    const code = await old.exited;
    assert.equal(code, 0, 'the old process exits cleanly once it holds nothing');
    await new Promise((r) => setTimeout(r, 300));
    const { ok, failed } = await c.stop();
    assert.deepEqual(failed, [], `no connection refused or failed during the takeover (${ok} succeeded)`);
    assert.ok(ok > 5, `clients were served throughout (${ok})`);
    const done = await next.waitForLog((l) => l.msg === 'takeover complete: this process serves everything');
    assert.match(String(done.reason), /sessions moved/);
    // The held session: moved with its backend connection (same backend pid), or, without
    // descriptor passing, ended after the wait with the documented error.
    const r = await held.query('SELECT pg_backend_pid() AS pid').then(
      (res) => ({ pid: res.rows[0].pid as number }),
      (err: Error) => ({ err: err.message }),
    );
    if (fdpass.available()) {
      assert.ok('pid' in r, `the held session moved (${JSON.stringify(r)}; ${heldErrors.join('; ')})`);
      assert.equal(r.pid, pidBefore, 'the session kept its backend connection');
    } else assert.match(heldErrors.join('; '), /pgwatchdog is restarting/, `the session was ended with the documented error (${JSON.stringify(r)})`);
    await held.end().catch(() => undefined);
    // And the new process takes over again (the next restart finds it).
    const third = await startPeerProcess(cluster, {}, { takeoverFrom: next });
    assert.equal(await next.exited, 0);
    next = third;
    const c2 = client(next);
    await c2.connect();
    assert.equal((await c2.query('SELECT 1 AS x')).rows[0].x, 1);
    await c2.end();
  } finally {
    await cleanUp(old, next, cluster);
  }
});

test('the idle pool moves too: pooled backend connections are handed over as they are, not closed and opened again', { skip: fdpass.available() ? false : 'descriptor passing is not built' }, async () => {
  const cluster = await createCluster({ standbys: 0 });
  let old: PeerProcess | undefined;
  let next: PeerProcess | undefined;
  const direct = new pg.Client({ host: cluster.primary.host, port: cluster.primary.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
  const alive = async (pids: number[]): Promise<number[]> =>
    ((await direct.query('SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[])', [pids])).rows as { pid: number }[]).map((r) => r.pid).sort();
  try {
    await direct.connect();
    old = await startPeerProcess(cluster);
    // Three sessions at once (three backend connections), then gone: their connections idle in the pool.
    const cs = [client(old), client(old), client(old)];
    await Promise.all(cs.map((c) => c.connect()));
    const pooled = (await Promise.all(cs.map(async (c) => (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number))).sort();
    await Promise.all(cs.map((c) => c.end()));
    assert.deepEqual(await alive(pooled), pooled, 'the connections idle in the old process\'s pool');
    next = await startPeerProcess(cluster, {}, { takeoverFrom: old });
    assert.equal(await old.exited, 0);
    const done = old.logs.find((l) => l.msg.startsWith('takeover finished'));
    assert.equal(done?.pooled, 3, `the old process handed its idle pool over (${JSON.stringify(done)})`);
    // The old process is gone and the server still has every one of them; a new client gets one.
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await alive(pooled), pooled, 'no pooled connection was closed');
    const c = client(next);
    await c.connect();
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    assert.ok(pooled.includes(pid), `a new session in the new process uses a connection from the old pool (${pid} in ${pooled.join(', ')})`);
    await c.end();
  } finally {
    await direct.end().catch(() => undefined);
    await cleanUp(old, next, cluster);
  }
});

test('without descriptor passing: the listener is bound again by the new process and the old one drains, ending what is left with the documented error', async () => {
  const cluster = await createCluster({ standbys: 0 });
  let old: PeerProcess | undefined;
  let next: PeerProcess | undefined;
  const env = { PGWATCHDOG_FDPASS: 'off' };
  try {
    old = await startPeerProcess(cluster, { proxy: { takeover: { session_wait_ms: 2000 } } }, { env });
    const held = client(old);
    const heldErrors: string[] = [];
    held.on('error', (err) => heldErrors.push(err.message));
    await held.connect();
    await held.query('SELECT 1');
    const c = churn(old);
    next = await startPeerProcess(cluster, {}, { takeoverFrom: old, env });
    assert.equal(await old.exited, 0, 'the old process exits once drained');
    assert.ok(old.logs.some((l) => l.msg.startsWith('takeover started without descriptor passing')));
    const { ok, failed } = await c.stop();
    assert.ok(ok > 0, 'clients were served');
    // The rebind leaves a gap of milliseconds: a connection attempt in it may be refused, and one
    // still in the old listener's accept queue when it closes is reset by the kernel before
    // the session is established (Node 20 has no SO_REUSEPORT to overlap the two). Nothing else.
    for (const f of failed) assert.match(f, /^connect: .*(ECONNREFUSED|ECONNRESET)|restarting/, `only a refused or reset connection attempt in the rebind gap (${failed.join('; ')})`);
    assert.match(heldErrors.join('; '), /pgwatchdog is restarting and this session was still open after 2000 ms/);
    await held.end().catch(() => undefined);
    const c2 = client(next);
    await c2.connect();
    assert.equal((await c2.query('SELECT 1 AS x')).rows[0].x, 1, 'the new process serves');
    await c2.end();
  } finally {
    await cleanUp(old, next, cluster);
  }
});

test('start --takeover with nothing to take over fails with the reason; a running peer is not disturbed by a refused one', async () => {
  const cluster = await createCluster({ standbys: 0 });
  let first: PeerProcess | undefined;
  try {
    first = await startPeerProcess(cluster);
    first.ownsDir = false; // its config file is used again below
    await first.stop();
    await assert.rejects(startPeerProcess(cluster, {}, { takeoverFrom: first }), /no running peer to take over at .*takeover\.sock/);
  } finally {
    if (first) rmSync(first.dir, { recursive: true, force: true });
    await cluster.teardown();
  }
});
