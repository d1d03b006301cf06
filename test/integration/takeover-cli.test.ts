// `pgwatchdog restart -c FILE`: starts the peer's next process, waits for the takeover's
// outcome and reports it; the running peer's sessions carry on in the new process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createCluster, SUPERUSER, SUPERUSER_PASSWORD } from '../support/pg.js';
import { startPeerProcess, type PeerProcess } from '../support/peer.js';
import * as fdpass from '../../src/takeover/fdpass.js';

const BIN = new URL('../../bin/pgwatchdog.js', import.meta.url).pathname;

function cli(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PGWATCHDOG_LOG_LEVEL: 'warn' } });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // 'exit', not 'close': the new peer keeps the inherited output open after the command ends.
    p.on('exit', (code) => resolve({ code, out }));
  });
}

test('pgwatchdog restart: the new process takes over and the command reports it; with nothing running it fails and says why', { timeout: 180_000 }, async () => {
  const cluster = await createCluster({ standbys: 0 });
  let old: PeerProcess | undefined;
  let newPid: number | undefined;
  try {
    old = await startPeerProcess(cluster);
    const c = new pg.Client({ host: old.host, port: old.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
    c.on('error', () => undefined);
    await c.connect();
    const pid = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
    const r = await cli(['restart', '-c', old.configFile]);
    assert.equal(r.code, 0, r.out);
    const m = /restarted: new process (\d+) serves \((\d+) sessions moved, (\d+) ended, (\d+) idle backend connections moved\)/.exec(r.out);
    assert.ok(m, r.out);
    newPid = Number(m[1]);
    assert.equal(await old.exited, 0, 'the old process exited');
    old.ownsDir = false;
    if (fdpass.available()) assert.equal((await c.query('SELECT pg_backend_pid() AS p')).rows[0].p, pid, 'the session moved to the new process');
    await c.end().catch(() => undefined);
    // Stop the new process; then nothing runs and a restart fails with the reason.
    process.kill(newPid, 'SIGTERM');
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(newPid, 0);
        await new Promise((res) => setTimeout(res, 100));
      } catch {
        newPid = undefined;
        break;
      }
    }
    assert.equal(newPid, undefined, 'the new process stopped on SIGTERM');
    const f = await cli(['restart', '-c', old.configFile]);
    assert.equal(f.code, 1, f.out);
    assert.match(f.out, /restart failed: no running peer to take over at .*; the running process keeps serving/);
  } finally {
    if (newPid !== undefined) process.kill(newPid, 'SIGKILL');
    if (old) {
      old.ownsDir = true;
      await old.stop();
    }
    await cluster.teardown();
  }
});

test('SIGUSR2: the peer starts its own successor (its child: under systemd, in the service), which writes --pid-file before the old process exits; sessions move', { skip: fdpass.available() ? false : 'descriptor passing is not built', timeout: 180_000 }, async () => {
  const cluster = await createCluster({ standbys: 0 });
  const runDir = mkdtempSync(join(tmpdir(), 'pgwd-run-'));
  const pidFile = join(runDir, 'pgwatchdog.pid');
  let old: PeerProcess | undefined;
  let newPid: number | undefined;
  const readPid = () => (existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : undefined);
  const waitFor = async <T>(what: string, f: () => T | undefined): Promise<T> => {
    for (let i = 0; i < 300; i++) {
      const v = f();
      if (v !== undefined) return v;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  try {
    old = await startPeerProcess(cluster, {}, { args: ['--pid-file', pidFile] });
    const oldPid = old.proc.pid!;
    await waitFor('the pid file', () => (readPid() === oldPid ? true : undefined));
    const cgroup = readFileSync(`/proc/${oldPid}/cgroup`, 'utf8');
    const c = new pg.Client({ host: old.host, port: old.port, user: SUPERUSER, password: SUPERUSER_PASSWORD, database: 'postgres' });
    c.on('error', () => undefined);
    await c.connect();
    const pid = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
    old.ownsDir = false; // the successor works in it
    process.kill(oldPid, 'SIGUSR2');
    // The successor writes its pid while the old process still runs (systemd re-reads PIDFile= when the main process exits).
    newPid = await waitFor('the successor\'s pid in the pid file', () => {
      const p = readPid();
      return p !== undefined && p !== oldPid ? p : undefined;
    });
    const cgroupOfNew = existsSync(`/proc/${newPid}/cgroup`) ? readFileSync(`/proc/${newPid}/cgroup`, 'utf8') : '';
    assert.equal(await old.exited, 0, 'the old process exited once it held nothing');
    // The successor writes to the old process's output (inherited), so its log is here.
    const hello = old.logs.find((l) => l.msg === 'taking over from the running process');
    assert.equal(hello?.parent, oldPid, `the successor is the old process's child (${JSON.stringify(hello)})`);
    assert.equal(cgroupOfNew, cgroup, 'in the same cgroup');
    assert.equal((await c.query('SELECT pg_backend_pid() AS p')).rows[0].p, pid, 'the session moved with its backend connection');
    await c.end().catch(() => undefined);
    process.kill(newPid, 'SIGTERM');
    await waitFor('the successor to stop', () => {
      try {
        process.kill(newPid!, 0);
        return undefined;
      } catch {
        return true;
      }
    });
    newPid = undefined;
    assert.equal(existsSync(pidFile), false, 'a clean stop removes the pid file that names the process');
  } finally {
    if (newPid !== undefined) process.kill(newPid, 'SIGKILL');
    if (old) {
      old.ownsDir = true;
      await old.stop();
    }
    rmSync(runDir, { recursive: true, force: true });
    await cluster.teardown();
  }
});
