// The operator's view of a real peer process in front of a real primary and standby: the
// Patroni-style checks, SHOW WATCHDOG_NODES through the proxy, the CLI's tables and --json,
// and attach/detach/promote through the CLI and the API really changing where psql's
// statements go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import pg from 'pg';
import { parse, stringify } from 'yaml';
import { createCluster, pgBin } from '../support/pg.js';
import { startPeerProcess } from '../support/peer.js';
import { parsePrometheusText, sampleValue } from '../support/prom-text.js';

const BIN = new URL('../../bin/pgwatchdog.js', import.meta.url).pathname;
const TOKEN = 'admin-test-token';

function psql(port: number, sql: string): string {
  const r = spawnSync(pgBin('psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-XqAt', '-F', '|', '-c', sql], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, `psql ${sql}: ${r.stderr}`);
  return r.stdout.trim();
}

function cli(args: string[], env: Record<string, string | undefined>): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: undefined, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function assertFits(text: string, what: string): void {
  for (const line of text.split('\n')) assert.ok(line.length <= 80, `${what}: a line wider than 80 columns (${line.length}): ${line}`);
  assert.ok(!text.includes('\x1b['), `${what}: no colour when stdout is not a terminal`);
}

test('a peer as operators see it: checks, SHOW WATCHDOG_NODES, CLI tables and --json, attach/detach/promote changing routing', async () => {
  const cluster = await createCluster({ standbys: 1 });
  try {
    // Weight 0 on the primary: every read goes to the standby while it is attached.
    const peer = await startPeerProcess(cluster, {
      admin: { token: TOKEN },
      watchdog: { name: 'alpha' },
      backends: cluster.nodes.map((n, i) => ({ name: n.name, host: n.host, port: n.port, data_dir: n.dataDir, weight: i === 0 ? 0 : 1 })),
    });
    const admin = `http://127.0.0.1:${peer.adminPort}`;
    const env = { PGWATCHDOG_ADMIN: admin, PGWATCHDOG_TOKEN: TOKEN };
    const get = async (path: string) => {
      const r = await fetch(admin + path);
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    const [primaryPort, standbyPort] = [String(cluster.primary.port), String(cluster.standbys[0]!.port)];
    try {
      // ---- checks ---------------------------------------------------------------------------
      for (const p of ['/health', '/coordinator', '/primary', '/readiness', '/liveness', '/replica']) {
        const r = await get(p);
        assert.equal(r.status, 200, `${p}: ${JSON.stringify(r.body)}`);
      }
      // The standby's lag becomes known after the replication monitor's first sample.
      await until('a standby within 16MB', async () => ((await get('/replica?lag=16MB')).status === 200 ? true : undefined));

      // ---- SHOW WATCHDOG_NODES: the same fields as `pgwatchdog watchdog` ----------------------
      const show = psql(peer.port, 'SHOW WATCHDOG_NODES');
      const row = show.split('|');
      const wd = cli(['watchdog', '--json'], env);
      assert.equal(wd.code, 0, wd.err);
      const peers = JSON.parse(wd.out) as { nodes: Record<string, string>[]; info: { quorumState: string; leaderNodeName: string } };
      assert.equal(peers.nodes.length, 1);
      assert.deepEqual(row, Object.values(peers.nodes[0]!), 'SHOW WATCHDOG_NODES row = pgwatchdog watchdog --json node');
      assert.equal(peers.nodes[0]!.node_name, 'alpha');
      assert.equal(peers.nodes[0]!.pgpool_port, String(peer.port));
      assert.equal(peers.nodes[0]!.status_name, 'STANDALONE');
      assert.equal(peers.info.leaderNodeName, 'alpha');
      const wdText = cli(['watchdog'], env);
      assert.equal(wdText.code, 0);
      assert.match(wdText.out, /^Total Nodes\s+: 1$/m);
      assert.match(wdText.out, /^Quorum state\s+: QUORUM EXIST$/m);
      assert.match(wdText.out, /^Leader Node Name\s+: alpha$/m);
      assertFits(wdText.out, 'watchdog');

      // ---- status / nodes: tables and --json ---------------------------------------------
      const st = cli(['status'], env);
      assert.equal(st.code, 0, st.err);
      assertFits(st.out, 'status');
      assert.match(st.out, /peer alpha standalone\s+coordinator alpha/);
      assert.match(st.out, new RegExp(`^\\s*0\\s+primary\\s+127\\.0\\.0\\.1:${primaryPort}\\s+up\\s+primary\\s`, 'm'));
      assert.match(st.out, new RegExp(`^\\s*1\\s+standby1\\s+127\\.0\\.0\\.1:${standbyPort}\\s+up\\s+standby\\s`, 'm'));
      const stJson = JSON.parse(cli(['status', '--json'], env).out) as { coordinator: string; backends: { id: number; status: string; role: string; lsn: string | null }[] };
      assert.equal(stJson.coordinator, 'alpha');
      assert.deepEqual(stJson.backends.map((b) => [b.id, b.status, b.role]), [[0, 'up', 'primary'], [1, 'up', 'standby']]);
      assert.match(stJson.backends[0]!.lsn ?? '', /^[0-9A-F]+\/[0-9A-F]+$/);
      const nodes = cli(['nodes'], env);
      assert.equal(nodes.code, 0);
      assertFits(nodes.out, 'nodes');
      assert.match(nodes.out, /^ID\s+ADDRESS\s+STATUS\s+PG\s+ROLE\s+LB\s+LAG\s+REPL\s+SYNC\s+READS$/m);
      assert.match(nodes.out, /^\s*1\s+\S+\s+up\s+up\s+standby\s+1\.00\s+.*streaming\s+async/m);
      const nodesJson = JSON.parse(cli(['nodes', '--json'], env).out) as { backends: { replicationState: string }[] };
      assert.equal(nodesJson.backends[1]!.replicationState, 'streaming');
      assert.equal(psql(peer.port, 'SELECT current_setting($$port$$)::int'), standbyPort, 'reads go to the standby');

      // ---- detach through the CLI: progress, then reads move to the primary ---------------------
      const det = cli(['detach', '1'], env);
      assert.equal(det.code, 0, det.err);
      assert.match(det.out, /queued as request #\d+: detach backend 1/);
      assert.match(det.out, /backend 1: up\/standby -> down\/standby \(detached by operator\)/);
      assert.match(det.out, /detach backend 1: ok in \d+ ms/);
      assert.equal(psql(peer.port, 'SELECT current_setting($$port$$)::int'), primaryPort, 'with the standby detached, reads go to the primary');
      assert.match(psql(peer.port, 'SHOW POOL_NODES'), /\|down\|/);
      const rep = await get('/replica');
      assert.equal(rep.status, 503, '/replica flips with no standby attached');
      assert.match(String(rep.body.reason), /no standby backend is up/);

      // ---- attach through the API: reads come back to the standby ----------------------------
      const att = await fetch(`${admin}/v1/backends/1/attach`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(att.status, 200, await att.clone().text());
      assert.equal(((await att.json()) as { failover: { kind: string } }).failover.kind, 'node_up');
      assert.equal(psql(peer.port, 'SELECT current_setting($$port$$)::int'), standbyPort, 'attached again, reads go to the standby');
      assert.equal((await get('/replica')).status, 200);

      // ---- refusals and exit codes -----------------------------------------------------------
      const noTok = cli(['detach', '1'], { PGWATCHDOG_ADMIN: admin, PGWATCHDOG_TOKEN: undefined });
      assert.equal(noTok.code, 1);
      assert.match(noTok.err, /needs the admin token: set PGWATCHDOG_TOKEN/);
      const wrongTok = cli(['detach', '1'], { PGWATCHDOG_ADMIN: admin, PGWATCHDOG_TOKEN: 'nope' });
      assert.equal(wrongTok.code, 1);
      assert.match(wrongTok.err, /401 wrong admin token/);
      const unknown = cli(['attach', '7'], env);
      assert.equal(unknown.code, 1);
      assert.match(unknown.err, /404 no backend 7/);
      const usage = cli(['attach', 'x'], env);
      assert.equal(usage.code, 2);
      const gone = cli(['status', '--admin', 'http://127.0.0.1:9'], {});
      assert.equal(gone.code, 3);
      assert.match(gone.err, /cannot reach the admin API at http:\/\/127\.0\.0\.1:9/);
      const notPrimary = cli(['promote', '0'], env);
      assert.equal(notPrimary.code, 1);
      assert.match(notPrimary.err, /promote backend 0 failed: .*not an attached standby/);
      assert.equal(psql(peer.port, 'SELECT current_setting($$port$$)::int'), standbyPort, 'refused calls changed nothing');

      // ---- status --watch refreshes by itself ---------------------------------------------------
      const watch = spawn(process.execPath, [BIN, 'status', '--watch'], { env: { ...process.env, ...env } });
      try {
        let out = '';
        watch.stdout.on('data', (d: Buffer) => (out += d.toString()));
        await until('two frames of status --watch', async () => ((out.match(/^peer alpha/gm) ?? []).length >= 2 ? true : undefined));
      } finally {
        watch.kill('SIGINT');
      }

      // ---- promote through the CLI: each step, then writes go to the new primary ---------------
      const pro = cli(['promote', '1'], env);
      assert.equal(pro.code, 0, `${pro.out}\n${pro.err}`);
      assert.match(pro.out, /queued as request #\d+: promote backend 1/);
      assert.match(pro.out, /backend 0: up\/primary -> down\/primary/);
      assert.match(pro.out, /backend 1: up\/standby -> up\/primary/);
      assert.match(pro.out, /^ {4}ok promote \[1\] \d+ ms: pg_promote\(\)/m);
      assert.match(pro.out, /promote backend 1: ok in \d+ ms/);
      // Progress lines are a log (they may wrap); the step lines are cut to the width.
      assertFits(pro.out.split('\n').filter((l) => l.startsWith('    ')).join('\n'), 'promote steps');
      assert.equal(psql(peer.port, 'CREATE TABLE admin_promoted (x int); SELECT current_setting($$port$$)::int'), standbyPort, 'writes go to the promoted standby');
      const prim = await get('/primary');
      assert.equal(prim.status, 200);
      assert.equal(prim.body.backend, 1);
      assert.equal((await get('/replica')).status, 503, 'no standby left once the old primary is detached');

      // With no standby left, a session settles on the primary alone and goes to native
      // forwarding after two requests: SHOW WATCHDOG_NODES is still answered by the proxy.
      const client = new pg.Client({ host: '127.0.0.1', port: peer.port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        for (let i = 0; i < 3; i++) await client.query('SELECT 1');
        const native = await client.query<{ node_name: string; is_local: string }>('SHOW  watchdog_nodes;');
        assert.deepEqual(native.rows.map((r) => [r.node_name, r.is_local]), [['alpha', 'true']]);
        await client.query('SELECT 1');
      } finally {
        await client.end();
      }

      const fo = JSON.parse(cli(['failovers', '--json'], env).out) as { source: string; history: { kind: string; ok: boolean; ranBy: string; nodes: number[]; steps: { name: string; ms: number; peer: string }[] }[] };
      assert.equal(fo.source, 'local', 'no watchdog: the engine history');
      // Newest first; the engine ran and recorded the refused promotion of the primary, while the
      // calls refused by the API (no token, unknown backend) never reached it.
      assert.deepEqual(fo.history.map((h) => [h.kind, h.nodes, h.ok]), [['promote', [1], true], ['promote', [0], false], ['node_up', [1], true], ['node_down', [1], true]]);
      assert.equal(fo.history[0]!.ranBy, 'alpha');
      assert.ok(fo.history[0]!.steps.some((s) => s.name === 'promote' && s.peer === 'alpha'));
      const foText = cli(['failovers'], env);
      assert.equal(foText.code, 0);
      assertFits(foText.out, 'failovers');
      assert.match(foText.out, /^failovers run by this peer \(no watchdog\)$/m);
      assert.match(foText.out, /^#\d+ \d\d:\d\d:\d\d promote of 1 by alpha, term 0: ok in \d+ ms\n {2}backend 1 is the new primary/m);

      const fams = parsePrometheusText(await (await fetch(`${admin}/metrics`)).text());
      assert.equal(sampleValue(fams, 'pgwatchdog_failovers_total', { kind: 'promote', result: 'ok' }), 1);
      assert.equal(sampleValue(fams, 'pgwatchdog_backend_role', { backend: '1', role: 'primary' }), 1);
      assert.equal(sampleValue(fams, 'pgwatchdog_backend_up', { backend: '0' }), 0);
      assert.ok((sampleValue(fams, 'pgwatchdog_backend_reads_routed_total', { backend: '1' }) ?? 0) >= 3, 'reads routed to the standby were counted');
      assert.ok((sampleValue(fams, 'pgwatchdog_backend_lsn_bytes', { backend: '1' }) ?? 0) > 0);

      // ---- reload through the API: about this peer, so never forwarded; token required ----------
      const cfg = parse(readFileSync(peer.configFile, 'utf8')) as { backends: { weight: number }[] };
      cfg.backends[0]!.weight = 3;
      writeFileSync(peer.configFile, stringify(cfg));
      assert.equal((await fetch(`${admin}/v1/reload`, { method: 'POST' })).status, 401);
      const rl = cli(['reload'], env);
      assert.equal(rl.code, 0, rl.err);
      assert.match(rl.out, /applied +backends\[0\]\.weight: 0 → 3/);
      assert.equal(((await get('/v1/backends/0')).body as { weight: number }).weight, 3);
    } finally {
      await peer.stop();
    }
  } finally {
    await cluster.teardown();
  }
});
