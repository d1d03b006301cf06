// Sessions survive a failover of the primary (proxy.failover_sessions: keep, the default):
// pgbench with persistent connections (-N simple and prepared, -S extended) through a peer
// while the primary is killed with -9 and the builtin promotion runs. Clients idle between
// transactions at the kill (pgbench -R leaves them idle most of the time) carry on on the new
// primary with no error and no reconnect; only a transaction in flight at the kill may fail.
// A pg-driver session's SET values, SQL and protocol-level prepared statements and LISTEN
// survive the move; a session holding a temporary table ends with 57P01 and the log says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import pg from 'pg';
import { createCluster, pgBin, run, SUPERUSER, SUPERUSER_PASSWORD } from '../support/pg.js';
import { startPeerProcess, type PeerProcess } from '../support/peer.js';

const HEALTH = { period_ms: 300, timeout_ms: 1000, connect_timeout_ms: 1000, max_retries: 1, retry_delay_ms: 200 };
const SECONDS = 12;
const KILL_AT_MS = 3000;

interface BenchResult {
  mode: string;
  code: number | null;
  out: string;
  clients: number;
  aborted: number;
}

/** pgbench with persistent connections at a low rate (clients idle between transactions). */
function pgbench(p: PeerProcess, mode: 'simple' | 'extended' | 'prepared', script: '-N' | '-S', clients: number): Promise<BenchResult> {
  const env = { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD };
  const args = ['-n', script, '-M', mode, '-c', String(clients), '-j', '1', '-R', String(clients), '-T', String(SECONDS), '-h', p.host, '-p', String(p.port), '-U', SUPERUSER, 'postgres'];
  return new Promise((resolve) => {
    const child = spawn(pgBin('pgbench'), args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => {
      // pgbench 15 aborts a client at its first error: "client N aborted in command …".
      const aborted = new Set([...out.matchAll(/client (\d+) (?:script \d+ )?aborted/g)].map((m) => m[1])).size;
      resolve({ mode: `${script} ${mode}`, code, out, clients, aborted });
    });
  });
}

function client(p: PeerProcess, errors: Error[]): pg.Client {
  const c = new pg.Client({ host: p.host, port: p.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
  c.on('error', (e) => errors.push(e));
  return c;
}

test('failover_sessions keep: pgbench clients idle at a primary kill -9 carry on with no error and no reconnect; SET, prepared statements and LISTEN survive; a temp-table session ends with 57P01', { timeout: 180_000 }, async () => {
  const cluster = await createCluster({ standbys: 1 });
  try {
    const env = { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD };
    await run(pgBin('pgbench'), ['-i', '-s', '1', '-q', '-h', cluster.primary.host, '-p', String(cluster.primary.port), '-U', SUPERUSER, 'postgres'], { asPostgres: false, env });
    await cluster.waitReplicated();
    const peer = await startPeerProcess(cluster, { health_check: HEALTH, log: { level: 'info' } }, { env: { PGWATCHDOG_LOG_LEVEL: 'info' } });
    try {
      await peer.waitForLog((l) => l.msg === 'peer ready');
      const errors: Error[] = [];
      // A session with state to carry over, and one that cannot move.
      const keeper = client(peer, errors);
      await keeper.connect();
      await keeper.query("SET work_mem = '3MB'");
      await keeper.query("SET application_name = 'kept'");
      await keeper.query('PREPARE sql_prep (int) AS SELECT $1 * 2 AS v');
      await keeper.query({ name: 'proto_prep', text: 'SELECT $1::int + 1 AS v', values: [1] });
      await keeper.query('LISTEN moved_channel');
      const notes: string[] = [];
      keeper.on('notification', (n) => notes.push(n.payload ?? ''));
      const pidBefore = (await keeper.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
      const tempErrors: Error[] = [];
      const temp = client(peer, tempErrors);
      await temp.connect();
      await temp.query('CREATE TEMP TABLE scratch (a int)');

      const benches = [pgbench(peer, 'simple', '-N', 4), pgbench(peer, 'prepared', '-N', 4), pgbench(peer, 'extended', '-S', 4)];
      await new Promise((r) => setTimeout(r, KILL_AT_MS));
      const killedAt = new Date();
      await cluster.primary.kill9();
      const done = await peer.waitForLog((l) => l.msg?.startsWith('failover request finished') && l.kind === 'node_down', 30_000);
      assert.equal(done.ok, true, JSON.stringify(done));
      const np = cluster.nodes[done.newPrimary as number]!;
      const results = await Promise.all(benches);
      for (const r of results) console.log(`# ${r.mode}: exit ${r.code}, ${r.aborted} of ${r.clients} clients aborted; ${/number of transactions actually processed: \d+/.exec(r.out)?.[0] ?? r.out.slice(-400)}`);
      const aborted = results.reduce((n, r) => n + r.aborted, 0);
      const clients = results.reduce((n, r) => n + r.clients, 0);
      // Only a transaction in flight at the kill may fail. At 1 transaction a second a client is
      // in one a few per cent of the time, and a statement sent in the tens of ms the old
      // primary's backends take to notice the postmaster's death fails too (it was in flight).
      // With failover_sessions: end every client aborts.
      assert.ok(aborted <= 4, `${aborted} of ${clients} clients aborted:\n${results.map((r) => r.out).join('\n')}`);
      for (const r of results) assert.ok(r.out.includes('number of transactions actually processed'), r.out);
      // The writers that carried on wrote on the new primary after the failover.
      const after = await np.sql<{ n: number }>('SELECT count(*)::int AS n FROM pgbench_history WHERE mtime > $1', [new Date(Date.parse(done.time as string) || killedAt.getTime())]);
      assert.ok(after[0]!.n > 0, 'pgbench wrote on the new primary after the failover');

      // The session's state moved with it.
      assert.deepEqual(errors, [], 'the kept session saw no error');
      const st = (await keeper.query<{ wm: string; an: string; port: number; pid: number }>("SELECT current_setting('work_mem') AS wm, current_setting('application_name') AS an, current_setting('port')::int AS port, pg_backend_pid() AS pid")).rows[0]!;
      assert.equal(st.wm, '3MB');
      assert.equal(st.an, 'kept');
      assert.equal(st.port, np.port, 'the session runs on the new primary');
      assert.notEqual(st.pid, pidBefore);
      assert.equal((await keeper.query<{ v: number }>('EXECUTE sql_prep(21)')).rows[0]!.v, 42);
      assert.equal((await keeper.query<{ v: number }>({ name: 'proto_prep', text: 'SELECT $1::int + 1 AS v', values: [41] })).rows[0]!.v, 42);
      await np.sql("NOTIFY moved_channel, 'after failover'");
      for (let i = 0; i < 100 && notes.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(notes, ['after failover']);
      const moved = await peer.waitForLog((l) => l.msg === 'session moved to a new primary connection with its state re-created' && l.listens === 1);
      assert.equal(moved.to, done.newPrimary);

      // The temp-table session could not move: 57P01, and the log says what stopped it.
      const tempErr = tempErrors[0] ?? (await temp.query('SELECT 1').then(() => undefined, (e: Error) => e));
      assert.equal((tempErr as { code?: string } | undefined)?.code, '57P01', String(tempErr));
      await peer.waitForLog((l) => l.msg === 'backend connection lost and the session cannot move: ending it' && l.blocker === 'holds temporary objects');
      await keeper.end();
      await temp.end().catch(() => undefined);
    } finally {
      await peer.stop();
    }
  } finally {
    await cluster.teardown();
  }
});
