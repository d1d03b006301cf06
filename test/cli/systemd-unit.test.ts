// scripts/pgwatchdog.service: hardened (only the capabilities a VIP move needs), restarts on
// failure, reloads with SIGHUP, follows an online restart (SIGUSR2) through its PID file, and
// runs the installed command; systemd-analyze verify accepts
// it where systemd is installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const UNIT = new URL('../../scripts/pgwatchdog.service', import.meta.url).pathname;

/** section → key → values (a key may repeat). */
function parseUnit(text: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      out[section] = {};
      continue;
    }
    const eq = line.indexOf('=');
    const k = line.slice(0, eq);
    (out[section]![k] ??= []).push(line.slice(eq + 1));
  }
  return out;
}

test('the unit grants only CAP_NET_ADMIN and CAP_NET_RAW, runs unprivileged and restarts on failure', () => {
  const u = parseUnit(readFileSync(UNIT, 'utf8'));
  const svc = u.Service!;
  assert.deepEqual(svc.CapabilityBoundingSet, ['CAP_NET_ADMIN CAP_NET_RAW']);
  assert.deepEqual(svc.AmbientCapabilities, ['CAP_NET_ADMIN CAP_NET_RAW']);
  assert.deepEqual(svc.NoNewPrivileges, ['yes']);
  assert.notEqual(svc.User?.[0], 'root');
  assert.ok(svc.User?.[0]);
  assert.deepEqual(svc.Restart, ['on-failure']);
  assert.deepEqual(svc.ExecReload, ['/bin/kill -HUP $MAINPID'], 'systemctl reload sends SIGHUP, which re-reads the config');
  assert.match(svc.ExecStart![0]!, /^\/usr\/bin\/node \/opt\/pgwatchdog\/bin\/pgwatchdog\.js start -c \S+ --pid-file (\S+)$/);
  // Online restart (SIGUSR2): the successor writes the pid file systemd follows when the old main process exits.
  assert.equal(/--pid-file (\S+)$/.exec(svc.ExecStart![0]!)![1], svc.PIDFile?.[0], 'the peer writes the PIDFile= systemd reads');
  assert.match(svc.PIDFile![0]!, /^\/run\/pgwatchdog\//);
  assert.deepEqual(svc.RuntimeDirectory, ['pgwatchdog'], 'systemd makes /run/pgwatchdog, writable under ProtectSystem=strict');
  assert.deepEqual(svc.KillMode, ['mixed'], 'stop signals the main process only: the successor of an online restart is left to take over');
  assert.match(svc.ExecStartPre![0]!, /pgwatchdog\.js check-config -c /, 'an invalid config fails the start with its message');
  for (const k of ['ProtectSystem', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'ProtectKernelTunables', 'RestrictNamespaces', 'SystemCallFilter']) assert.ok(svc[k], `${k} is set`);
  assert.deepEqual(svc.ReadWritePaths, ['/var/lib/pgwatchdog']);
  assert.deepEqual(u.Install!.WantedBy, ['multi-user.target']);
});

test('systemd-analyze verify accepts the unit', (t) => {
  const which = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' });
  if (which.status !== 0) return t.skip('systemd-analyze is not installed');
  const r = spawnSync('systemd-analyze', ['verify', UNIT], { encoding: 'utf8' });
  const ours = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes('pgwatchdog.service'));
  assert.deepEqual(ours, [], 'no complaint about pgwatchdog.service');
});
