// Online restart under load: pgbench with persistent connections (simple, extended and
// prepared protocol, -N writes) through a peer while the peer is restarted again and again
// (`start --takeover`). No transaction fails, no client reconnects, no row is lost or written
// twice; a client's BackendKeyData still cancels its query after the moves; a client that
// held a transaction open across a restart commits it after the move.
//
// TAKEOVER_RESTARTS sets the number of restarts (3 by default, to keep `npm test` short;
// `npm run test:restart10` runs ten).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import pg from 'pg';
import { createCluster, pgBin, run, SUPERUSER, SUPERUSER_PASSWORD } from '../support/pg.js';
import { pgbench, processed } from '../support/pgbench.js';
import { startPeerProcess, type PeerProcess } from '../support/peer.js';
import * as codec from '../../src/protocol/codec.js';
import * as fdpass from '../../src/takeover/fdpass.js';

const RESTARTS = Number(process.env.TAKEOVER_RESTARTS ?? 3);
const skip = fdpass.available() ? false : `descriptor passing is not built (${fdpass.unavailableReason()}): sessions cannot move`;

/** Errors a client gets outside a query (a FATAL between queries), for the assertions. */
const clientErrors: string[] = [];

function client(p: PeerProcess): pg.Client {
  const c = new pg.Client({ host: p.host, port: p.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
  c.on('error', (err) => clientErrors.push(err.message));
  return c;
}

/** Sends a CancelRequest with `c`'s BackendKeyData to the peer on a fresh connection. */
async function cancelVia(p: PeerProcess, c: pg.Client): Promise<void> {
  const s = net.connect({ host: p.host, port: p.port });
  await once(s, 'connect');
  const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
  s.end(codec.cancelRequest(processID, secretKey));
}


test(`pgbench (simple, extended, prepared; -N) through a peer restarted ${RESTARTS} times: no failed transaction, no reconnect, no lost or doubled row; cancel keys and an open transaction survive`, { skip, timeout: 600_000 }, async () => {
  const cluster = await createCluster({ standbys: 0 });
  let peer: PeerProcess | undefined;
  const retired: PeerProcess[] = [];
  try {
    const env = { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD };
    await run(pgBin('pgbench'), ['-i', '-s', '1', '-q', '-h', cluster.primary.host, '-p', String(cluster.primary.port), '-U', SUPERUSER, 'postgres'], { asPostgres: false, env });
    peer = await startPeerProcess(cluster, { log: { level: 'info' } }, { env: { PGWATCHDOG_LOG_LEVEL: 'info' } });
    const setup = client(peer);
    await setup.connect();
    await setup.query('CREATE TABLE takeover_txn (id int primary key)');
    await setup.end();

    // A client whose cancel key must still work after every move, and one that holds a
    // transaction open across the first restart.
    const keeper = client(peer);
    await keeper.connect();
    const keeperPid = (await keeper.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
    const txn = client(peer);
    await txn.connect();

    // Long enough for the restarts on a loaded machine (each starts a new process: ~2–9 s).
    const seconds = 15 + 10 * RESTARTS;
    const benches = (['simple', 'extended', 'prepared'] as const).map((m) => pgbench(peer!, m, seconds));
    await new Promise((r) => setTimeout(r, 2000));
    const started = Date.now();
    for (let i = 0; i < RESTARTS; i++) {
      let commit: Promise<unknown> | undefined;
      if (i === 0) {
        await txn.query('BEGIN');
        await txn.query('INSERT INTO takeover_txn VALUES (1)');
      }
      const old: PeerProcess = peer;
      const next = startPeerProcess(cluster, {}, { takeoverFrom: old, env: { PGWATCHDOG_LOG_LEVEL: 'info' } });
      if (i === 0) {
        // Commit while the takeover is under way (the other sessions are moving): the
        // session moves once it is idle again.
        await old.waitForLog((l) => l.msg.startsWith('takeover started'), 30_000);
        await new Promise((r) => setTimeout(r, 300));
        commit = txn.query('COMMIT');
      }
      peer = await next;
      assert.equal(await old.exited, 0, `restart ${i + 1}: the old process exits cleanly`);
      for (const l of old.logs) if (/could not move|not sent/.test(l.msg)) console.log(`# restart ${i + 1}: ${JSON.stringify(l)}`);
      retired.push(old);
      const done = await peer.waitForLog((l) => l.msg === 'takeover complete: this process serves everything', 30_000);
      assert.match(String(done.reason), /, 0 ended/, `restart ${i + 1}: every session moved (${String(done.reason)})`);
      if (commit) await commit;
      await new Promise((r) => setTimeout(r, 500));
    }
    const restartsTook = Date.now() - started;
    assert.ok(restartsTook < seconds * 1000 - 3000, `the restarts (${restartsTook} ms) ran while pgbench did`);

    const results = await Promise.all(benches.map(async (b) => ({ mode: b.mode, ...(await b.done) })));
    for (const r of results) console.log(`# pgbench -M ${r.mode}: ${processed(r.out)} transactions, ${/latency average = [\d.]+ ms/.exec(r.out)?.[0] ?? ''}`);
    let total = 0;
    for (const r of results) {
      assert.equal(r.code, 0, `pgbench -M ${r.mode} ran without an aborted client or a failed transaction:\n${r.out}`);
      assert.doesNotMatch(r.out, /aborted|error/i, `pgbench -M ${r.mode}: ${r.out}`);
      const n = processed(r.out);
      assert.ok(n > 0, `pgbench -M ${r.mode} processed transactions: ${r.out}`);
      total += n;
    }

    // Every transaction pgbench counted wrote exactly one history row, and every balance
    // change is in the accounts exactly once.
    const direct = new pg.Client({ host: cluster.primary.host, port: cluster.primary.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
    await direct.connect();
    try {
      const h = (await direct.query('SELECT count(*)::int AS n, coalesce(sum(delta), 0)::bigint AS d FROM pgbench_history')).rows[0] as { n: number; d: string };
      const a = (await direct.query('SELECT coalesce(sum(abalance), 0)::bigint AS s FROM pgbench_accounts')).rows[0] as { s: string };
      assert.equal(h.n, total, 'one history row per counted transaction: none lost, none doubled');
      assert.equal(a.s, h.d, 'balances changed exactly by the recorded deltas');
      const t = (await direct.query('SELECT count(*)::int AS n FROM takeover_txn')).rows[0] as { n: number };
      assert.equal(t.n, 1, 'the transaction held open across the restart committed after the move');
    } finally {
      await direct.end();
    }

    // The keeper's session moved with its backend connection, and its cancel key still works.
    assert.equal((await keeper.query('SELECT pg_backend_pid() AS p')).rows[0].p, keeperPid, 'the session kept its backend connection across the restarts');
    const q = keeper.query('SELECT pg_sleep(30)').then(
      () => null,
      (e: { code?: string }) => e.code ?? String(e),
    );
    await new Promise((r) => setTimeout(r, 500));
    await cancelVia(peer, keeper);
    assert.equal(await q, '57014', 'the BackendKeyData given before the moves cancels the query after them');
    await keeper.end();
    await txn.end();
  } finally {
    if (peer) {
      peer.ownsDir = true;
      await peer.stop();
    }
    for (const r of retired) if (r.proc.exitCode === null) await r.stop();
    await cluster.teardown();
  }
});
