// Reload (SIGHUP) on a real peer process: a changed live setting takes effect for new sessions
// while an open client session carries on untouched; a key that needs a restart is named as
// such; an invalid file changes nothing and the log says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import pg from 'pg';
import { parse, stringify } from 'yaml';
import { createCluster, SUPERUSER, SUPERUSER_PASSWORD } from '../support/pg.js';
import { startPeerProcess, type LogLine, type PeerProcess } from '../support/peer.js';

function client(port: number): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
}

async function readPort(port: number): Promise<number> {
  const c = client(port);
  await c.connect();
  try {
    return (await c.query<{ p: number }>('SELECT inet_server_port() AS p')).rows[0]!.p;
  } finally {
    await c.end();
  }
}

/** Edits the peer's config file, sends SIGHUP and returns the reload's log line. */
interface EditableConfig {
  backends: { weight?: number }[];
  proxy: Record<string, unknown>;
  failover: Record<string, unknown>;
}

async function reload(peer: PeerProcess, edit: (cfg: EditableConfig) => void, msg: RegExp): Promise<LogLine> {
  const cfg = parse(readFileSync(peer.configFile, 'utf8')) as EditableConfig;
  edit(cfg);
  writeFileSync(peer.configFile, stringify(cfg));
  const before = peer.logs.length;
  peer.proc.kill('SIGHUP');
  return peer.waitForLog((l) => peer.logs.indexOf(l) >= before && msg.test(l.msg));
}

test('SIGHUP: live settings apply with sessions up, restart-only keys are named, an invalid file changes nothing', async () => {
  const cluster = await createCluster({ standbys: 1 });
  try {
    // Weight 0 on the primary: every new session reads from the standby.
    const peer = await startPeerProcess(cluster, { backends: cluster.nodes.map((n, i) => ({ name: n.name, host: n.host, port: n.port, weight: i === 0 ? 0 : 1 })) });
    const a = client(peer.port);
    try {
      await peer.waitForLog((l) => l.msg === 'peer ready');
      await a.connect();
      await a.query("SET application_name = 'kept across reloads'");
      const aPid = (await a.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      assert.equal(await readPort(peer.port), cluster.standbys[0]!.port, 'reads go to the standby before the reload');

      // 1. Swap the weights (live) and change a failover timeout (needs a restart).
      const done = await reload(
        peer,
        (cfg) => {
          cfg.backends[0]!.weight = 1;
          cfg.backends[1]!.weight = 0;
          cfg.failover.command_timeout_ms = 1234;
        },
        /^configuration reloaded/,
      );
      assert.deepEqual((done.applied as { key: string }[]).map((c) => c.key).sort(), ['backends[0].weight', 'backends[1].weight']);
      assert.deepEqual(done.needsRestart, ['failover.command_timeout_ms']);
      assert.ok(peer.logs.some((l) => l.level === 40 && l.msg === 'reload: failover.command_timeout_ms changed but needs a restart to take effect' && l.after === 1234));
      assert.equal(await readPort(peer.port), cluster.primary.port, 'new sessions read from the primary after the reload');
      assert.equal((await a.query<{ application_name: string }>('SHOW application_name')).rows[0]!.application_name, 'kept across reloads', 'the open session carried on');

      // 2. An invalid file: refused, nothing changes (max_clients: 1 would refuse new sessions).
      const refused = await reload(
        peer,
        (cfg) => {
          cfg.proxy.max_clients = 1;
          cfg.proxy.colour = 'blue';
        },
        /^reload refused/,
      );
      assert.equal(refused.level, 50);
      assert.ok((refused.problems as string[]).some((p) => p === 'proxy: unknown key "colour"'), JSON.stringify(refused.problems));
      assert.equal(await readPort(peer.port), cluster.primary.port, 'a second session is still accepted: max_clients was not taken');

      // 3. The same setting from a valid file applies at once: the open session stays, a new one is refused.
      const limited = await reload(
        peer,
        (cfg) => {
          delete cfg.proxy.colour;
        },
        /^configuration reloaded/,
      );
      assert.deepEqual(limited.applied, [{ key: 'proxy.max_clients', before: 1000, after: 1 }]);
      await assert.rejects(readPort(peer.port), /too many clients/);
      const again = await a.query<{ pid: number; app: string }>("SELECT pg_backend_pid() AS pid, current_setting('application_name') AS app");
      assert.deepEqual(again.rows[0], { pid: aPid, app: 'kept across reloads' }, 'the first session is on the same backend connection, with its settings');
    } finally {
      await a.end().catch(() => undefined);
      assert.equal(await peer.stop(), 0);
    }
  } finally {
    await cluster.teardown();
  }
});
