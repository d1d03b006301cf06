// The demo as a newcomer runs it: `pgwatchdog demo` brings up a primary, two standbys and three
// peers forming one watchdog cluster and prints a healthy status (a coordinator every peer
// agrees on); Ctrl-C removes everything; a run after a crash (kill -9 of the demo) first removes
// what the crashed run left; the failover and coordinator scenarios narrate what the cluster
// does and end with a verdict. The runs are sequential: one demo at a time per checkout.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { STATE_FILE } from '../../scripts/demo.js';
import { processesUnder } from '../../scripts/demo/leftovers.js';

const BIN = new URL('../../bin/pgwatchdog.js', import.meta.url).pathname;
const OUT = process.env.TEST_OUTPUT_DIR ?? fileURLToPath(new URL('../../.tmp/test-output/', import.meta.url));

interface Demo {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<void>;
}

const running = new Set<Demo>();

// A run a failed assertion left going is stopped as Ctrl-C would (it removes what it started).
after(async () => {
  for (const d of running) d.proc.kill('SIGINT');
  await Promise.all([...running].map((d) => d.exited));
});

function demo(args: string[]): Demo {
  const proc = spawn(process.execPath, [BIN, 'demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PGWATCHDOG_LOG_LEVEL: 'info' } });
  let out = '';
  const listeners: (() => void)[] = [];
  const collect = (b: Buffer) => {
    out += b.toString();
    for (const l of listeners) l();
  };
  proc.stdout!.on('data', collect);
  proc.stderr!.on('data', collect);
  // Each run's output is kept (TEST_OUTPUT_DIR, default .tmp/test-output), to read its timings after a slow or failed run.
  const started = Date.now();
  const exited = new Promise<number | null>((r) =>
    proc.on('exit', (code) => {
      mkdirSync(OUT, { recursive: true });
      writeFileSync(join(OUT, `demo${args.map((a) => `-${a.replace(/^-+/, '')}`).join('')}-${started}.log`), `${args.join(' ')}: exit ${code} after ${Date.now() - started} ms\n${out}`);
      r(code);
    }),
  );
  const waitFor = (re: RegExp, timeoutMs = 300_000) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`demo: no ${re} within ${timeoutMs} ms:\n${out}`)), timeoutMs);
      const check = () => {
        if (re.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      };
      listeners.push(check);
      void exited.then(() => setTimeout(() => reject(new Error(`demo exited before ${re}:\n${out}`)), 50));
      check();
    });
  const d: Demo = { proc, out: () => out, exited, waitFor };
  running.add(d);
  void exited.then(() => running.delete(d));
  return d;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
};

async function gone(pids: number[], timeoutMs = 10_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return pids.filter(alive);
}

interface RunState {
  pid: number;
  dirs: string[];
}

const runState = () => JSON.parse(readFileSync(STATE_FILE, 'utf8')) as RunState;

/** The healthy status every run prints before it stops or runs a scenario. */
function assertHealthy(out: string): void {
  assert.match(out, /pgwd1: psql "postgresql:\/\/postgres:postgres@127\.0\.0\.1:\d+\/postgres"/);
  assert.equal((out.match(/pgwd\d: http:\/\/127\.0\.0\.1:\d+\/ {2}\(the dashboard answers\)/g) ?? []).length, 3, 'three dashboard URLs that answer');
  assert.match(out, /VIP: simulated/, 'says that no address is added, and where a real VIP is described');
  assert.match(out, /docs\/operations\.md/);
  const m = /cluster healthy: coordinator (pgwd\d), 1 primary, 2 standbys, 3 peers/.exec(out);
  assert.ok(m, `a healthy status:\n${out}`);
  const coordinator = m[1]!;
  // Each peer's state as its admin API says, one coordinator that every peer names.
  const watchdog = out.slice(out.indexOf("Watchdog (each peer's GET /v1/status)"), out.indexOf('Backends (SHOW POOL_NODES'));
  const rows = watchdog.split('\n').filter((l) => /^ {2}pgwd\d/.test(l));
  assert.equal(rows.length, 3, watchdog);
  for (const r of rows) {
    const [name, state, named, primary, up] = r.trim().split(/\s+/);
    assert.equal(state, name === coordinator ? 'coordinator' : 'standby', r);
    assert.equal(named, coordinator, r);
    assert.equal(primary, '0', r);
    assert.equal(up, '3', r);
  }
  const poolNodes = out.slice(out.indexOf('Backends (SHOW POOL_NODES'), out.indexOf('$ pgwatchdog status'));
  assert.match(poolNodes, /\n {2}0 +127\.0\.0\.1:\d+ +up +primary /);
  assert.equal((poolNodes.match(/ up +standby /g) ?? []).length, 2);
  assert.match(out, /\$ pgwatchdog status --admin http:\/\/127\.0\.0\.1:\d+\n/, 'the status as the CLI shows it');
}

