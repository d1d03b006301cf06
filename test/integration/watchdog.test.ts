// Three real peer processes on loopback, a watchdog cluster over the PostgreSQL test bed.
// VIP commands write marker files (the real address test runs in network namespaces).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bed, isEscalated, NAMES, oneHolder, query, waitFor, type Bed } from '../support/watchdog-bed.js';

describe('watchdog: three peer processes', { concurrency: false }, () => {
  let b: Bed;
  before(async () => {
    b = await bed();
  });
  after(async () => {
    await b?.teardown();
  });

  it('elects one coordinator, which escalates; every peer routes writes to the primary', async () => {
    const holder = await oneHolder(b);
    const hp = b.peers.get(holder)!;
    await hp.waitForLog(isEscalated);
    await hp.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('coordinator: claim'));
    await waitFor('pgwd1 routes writes', async () => (await query(b.peers.get('pgwd1')!, 'CREATE TABLE IF NOT EXISTS wd (peer text)')) !== undefined);
    for (const n of NAMES) {
      await waitFor(`${n} routes writes`, async () => (await query(b.peers.get(n)!, `INSERT INTO wd VALUES ('${n}')`)).rowCount === 1);
    }
    const rows = await b.cluster.primary.sql<{ peer: string }>('SELECT peer FROM wd ORDER BY peer');
    assert.deepEqual(rows.map((r) => r.peer), [...NAMES]);
    assert.deepEqual(b.holders(), [holder]);
  });

  it('kill -9 of the coordinator: another peer escalates; the restarted one joins as STANDBY', async () => {
    const first = await oneHolder(b);
    await b.peers.get(first)!.kill9();
    const second = await waitFor('another peer escalates', () => {
      const h = b.holders();
      return h.length === 1 && h[0] !== first ? h[0] : undefined;
    }, 20_000);
    const restarted = await b.start(first);
    await restarted.waitForLog((l) => l.msg === 'raft role changed' && l.role === 'follower' && l.leader === second, 20_000);
    await new Promise((r) => setTimeout(r, 2000));
    assert.deepEqual(b.holders(), [second], 'the restarted peer did not take the VIP back');
    await waitFor(`${first} routes writes again`, async () => (await query(restarted, `INSERT INTO wd VALUES ('again')`)).rowCount === 1);
  });

  it('SIGTERM on the coordinator hands leadership over before exit: no election timeout passes', async () => {
    const holder = await oneHolder(b);
    const hp = b.peers.get(holder)!;
    const others = NAMES.filter((n) => n !== holder);
    const marks = new Map(others.map((n) => [n, b.peers.get(n)!.logs.length]));
    const t0 = Date.now();
    assert.equal(await hp.stop(), 0);
    const handed = hp.logs.find((l) => l.msg === 'leadership handed over');
    assert.ok(handed, 'the stopping coordinator handed leadership over');
    const next = await waitFor('a new coordinator escalates', () => {
      const h = b.holders();
      return h.length === 1 && h[0] !== holder ? h[0] : undefined;
    }, 10_000);
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
    assert.equal(handed.to, next);
    // the new leader won by the transfer (timeoutNow), not after an election timeout: no pre-vote round happened
    for (const n of others) {
      const l = b.peers.get(n)!.logs.slice(marks.get(n)!);
      assert.ok(!l.some((x) => x.msg === 'raft role changed' && x.role === 'pre-candidate'), `${n} ran no pre-vote`);
    }
    await b.start(holder);
  });

  it('a peer that alone sees a backend down only quarantines it', async () => {
    // pgwd3 checks backend 2 with a user that does not exist: only it sees it down.
    await b.peers.get('pgwd3')!.stop();
    const badCheck = b.cluster.nodes.map((n, i) => ({
      name: n.name,
      host: n.host,
      port: n.port,
      data_dir: n.dataDir,
      ...(i === 2 ? { health_check: { user: 'nobody_here' } } : {}),
    }));
    const p3 = await b.start('pgwd3', { backends: badCheck });
    await p3.waitForLog((l) => l.msg.startsWith('local quarantine:') && l.backend === 2, 30_000);
    await p3.waitForLog((l) => l.msg === 'backend state changed' && l.backend === 2 && l.status === 'quarantine', 10_000);
    await new Promise((r) => setTimeout(r, 3000));
    for (const n of NAMES) {
      const p = b.peers.get(n)!;
      assert.equal(p.logs.filter((l) => l.msg === 'failover request queued').length, 0, `${n} queued no failover`);
    }
    // pgwd3 goes back to the normal checks: the quarantine is lifted.
    await p3.stop();
    const again = await b.start('pgwd3');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(again.logs.filter((l) => l.msg.startsWith('local quarantine:')).length, 0);
  });

  it('a coordinator cut off from the others de-escalates within an election timeout, fails nothing over and refuses writes after the lease', async () => {
    const holder = await oneHolder(b);
    const hp = b.peers.get(holder)!;
    const failoversBefore = b.failoverCount();
    const mark = hp.logs.length;
    const t0 = Date.now();
    b.cut(holder, 'all');
    try {
      await waitFor('de-escalation on the cut-off peer', () => hp.logs.slice(mark).find((l) => l.msg.startsWith('VIP de-escalation') && l.msg.endsWith('succeeded')), 10_000);
      const took = Date.now() - t0;
      // election timeout: 10..20 ticks of 100 ms, plus the fault file poll (100 ms) and the command
      assert.ok(took < 3500, `de-escalated after ${took} ms`);
      await waitFor('another peer escalates', () => {
        const h = b.holders();
        return h.length === 1 && h[0] !== holder ? h : undefined;
      }, 15_000);
      // Its view counts only while its link is up: the others drop the silent link and see it lost.
      const other = b.peers.get(NAMES.find((n) => n !== holder)!)!;
      await waitFor('the others see the cut-off peer lost', async () => {
        const v = (await (await fetch(`http://127.0.0.1:${other.adminPort}/v1/peers`)).json()) as { peers: { name: string; state: string }[] };
        return v.peers.find((p) => p.name === holder)?.state === 'lost';
      }, 10_000);
      await waitFor('isolated peer refuses writes', () => hp.logs.slice(mark).find((l) => typeof l.msg === 'string' && l.msg.startsWith('isolation: NETWORK ISOLATION')), 10_000);
      // The isolated peer's routing gate refuses writes (the proxy answers them with 25006 and
      // this reason); the backends keep their decided state, so reads keep going.
      const gate = await waitFor('the isolated peer refuses writes', () => hp.logs.slice(mark).find((l) => typeof l.msg === 'string' && l.msg.startsWith('routing gates') && typeof l.refuseWrites === 'string'), 10_000);
      assert.match(String(gate.refuseWrites), /NETWORK ISOLATION: .*connect through the VIP/);
      // What a client sees: a write is refused with 25006 and the reason; a read still works.
      const refused = await waitFor('a write through the isolated peer is refused', async () => {
        try {
          await query(hp, `INSERT INTO wd VALUES ('isolated')`);
          return false;
        } catch (err) {
          return (err as { code?: string }).code === '25006' ? (err as Error) : false;
        }
      }, 10_000);
      assert.match(refused.message, /^cannot execute a write on isolated pgwatchdog peer: NETWORK ISOLATION: .*connect through the VIP/);
      const nodes = await query(hp, 'SHOW POOL_NODES');
      assert.ok(nodes.rows.some((r: Record<string, string>) => r.role === 'primary' && r.status === 'up'), `the primary stays up in SHOW POOL_NODES: ${JSON.stringify(nodes.rows)}`);
      assert.equal((await query(hp, 'SELECT 1 AS one')).rows[0].one, 1, 'reads keep working on the isolated peer');
      assert.equal(b.failoverCount(), failoversBefore, 'nothing failed over');
      assert.equal(hp.logs.slice(mark).filter((l) => l.msg === 'failover request queued').length, 0);
    } finally {
      b.cut(holder, null);
    }
    await waitFor('the healed peer routes writes again', async () => (await query(hp, `INSERT INTO wd VALUES ('healed')`)).rowCount === 1, 20_000);
  });

  it('kill -9 of the primary: exactly one failover command in the cluster; every peer routes writes to the new primary and shows the same record', async () => {
    const coord = await oneHolder(b);
    const before = b.failoverCount();
    await b.cluster.waitReplicated();
    await b.cluster.primary.kill9();
    await waitFor('one failover command', () => b.failoverCount() > before, 30_000);
    // Every peer, the coordinator included, held the old primary while the record was open.
    for (const n of NAMES) {
      await b.peers.get(n)!.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('routing gates') && Array.isArray(l.held) && l.held.includes(0), 10_000);
    }
    for (const n of NAMES) {
      await waitFor(`${n} writes to the new primary`, async () => (await query(b.peers.get(n)!, `INSERT INTO wd VALUES ('after-${n}')`)).rowCount === 1, 30_000);
    }
    await new Promise((r) => setTimeout(r, 2000));
    const lines = readFileSync(join(b.dir, 'failovers'), 'utf8').split('\n').filter(Boolean);
    assert.equal(lines.length - before, 1, lines.join('\n'));
    // %d is the old primary, %T the coordinator's Raft term (a fencing token, never 0 here)
    const [failed, term] = lines.at(-1)!.split(' ');
    assert.equal(failed, '0');
    assert.ok(Number(term) > 0, `term ${term}`);

    // GET /v1/failovers on every peer: the replicated record, the same on all three, finished,
    // with its steps and the peer that ran it (the coordinator, whose command wrote the line).
    const answers = await waitFor('every peer shows the same finished failover record', async () => {
      const all = await Promise.all(NAMES.map((n) => failoversOf(b, n)));
      const first = all[0]!;
      return all.every((a) => a.history.some(isTheFailover) && JSON.stringify(a.history) === JSON.stringify(first.history)) ? all : undefined;
    }, 15_000);
    for (const [i, a] of answers.entries()) {
      assert.equal(a.source, 'cluster', NAMES[i]);
      assert.equal(a.active, null, `${NAMES[i]}: nothing running`);
    }
    const rec = answers[0]!.history.find(isTheFailover)!;
    assert.equal(rec.ranBy, coord, 'run by the coordinator');
    assert.deepEqual([rec.kind, rec.nodes, rec.ok, rec.term, rec.oldPrimary, rec.resumes], ['node_down', [0], true, Number(term), 0, 0], JSON.stringify(rec));
    assert.ok(rec.newPrimary === 1 || rec.newPrimary === 2, `a standby became the primary: ${JSON.stringify(rec)}`);
    assert.ok(Date.parse(rec.finishedAt) >= Date.parse(rec.startedAt) && rec.durationMs === Date.parse(rec.finishedAt) - Date.parse(rec.startedAt), JSON.stringify(rec));
    const step = (name: string) => rec.steps.find((x) => x.name === name);
    for (const [name, backend] of [['promote', rec.newPrimary], ['failover_command', 0]] as const) {
      const x = step(name);
      assert.ok(x, `step ${name} on record: ${JSON.stringify(rec.steps)}`);
      assert.deepEqual([x.backend, x.ok, x.peer, x.term, x.runs], [backend, true, rec.ranBy, rec.term, 1], JSON.stringify(x));
      assert.ok(x.ms !== null && x.ms >= 0, `${name} has a duration: ${JSON.stringify(x)}`);
    }
    // The CLI shows the same record, through a peer that did not run it.
    const other = NAMES.find((n) => n !== rec.ranBy)!;
    const out = execFileSync(process.execPath, [new URL('../../bin/pgwatchdog.js', import.meta.url).pathname, 'failovers', '--admin', `http://127.0.0.1:${b.peers.get(other)!.adminPort}`], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } });
    assert.match(out, /^failover records of the watchdog cluster \(as applied at log index \d+\)$/m, out);
    assert.match(out, new RegExp(`^#${rec.seq} \\d\\d:\\d\\d:\\d\\d node_down of 0 by ${rec.ranBy}, term ${rec.term}: ok in \\d+ ms$`, 'm'), out);
    assert.match(out, /^ {4}ok failover_command \[0\] \d+ ms: /m, out);
  });

  it('a peer that dies without the test asking fails the wait at once, saying which, how and its last lines', async () => {
    const victim = b.peers.get('pgwd3')!;
    const t0 = Date.now();
    victim.proc.kill('SIGKILL'); // not victim.kill9(): as a crash would
    const err = await waitFor('something that never happens', () => false, 30_000).then(
      () => assert.fail('the wait ended without the crash'),
      (e: Error) => e,
    );
    assert.ok(Date.now() - t0 < 3000, `failed ${Date.now() - t0} ms after the kill`);
    assert.match(err.message, /^while waiting for something that never happens: peer pgwd3 \(proxy port \d+, pid \d+\) exited unexpectedly \(killed by SIGKILL\); last stderr lines:\n(.|\n)*last log lines:\n\{/);
    await b.start('pgwd3'); // replaced: waits go on
    assert.equal(await waitFor('a wait after the restart', () => 'ok', 1000), 'ok');
  });
});

