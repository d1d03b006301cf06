// The demo as a newcomer runs it: `pgwatchdog demo` brings up a primary, two standbys and three
// peers and prints a healthy status; Ctrl-C removes everything; a run after a crash (kill -9 of
// the demo) first removes what the crashed run left.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { STATE_FILE } from '../../scripts/demo.js';

const BIN = new URL('../../bin/pgwatchdog.js', import.meta.url).pathname;

interface Demo {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<void>;
}

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
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
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
  return { proc, out: () => out, exited, waitFor };
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

test('demo: healthy status, Ctrl-C removes everything, a run after a crash cleans up first', { timeout: 600_000 }, async (t) => {
  await t.test('a crashed run (kill -9) is cleaned up by the next run, which prints a healthy cluster', async () => {
    const first = demo([]);
    await first.waitFor(/running; Ctrl-C stops and removes everything/);
    const state = JSON.parse(readFileSync(STATE_FILE, 'utf8')) as { processes: { pid: number }[]; dirs: string[] };
    assert.equal(state.processes.length, 6, 'three PostgreSQL servers and three peers recorded');
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
    const pids = state.processes.map((p) => p.pid);
    assert.ok(pids.every(alive), 'its servers and peers outlive it');

    const second = demo(['--once']);
    assert.equal(await second.exited, 0, second.out());
    assert.match(second.out(), /removed what a previous demo run left: 6 processes, 4 directories/);
    assert.deepEqual(await gone(pids), [], 'the crashed run left nothing running');
    for (const d of state.dirs) assert.ok(!existsSync(d), `${d} removed`);
    assert.match(second.out(), /pgwd1: psql "postgresql:\/\/postgres:postgres@127\.0\.0\.1:\d+\/postgres"/);
    const poolNodes = second.out().slice(second.out().indexOf('Backends (SHOW POOL_NODES'), second.out().indexOf('cluster healthy'));
    assert.match(poolNodes, /\n {2}0 +127\.0\.0\.1:\d+ +up +primary /);
    assert.equal((poolNodes.match(/ up +standby /g) ?? []).length, 2);
    assert.match(second.out(), /pgwatchdog status --admin http:\/\/127\.0\.0\.1:\d+\n/, 'the status as the CLI shows it');
    assert.match(second.out(), /cluster healthy: 1 primary, 2 standbys, 3 peers/);
    assert.ok(!existsSync(STATE_FILE), '--once leaves nothing behind');
  });

  await t.test('Ctrl-C stops and removes everything', async () => {
    const run = demo([]);
    await run.waitFor(/running; Ctrl-C stops and removes everything/);
    const state = JSON.parse(readFileSync(STATE_FILE, 'utf8')) as { processes: { pid: number }[]; dirs: string[] };
    run.proc.kill('SIGINT');
    await run.exited;
    assert.deepEqual(await gone(state.processes.map((p) => p.pid)), []);
    for (const d of state.dirs) assert.ok(!existsSync(d), `${d} removed`);
    assert.ok(!existsSync(STATE_FILE));
  });
});
