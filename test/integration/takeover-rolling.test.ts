// Rolling upgrade of a three-peer cluster (`pgwatchdog rolling-restart`): every peer restarted
// online in turn, the coordinator last, under pgbench with persistent connections through each
// peer (simple, extended, prepared; -N writes). Zero failed transactions and no aborted client,
// the VIP moves at most once (the coordinator's restart), the Raft term grows by at most one
// (that leadership transfer: no election storm), and no failover runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { bed, NAMES, oneHolder, type Name } from '../support/watchdog-bed.js';
import { pgBin, run, SUPERUSER, SUPERUSER_PASSWORD } from '../support/pg.js';
import { pgbench, processed } from '../support/pgbench.js';
import { rollingPeers } from '../../src/cli/rolling-restart.js';
import { ApiClient } from '../../src/cli/client.js';
import type { StatusView } from '../../src/admin/views.js';
import * as fdpass from '../../src/takeover/fdpass.js';

const skip = fdpass.available() ? false : `descriptor passing is not built (${fdpass.unavailableReason()}): sessions cannot move`;
const BIN = new URL('../../bin/pgwatchdog.js', import.meta.url).pathname;
/** pgbench runs this long; the rolling restart must end well within it. */
const SECONDS = 60;

async function alive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops processes the command started (the successors are not the bed's): SIGTERM, then SIGKILL after 20 s. */
async function stopPids(pids: number[]): Promise<void> {
  for (const pid of pids) if (await alive(pid)) process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 200 && (await Promise.all(pids.map(alive))).some(Boolean); i++) await new Promise((r) => setTimeout(r, 100));
  for (const pid of pids) if (await alive(pid)) process.kill(pid, 'SIGKILL');
}

test('rolling-restart of a three-peer cluster under pgbench: coordinator last, no failed transaction, the VIP moves once, term +1 at most, no failover', { skip, timeout: 300_000 }, async () => {
  // Health checks tolerant of a loaded 2-core machine (three pgbench, three peers, three
  // servers): a standby failed over because its checks timed out is not what this test is
  // about; and sessions on the primary only, since a standby leaving service still ends the
  // sessions that use it (sessions surviving failover is another feature). A 3 s election
  // timeout (lease 2.9 s) for the same reason: a successor compiling its TypeScript starves the
  // leader's heartbeats here, and a follower without word from it for 0.9 s refuses writes.
  const b = await bed({ watchdog: { election_timeout_ticks: 30 }, peer: { health_check: { period_ms: 1000, timeout_ms: 4000, connect_timeout_ms: 4000, max_retries: 3, retry_delay_ms: 500 }, proxy: { load_balance: false } } });
  const started: number[] = [];
  let sampler: NodeJS.Timeout | undefined;
  try {
    const coord = await oneHolder(b);
    const peers = rollingPeers(NAMES.map((n) => b.peers.get(n)!.configFile), [...NAMES]);
    const term = async (): Promise<number> => Math.max(...(await Promise.all(peers.map((p) => new ApiClient({ admin: p.admin }).get<StatusView>('/v1/status').then((s) => s.raft.term, () => 0)))));
    const c = b.cluster.primary;
    await run(pgBin('pgbench'), ['-i', '-s', '1', '-q', '-h', c.host, '-p', String(c.port), '-U', SUPERUSER, 'postgres'], { asPostgres: false, env: { ...process.env, PGPASSWORD: SUPERUSER_PASSWORD } });
    // Each peer routes writes once its first entries are committed; then the load starts.
    await new Promise((r) => setTimeout(r, 1000));
    const termBefore = await term();
    const benches = NAMES.map((n, i) => pgbench(b.peers.get(n)!, (['simple', 'extended', 'prepared'] as const)[i]!, SECONDS));
    let benchEnded = false;
    void Promise.all(benches.map((x) => x.done)).then(() => (benchEnded = true));
    // The VIP holder, every 50 ms: the list of holders it went through.
    const seen: Name[][] = [b.holders()];
    sampler = setInterval(() => {
      const h = b.holders();
      if (JSON.stringify(h) !== JSON.stringify(seen.at(-1))) seen.push(h);
    }, 50);
    await new Promise((r) => setTimeout(r, 2000));

    const args = ['rolling-restart', ...peers.flatMap((p) => ['-c', p.file, '--name', p.name])];
    const cmd = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PGWATCHDOG_LOG_LEVEL: 'info' } });
    let out = '';
    const onOut = (d: Buffer) => {
      out += d.toString();
      for (const m of out.matchAll(/restarted: new process (\d+)/g)) if (!started.includes(Number(m[1]))) started.push(Number(m[1]));
    };
    cmd.stdout.on('data', onOut);
    cmd.stderr.on('data', onOut);
    // 'exit', not 'close': the successors keep the inherited output open.
    const code = await new Promise<number | null>((r) => cmd.on('exit', (x) => r(x)));
    const lines = out.split('\n').filter((l) => !l.startsWith('{'));
    const endedEarly = benchEnded;
    assert.equal(code, 0, `rolling-restart succeeded:\n${lines.join('\n')}`);
    const order = /rolling restart of (\S+), (\S+), (\S+) \(/.exec(out);
    assert.ok(order, out);
    assert.equal(order[3], coord, `the coordinator (${coord}) restarted last: ${order[0]}`);
    assert.equal(started.length, 3, `three new processes (${started.join(', ')})`);
    assert.match(out, /rolling restart done: 3 peers restarted/);

    const results = await Promise.all(benches.map(async (x) => ({ mode: x.mode, ...(await x.done) })));
    clearInterval(sampler);
    // The new processes' log lines that say why a client could have been hurt.
    const why = out.split('\n').filter((l) => /left service|isolation|backend state changed|routing gates/.test(l)).join('\n');
    for (const r of results) {
      assert.equal(r.code, 0, `pgbench -M ${r.mode}: no aborted client, no failed transaction:\n${r.out}\n${why}`);
      assert.doesNotMatch(r.out, /aborted|error/i, `pgbench -M ${r.mode}: ${r.out}`);
      assert.match(r.out, /number of failed transactions: 0 /, `pgbench -M ${r.mode}: ${r.out}`);
      assert.ok(processed(r.out) > 0, r.out);
    }
    assert.ok(!endedEarly, `pgbench still ran when the rolling restart ended (raise SECONDS): ${lines.join('\n')}`);
    // A move passes through no holder (the old one drops the VIP before the new one takes it).
    const held = seen.filter((h) => h.length > 0).map((h) => h.join());
    const moves = held.filter((h, i) => i > 0 && h !== held[i - 1]).length;
    assert.ok(moves <= 1 && seen.every((h) => h.length <= 1), `the VIP moved at most once, never two holders: ${JSON.stringify(seen)}`);
    const termAfter = await term();
    assert.ok(termAfter - termBefore <= 1, `one leadership transfer at most, no election storm: term ${termBefore} → ${termAfter}`);
    assert.equal(b.failoverCount(), 0, 'no failover because of the restarts');
  } finally {
    clearInterval(sampler);
    await stopPids(started);
    await b.teardown();
  }
});
