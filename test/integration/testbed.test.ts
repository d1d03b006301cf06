import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { createCluster, freePort, type PgCluster, type PgNode } from '../support/pg.js';
import { PORT_RANGE } from '../support/ports.js';

test('test bed: a row written on the primary is read on every standby, and teardown leaves nothing', async () => {
  const t0 = Date.now();
  const cluster = await createCluster({ standbys: 2 });
  const upMs = Date.now() - t0;
  try {
    assert.equal(await cluster.primary.isInRecovery(), false);
    for (const s of cluster.standbys) assert.equal(await s.isInRecovery(), true);
    await cluster.primary.sql('CREATE TABLE t (id int primary key, v text)');
    await cluster.primary.sql(`INSERT INTO t VALUES (1, 'written on primary')`);
    await cluster.waitReplicated();
    for (const s of cluster.standbys) {
      const rows = await s.sql<{ v: string }>('SELECT v FROM t WHERE id = 1');
      assert.deepEqual(rows, [{ v: 'written on primary' }], `${s.name} reads the row`);
    }
    const repl = await cluster.primary.sql<{ application_name: string; state: string }>(
      'SELECT application_name, state FROM pg_stat_replication ORDER BY application_name',
    );
    assert.deepEqual(repl.map((r) => [r.application_name, r.state]), [['standby1', 'streaming'], ['standby2', 'streaming']]);
  } finally {
    const t1 = Date.now();
    await cluster.teardown();
    console.log(`# test bed: primary + 2 standbys up in ${upMs} ms, torn down in ${Date.now() - t1} ms`);
  }
  const { existsSync } = await import('node:fs');
  assert.equal(existsSync(cluster.dir), false, 'temp dir removed');
  for (const n of cluster.nodes) assert.equal(n.pid(), undefined, `${n.name} stopped`);
});

test('test bed: kill -9, restart, promote and synchronous replication', async () => {
  const cluster = await createCluster({ standbys: 1, sync: 'first', slots: true });
  try {
    const [sync] = await cluster.primary.sql<{ sync_state: string }>('SELECT sync_state FROM pg_stat_replication');
    assert.equal(sync?.sync_state, 'sync');
    await cluster.primary.kill9();
    assert.equal(cluster.primary.pid(), undefined);
    const standby = cluster.standbys[0]!;
    await standby.promote();
    assert.equal(await standby.isInRecovery(), false);
    await standby.sql('CREATE TABLE after_promote (x int)');
  } finally {
    await cluster.teardown();
  }
});

test('test bed: a port taken between its draw and the server binding it moves the new node to a fresh port', async () => {
  // What CI saw: another process bound the port after the bed drew it and before PostgreSQL did.
  // Here the test is that process, for the primary (whose port its standbys' conninfo names) and
  // for one standby.
  const intruders: Server[] = [];
  const taken = new Map<string, number>();
  const takeFirstPort = async (node: PgNode) => {
    if (node.name === 'standby2' || taken.has(node.name)) return;
    taken.set(node.name, node.port);
    intruders.push(await new Promise<Server>((resolve, reject) => {
      const srv = createServer().once('error', reject);
      srv.listen(node.port, node.host, () => resolve(srv));
    }));
  };
  let cluster: PgCluster | undefined;
  try {
    cluster = await createCluster({ standbys: 2, beforeStart: takeFirstPort });
    assert.deepEqual([...taken.keys()].sort(), ['primary', 'standby1']);
    for (const n of [cluster.primary, cluster.standbys[0]!]) {
      assert.notEqual(n.port, taken.get(n.name), `${n.name} moved off the taken port`);
      assert.equal(await n.isInRecovery(), n !== cluster.primary, `${n.name} serves on its new port ${n.port}`);
      assert.match(readFileSync(n.logFile, 'utf8'), /Address already in use/, `${n.name}'s log shows the first attempt`);
    }
    const [conninfo] = await cluster.standbys[0]!.sql<{ c: string }>(`SELECT current_setting('primary_conninfo') AS c`);
    assert.match(conninfo!.c, new RegExp(`port=${cluster.primary.port}\\b`), 'standbys follow the primary at its final port');
    const repl = await cluster.primary.sql<{ application_name: string }>(`SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1`);
    assert.deepEqual(repl.map((r) => r.application_name), ['standby1', 'standby2']);
  } finally {
    for (const s of intruders) s.close();
    await cluster?.teardown();
  }
});

test('test bed: ports are drawn below the ephemeral range and never twice in this process tree', async () => {
  // Two other processes draw ports at the same time as this one, as parallel test files do.
  const script = `import { freePort } from ${JSON.stringify(new URL('../support/ports.ts', import.meta.url).pathname)};
const ports = await Promise.all(Array.from({ length: 200 }, () => freePort()));
process.stdout.write(JSON.stringify(ports) + '\\n');
process.stdin.resume(); // hold the reservations until the parent closes stdin`;
  const children = [0, 1].map(() => spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] }));
  try {
    const drawn = await Promise.all([
      ...children.map(
        (c) =>
          new Promise<number[]>((resolve, reject) => {
            let out = '';
            c.stdout!.on('data', (d: Buffer) => {
              out += d.toString();
              if (out.endsWith('\n')) resolve(JSON.parse(out) as number[]);
            });
            c.once('exit', (code, signal) => reject(new Error(`port-drawing child exited (${code ?? signal}) before answering`)));
          }),
      ),
      Promise.all(Array.from({ length: 200 }, () => freePort())),
    ]);
    const all = drawn.flat();
    assert.equal(new Set(all).size, all.length, 'no port drawn twice');
    for (const p of all) assert.ok(p >= PORT_RANGE.first && p < PORT_RANGE.end && p < PORT_RANGE.ephemeralLow, `port ${p} below the ephemeral range`);
  } finally {
    for (const c of children) c.kill();
  }
});