test('demo: a watchdog cluster; crash cleanup, both scenarios, Ctrl-C', { timeout: 900_000 }, async (t) => {
  await t.test('an unknown scenario is a usage error', async () => {
    const run = demo(['--scenario', 'nope']);
    assert.equal(await run.exited, 2);
    assert.match(run.out(), /unknown scenario "nope" \(failover, coordinator\)/);
  });

  await t.test('a crashed run (kill -9) is cleaned up by the next run, whose failover scenario ends OK', async () => {
    // Crashed once every server and peer has started (the healthy status is asserted on the next run).
    const first = demo([]);
    await first.waitFor(/waiting for the peers to elect a coordinator/);
    const state = runState();
    assert.equal(state.dirs.length, 1, 'one directory holds everything of the run');
    const pids = processesUnder(state.dirs[0]!);
    assert.ok(pids.length >= 6, `three PostgreSQL servers and three peers run under ${state.dirs[0]}: ${pids.length}`);
    // kill -9 of the demo itself (the wrapper and the script): nothing of it can clean up.
    const children = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          return /^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${d}/status`, 'utf8'))?.[1] === String(first.proc.pid);
        } catch {
          return false;
        }
      });
    // The demo script is a child of the command (tsx's esbuild service may be another one).
    assert.ok(children.length >= 1, 'the demo script runs as a child of the command');
    for (const pid of [...children.map(Number), first.proc.pid!]) process.kill(pid, 'SIGKILL');
    await first.exited;
    assert.ok(pids.every(alive), 'its servers and peers outlive it');

    const second = demo(['--scenario', 'failover']);
    const code = await second.exited;
    const out = second.out();
    assert.match(out, /removed what a previous demo run left: \d+ processes, 1 directory/);
    assert.deepEqual(await gone(pids), [], 'the crashed run left nothing running');
    assert.ok(!existsSync(state.dirs[0]!), `${state.dirs[0]} removed`);
    assertHealthy(out);
    // The narration, from the peers' logs: consensus, the interlock, the promotion, each peer's writes.
    assert.match(out, /coordinator: consensus — backend 0: [23] of 3 peers see it down/);
    assert.match(out, /Raft: committed "failover \d+ \(node_down of 0\) started by pgwd\d in term \d+"/);
    assert.match(out, /interlock: holds new sessions to backend 0/);
    assert.match(out, /coordinator: pg_promote\(\) on backend [12]: promoted/);
    for (const p of ['pgwd1', 'pgwd2', 'pgwd3']) assert.match(out, new RegExp(`${p} +first committed write through this peer`), p);
    assert.match(out, /Timings \(from the kill\):\n {2}first peer's health checks declare the primary down +\+\d+\.\d{3} s/);
    assert.doesNotMatch(out.slice(out.indexOf('Timings (from the kill)')), /not seen/);
    assert.match(out, /failover commands run in the whole cluster for this kill: 1 /);
    assert.match(out, /scenario failover: OK: backend [12] is the primary on every peer/);
    assert.equal(code, 0, out);
    assert.ok(!existsSync(STATE_FILE), 'the scenario leaves nothing behind');
  });

  await t.test('coordinator scenario: a new coordinator escalates, the killed peer rejoins as STANDBY', async () => {
    const run = demo(['--scenario', 'coordinator']);
    const code = await run.exited;
    const out = run.out();
    assertHealthy(out);
    const old = /scenario coordinator: kill -9 of the coordinator peer (pgwd\d)/.exec(out)?.[1];
    assert.ok(old, out);
    assert.match(out, /Raft: elected leader of term [2-9]/);
    const next = /(pgwd\d) +coordinator: claim for term \d+ committed/.exec(out)?.[1];
    assert.ok(next && next !== old, `a new coordinator claims the term: ${next}`);
    assert.match(out, new RegExp(`${next} +VIP: escalation command succeeded`));
    assert.match(out, new RegExp(`${old} +starting: runs the de-escalation first`));
    assert.match(out, new RegExp(`every peer's admin API shows ${old} as STANDBY, ${next} still coordinator`));
    assert.doesNotMatch(out.slice(out.indexOf('Timings (from the kill)')), /not seen/);
    assert.match(out, /scenario coordinator: OK/);
    assert.equal(code, 0, out);
  });

  await t.test('Ctrl-C stops and removes everything; a second demo meanwhile is refused', async () => {
    const run = demo([]);
    await run.waitFor(/running; .*Ctrl-C stops and removes everything/);
    assertHealthy(run.out());
    const state = runState();
    const pids = processesUnder(state.dirs[0]!);
    const other = demo(['--once']);
    assert.equal(await other.exited, 1);
    assert.match(other.out(), /another demo is running \(pid \d+\)/);
    assert.ok(pids.every(alive), 'the refused run touched nothing of the running one');
    run.proc.kill('SIGINT');
    await run.exited;
    assert.deepEqual(await gone(pids), []);
    assert.ok(!existsSync(state.dirs[0]!), `${state.dirs[0]} removed`);
    assert.ok(!existsSync(STATE_FILE));
  });
});