interface FailoversAnswer {
  source: string;
  appliedIndex: number | null;
  active: unknown;
  history: {
    seq: number;
    kind: string;
    nodes: number[];
    term: number;
    ranBy: string;
    resumes: number;
    ok: boolean;
    oldPrimary: number | null;
    newPrimary: number | null;
    startedAt: string;
    finishedAt: string;
    durationMs: number;
    steps: { name: string; backend: number | null; ok: boolean | null; ms: number | null; detail: string; peer: string; term: number; runs: number }[];
  }[];
}

const isTheFailover = (h: FailoversAnswer['history'][number]) => h.kind === 'node_down' && h.nodes.join() === '0';

async function failoversOf(b: Bed, n: (typeof NAMES)[number]): Promise<FailoversAnswer> {
  const res = await fetch(`http://127.0.0.1:${b.peers.get(n)!.adminPort}/v1/failovers`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200, `${n}: GET /v1/failovers`);
  return (await res.json()) as FailoversAnswer;
}

describe('watchdog: the coordinator dies in the middle of a failover', { concurrency: false }, () => {
  let b: Bed;
  before(async () => {
    // A slow failover_command: the coordinator is killed while it runs. follow_primary_command
    // comes after it, so the dead coordinator never began it: the next one must run it, once.
    b = await bed({ failoverCommand: (file) => `echo %d >> ${file}.started; sleep 2; echo %d %T >> ${file}`, followPrimaryCommand: (file) => `echo %d %m %T >> ${file}` });
  });
  after(async () => {
    await b?.teardown();
  });

  it('the next coordinator finds the open failover and closes it; the command ran once', async () => {
    const coord = await oneHolder(b);
    const cp = b.peers.get(coord)!;
    // the coordinator escalates first and finds the primary next: writes route once that has committed
    await waitFor('the coordinator routes writes', async () => (await query(cp, 'CREATE TABLE IF NOT EXISTS mid (peer text)')) !== undefined);
    await b.cluster.waitReplicated();
    await b.cluster.primary.kill9();
    // killed while its failover_command runs (the command, in its own process group, finishes)
    await waitFor('the failover command starts', () => existsSync(join(b.dir, 'failovers.started')), 30_000);
    await cp.kill9();
    const others = NAMES.filter((n) => n !== coord);
    const resumed = await waitFor('another peer resumes the open failover', () => {
      for (const n of others) {
        const l = b.peers.get(n)!.logs.find((x) => x.msg === 'resumed failover ended');
        if (l) return { n, l };
      }
      return undefined;
    }, 30_000);
    for (const n of others) {
      await waitFor(`${n} writes to the new primary`, async () => (await query(b.peers.get(n)!, `INSERT INTO mid VALUES ('${n}')`)).rowCount === 1, 30_000);
      await waitFor(`${n} sees the failover finished`, () => b.peers.get(n)!.logs.find((l) => typeof l.msg === 'string' && /cluster state: failover \d+ finished/.test(l.msg)), 15_000);
    }
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(b.failoverCount(), 1, `failover_command ran ${b.failoverCount()} times (resumed by ${resumed.n}: ${String(resumed.l.summary)})`);

    // The record's steps, as every surviving peer applied them to the replicated state.
    const steps = (n: string) =>
      b.peers
        .get(n as (typeof NAMES)[number])!
        .logs.map((l) => (typeof l.msg === 'string' ? /^cluster state: failover \d+: step (\S+) of backend (\d+) (begun|done)(?: \((ok|FAILED)(?:: (.*))?\))? by (\S+) in term (\d+)$/s.exec(l.msg) : null))
        .filter((m) => m !== null)
        .map((m) => ({ step: m[1]!, backend: Number(m[2]), phase: m[3]!, ok: m[4] ?? null, result: m[5] ?? '', peer: m[6]!, term: Number(m[7]) }));
    const seen = steps(resumed.n);
    for (const n of others) assert.deepEqual(steps(n), seen, `${n} applied the same steps as ${resumed.n}`);
    const by = (step: string, phase: string) => seen.filter((x) => x.step === step && x.phase === phase);
    const [promoted] = by('promote', 'done');
    assert.ok(promoted && promoted.peer === coord && promoted.ok === 'ok', `the dead coordinator promoted: ${JSON.stringify(seen)}`);
    const newPrimary = promoted.backend;
    // failover_command: begun by the dead coordinator, then closed by the resumer on what it saw.
    const fcBegun = by('failover_command', 'begun');
    const fcDone = by('failover_command', 'done');
    assert.deepEqual(fcBegun.map((x) => [x.backend, x.peer]), [[0, coord]], JSON.stringify(seen));
    assert.equal(fcDone.length, 1, JSON.stringify(seen));
    assert.equal(fcDone[0]!.peer, resumed.n);
    assert.ok(fcDone[0]!.term > fcBegun[0]!.term, 'closed under the later term');
    assert.match(fcDone[0]!.result, new RegExp(`treated as done by a resumed run: backend ${newPrimary} is a primary now`));
    // The promotion is not run again; the remaining standby's follow_primary_command runs once, by the resumer.
    assert.equal(by('promote', 'begun').length, 1);
    const standbys = [1, 2].filter((id) => id !== newPrimary);
    assert.deepEqual(by('follow_primary_command', 'done').map((x) => [x.backend, x.peer, x.ok]), standbys.map((id) => [id, resumed.n, 'ok']));
    const follows = readFileSync(join(b.dir, 'follows'), 'utf8').split('\n').filter(Boolean);
    assert.deepEqual(
      follows.map((l) => l.split(' ').slice(0, 2).map(Number)),
      standbys.map((id) => [id, newPrimary]),
      `follow_primary_command ran once per standby, pointing at the new primary: ${follows.join(' | ')}`,
    );
    assert.equal(Number(follows[0]!.split(' ')[2]), fcDone[0]!.term, '%T is the resumer\'s term');

    // GET /v1/failovers on the survivors: the same record, run (finished) by the resumer, each
    // step with the peer that ran it.
    const answers = await waitFor('both survivors show the same finished record', async () => {
      const all = await Promise.all(others.map((n) => failoversOf(b, n)));
      return all.every((a) => a.history.some(isTheFailover) && JSON.stringify(a.history) === JSON.stringify(all[0]!.history)) ? all : undefined;
    }, 15_000);
    const rec = answers[0]!.history.find(isTheFailover)!;
    assert.deepEqual([rec.kind, rec.nodes, rec.ok, rec.ranBy, rec.resumes, rec.newPrimary], ['node_down', [0], true, resumed.n, 1, newPrimary], JSON.stringify(rec));
    const shown = (name: string, backend: number) => rec.steps.find((x) => x.name === name && x.backend === backend);
    assert.deepEqual(
      [shown('promote', newPrimary)?.peer, shown('promote', newPrimary)?.ok, shown('failover_command', 0)?.peer, shown('failover_command', 0)?.ok],
      [coord, true, resumed.n, true],
      JSON.stringify(rec.steps),
    );
    assert.equal(shown('failover_command', 0)?.ms, null, 'begun by one coordinator, closed by another: no duration of one run');
    assert.match(shown('failover_command', 0)!.detail, /treated as done by a resumed run/);
  });
});
