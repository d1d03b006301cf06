// The operators' view of a three-peer watchdog cluster (real peer processes over the
// PostgreSQL test bed): every peer's API names the same coordinator and VIP holder,
// `/coordinator` answers 200 on the coordinator only and moves after a kill -9, a mutating
// call sent to a non-coordinator is forwarded and changes routing on every peer, transfer
// moves the coordinator, and the CLI, SHOW WATCHDOG_NODES and /metrics show the cluster.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { parsePrometheusText, sampleValue } from '../support/prom-text.js';
import { bed, NAMES, oneHolder, query, waitFor, type Bed, type Name } from '../support/watchdog-bed.js';

const BIN = new URL('../../bin/pgwatchdog.js', import.meta.url).pathname;
const TOKEN = 'cluster-admin-token';

interface Status {
  peer: { name: string; state: string; coordinator: boolean };
  coordinator: string | null;
  vip: { address: string | null; holder: string | null };
  raft: { term: number; commitIndex: number };
  backends: { id: number; status: string }[];
  peers: { name: string; state: string; lastSeen: string | null }[];
}

describe('watchdog admin: three peer processes', { concurrency: false }, () => {
  let b: Bed;
  const admin = (n: Name) => `http://127.0.0.1:${b.peers.get(n)!.adminPort}`;
  const live = () => NAMES.filter((n) => b.peers.get(n)!.proc.exitCode === null && b.peers.get(n)!.proc.signalCode === null);
  const status = async (n: Name) => (await (await fetch(`${admin(n)}/v1/status`)).json()) as Status;
  const post = (n: Name, path: string) => fetch(admin(n) + path, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  /** The coordinator once every live peer's API names the same one. */
  const agreed = (what = 'every peer names the same coordinator', timeoutMs = 20_000) =>
    waitFor(
      what,
      async () => {
        const all = await Promise.all(live().map(status));
        const c = all[0]!.coordinator;
        return c !== null && all.every((s) => s.coordinator === c) ? (c as Name) : undefined;
      },
      timeoutMs,
    );

  before(async () => {
    b = await bed({ adminToken: TOKEN });
  });
  after(async () => {
    await b?.teardown();
  });

  it('every peer agrees on coordinator and VIP holder; /coordinator is 200 there only; CLI, SHOW WATCHDOG_NODES and /metrics list the peers', async () => {
    const holder = await oneHolder(b);
    await waitFor('every peer has heard from the others', async () => (await Promise.all(NAMES.map(status))).every((s) => s.peers.every((p) => p.name === s.peer.name || p.lastSeen !== null)));
    const c = await agreed();
    assert.equal(c, holder, 'the coordinator is the peer whose escalation command ran');
    await waitFor('every peer names the VIP holder', async () => (await Promise.all(NAMES.map(status))).every((s) => s.vip.holder === holder));
    for (const n of NAMES) {
      const s = await status(n);
      assert.equal(s.peer.name, n);
      assert.equal(s.peer.coordinator, n === c);
      assert.equal(s.vip.address, '10.254.0.1/32');
      assert.ok(s.raft.term > 0 && s.raft.commitIndex > 0, `${n}: Raft term/commit ${JSON.stringify(s.raft)}`);
      assert.deepEqual(s.peers.map((p) => p.name), [...NAMES]);
      assert.equal((await fetch(`${admin(n)}/coordinator`)).status, n === c ? 200 : 503, `${n}: /coordinator`);
    }
    await waitFor('peer states settle', async () => (await status(c)).peers.every((p) => p.state === (p.name === c ? 'coordinator' : 'standby')));

    const other = NAMES.find((n) => n !== c)!;
    const r = spawnSync(process.execPath, [BIN, 'watchdog', '--json'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, PGWATCHDOG_ADMIN: admin(other) } });
    assert.equal(r.status, 0, r.stderr);
    const wd = JSON.parse(r.stdout) as { nodes: Record<string, string>[]; info: { totalNodes: number; quorumState: string; leaderNodeName: string } };
    assert.deepEqual(wd.nodes.map((x) => x.node_name), [...NAMES]);
    assert.equal(wd.info.totalNodes, 3);
    assert.equal(wd.info.quorumState, 'QUORUM EXIST');
    assert.equal(wd.info.leaderNodeName, c);
    assert.deepEqual(
      wd.nodes.map((x) => x.status_name),
      NAMES.map((n) => (n === c ? 'LEADER' : 'STANDBY')),
    );
    const show = await query(b.peers.get(other)!, 'SHOW WATCHDOG_NODES');
    assert.deepEqual(show.rows.map((x: Record<string, string>) => x.node_name), [...NAMES]);
    assert.deepEqual(show.rows.map((x: Record<string, string>) => x.status_name), wd.nodes.map((x) => x.status_name));
    // Every peer's proxy port, as each peer gossips it (the cancel forwarding finds its peer by it).
    await waitFor('every peer knows every proxy port', async () => {
      const rows = (await query(b.peers.get(other)!, 'SHOW WATCHDOG_NODES')).rows as Record<string, string>[];
      return rows.every((x, i) => x.pgpool_port === String(b.peers.get(NAMES[i]!)!.port));
    });

    const fams = parsePrometheusText(await (await fetch(`${admin(c)}/metrics`)).text());
    assert.ok((sampleValue(fams, 'pgwatchdog_raft_term') ?? 0) > 0);
    assert.equal(sampleValue(fams, 'pgwatchdog_raft_leader'), 1);
    assert.equal(sampleValue(fams, 'pgwatchdog_coordinator'), 1);
    assert.equal(sampleValue(fams, 'pgwatchdog_quorum'), 1);
    assert.equal(sampleValue(fams, 'pgwatchdog_watchdog_peers_alive'), 3);
    assert.equal(sampleValue(fams, 'pgwatchdog_vip_holder', { peer: c, address: '10.254.0.1/32' }), 1);
    assert.ok((sampleValue(fams, 'pgwatchdog_vip_escalations_total') ?? 0) >= 1);
    for (const n of NAMES) assert.equal(sampleValue(fams, 'pgwatchdog_watchdog_peer_state', { peer: n, state: n === c ? 'coordinator' : 'standby' }), 1, `peer_state of ${n}`);
    const otherFams = parsePrometheusText(await (await fetch(`${admin(other)}/metrics`)).text());
    assert.equal(sampleValue(otherFams, 'pgwatchdog_raft_leader'), 0);
    assert.equal(sampleValue(otherFams, 'pgwatchdog_coordinator'), 0);
  });

  it('detach and attach sent to a non-coordinator are forwarded and change routing on every peer', async () => {
    const c = await agreed();
    // Sessions open on the primary: wait until every peer routes one (the coordinator's
    // find-primary entries may commit after it escalates).
    for (const n of NAMES) await waitFor(`${n} routes sessions`, async () => (await query(b.peers.get(n)!, 'SELECT 1')).rowCount === 1);
    const other = NAMES.find((n) => n !== c)!;
    const refused = await fetch(`${admin(other)}/v1/backends/2/detach`, { method: 'POST' });
    assert.equal(refused.status, 401, 'no token, no action');

    const det = await post(other, '/v1/backends/2/detach');
    assert.equal(det.status, 200, await det.clone().text());
    assert.equal(det.headers.get('x-pgwatchdog-answered-by'), c, 'answered by the coordinator');
    const standbyPort = b.cluster.standbys[1]!.port;
    for (const n of NAMES) {
      await waitFor(`${n} routes without backend 2`, async () => (await status(n)).backends[2]!.status === 'down');
      // Reads through this peer never reach the detached standby.
      for (let i = 0; i < 6; i++) assert.notEqual((await query(b.peers.get(n)!, 'SELECT inet_server_port() AS p')).rows[0].p, standbyPort, `${n} sent a read to detached backend 2`);
    }

    const att = await post(other, '/v1/backends/2/attach');
    assert.equal(att.status, 200, await att.clone().text());
    for (const n of NAMES) await waitFor(`${n} routes to backend 2 again`, async () => (await status(n)).backends[2]!.status === 'up');
  });

  it('transfer sent to any peer moves the coordinator', async () => {
    const c = await agreed();
    const to = NAMES.find((n) => n !== c)!;
    const via = NAMES.find((n) => n !== c && n !== to)!;
    const r = await post(via, `/v1/coordinator/transfer?to=${to}`);
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal(await agreed(`every peer names ${to}`), to);
    assert.equal((await fetch(`${admin(to)}/coordinator`)).status, 200);
    assert.equal((await fetch(`${admin(c)}/coordinator`)).status, 503);
    const bad = await post(via, '/v1/coordinator/transfer?to=nobody');
    assert.equal(bad.status, 404, await bad.clone().text());
  });

  it('kill -9 of the coordinator: /coordinator flips to another peer and the others agree', async () => {
    const c = await agreed();
    await b.peers.get(c)!.kill9();
    const next = await waitFor(
      'another peer answers /coordinator 200',
      async () => {
        for (const n of live()) if ((await fetch(`${admin(n)}/coordinator`)).status === 200) return n;
        return undefined;
      },
      30_000,
    );
    assert.notEqual(next, c);
    assert.equal(await agreed('the two survivors agree', 20_000), next);
    await waitFor(`${next} shows ${c} as lost`, async () => (await status(next)).peers.find((p) => p.name === c)!.state === 'lost');
  });
});
