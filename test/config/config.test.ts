import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, parseConfig, ConfigError, healthCheckFor } from '../../src/config/index.js';

const EXAMPLE = new URL('../../conf/pgwatchdog.yaml', import.meta.url).pathname;
const SECRETS = { PGWATCHDOG_ADMIN_TOKEN: 't', PGWATCHDOG_HC_PASSWORD: 'p', PGWATCHDOG_REPL_PASSWORD: 'r', PGWATCHDOG_WD_KEY: 'k' };

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('expected the configuration to be refused');
}

const minimal = () => ({ auth: { method: 'trust' }, backends: [{ host: 'db1' }] });

test('the example config is valid and fully typed', () => {
  const cfg = loadConfig(EXAMPLE, SECRETS);
  assert.equal(cfg.backends.length, 2);
  assert.equal(cfg.watchdog.peers.length, 3);
  assert.equal(cfg.watchdog.vip?.address, '10.0.0.100/24');
  assert.equal(cfg.proxy.max_lag_bytes, 16 * 1024 * 1024);
  assert.equal(cfg.health_check.password, 'p');
  assert.match(cfg.auth.users_file!, /\/conf\/userlist\.txt$/, 'relative paths resolve against the file');
});

test('defaults fill every section', () => {
  const cfg = parseConfig(minimal(), 'x.yaml');
  assert.equal(cfg.proxy.port, 9999);
  assert.equal(cfg.admin.port, 9898);
  assert.equal(cfg.admin.host, '127.0.0.1');
  assert.equal(cfg.backends[0]!.port, 5432);
  assert.equal(cfg.failover.promote, 'builtin');
  assert.equal(cfg.watchdog.tick_ms, 100);
  assert.deepEqual(cfg.watchdog.peers, []);
});

test('a wrong type is refused with its key path', () => {
  const p = problems(() => parseConfig({ ...minimal(), backends: [{ host: 'a' }, { host: 'b', port: 'x' }] }, 'f.yaml'));
  assert.equal(p.length, 1);
  assert.match(p[0]!, /^backends\[1\]\.port: .*expected number/);
});

test('an unknown key is refused with its path', () => {
  const p = problems(() => parseConfig({ ...minimal(), proxy: { prot: 9999 } }, 'f.yaml'));
  assert.deepEqual(p, ['proxy: unknown key "prot"']);
});

test('a duplicate peer name is refused at the second occurrence', () => {
  const p = problems(() =>
    parseConfig({ ...minimal(), watchdog: { auth_key: 'k', peers: [{ name: 'a', host: 'h1' }, { name: 'b', host: 'h2' }, { name: 'a', host: 'h3' }] } }, 'f.yaml'),
  );
  assert.deepEqual(p, ['watchdog.peers[2].name: duplicate peer name "a" (also watchdog.peers[0])']);
});

test('a missing or empty backends list is refused', () => {
  assert.match(problems(() => parseConfig({ auth: { method: 'trust' } }, 'f.yaml'))[0]!, /^backends: /);
  assert.match(problems(() => parseConfig({ auth: { method: 'trust' }, backends: [] }, 'f.yaml'))[0]!, /^backends: at least one backend/);
  assert.match(problems(() => parseConfig({ auth: { method: 'trust' }, backends: [{ port: 5432 }] }, 'f.yaml'))[0]!, /^backends\[0\]\.host: /);
});

test('every problem is reported at once, never a stack trace', () => {
  const p = problems(() => parseConfig({ auth: { method: 'trust' }, backends: [{ host: 'a', port: 70000 }], bogus: 1, health_check: { period_ms: -1 } }, 'f.yaml'));
  const paths = p.map((s) => s.split(':')[0]).sort();
  assert.deepEqual(paths, ['(top level)', 'backends[0].port', 'health_check.period_ms']);
});

test('cross-field rules: users file needed unless trust; command promotion needs a command', () => {
  assert.deepEqual(problems(() => parseConfig({ backends: [{ host: 'a' }] }, 'f.yaml')), ['auth.users_file: required when auth.method is scram-sha-256']);
  assert.deepEqual(problems(() => parseConfig({ ...minimal(), failover: { promote: 'command' } }, 'f.yaml')), [
    'failover.failover_command: required when failover.promote is "command"',
  ]);
  assert.match(problems(() => parseConfig({ ...minimal(), backends: [{ host: 'a' }, { host: 'a' }] }, 'f.yaml'))[0]!, /^backends\[1\]: duplicate backend "a:5432"/);
});

test('${ENV} substitution, defaults, and an unset variable named with its path', () => {
  const cfg = parseConfig({ ...minimal(), admin: { token: '${TOK}' }, health_check: { user: '${HCU:-monitor}' } }, 'f.yaml', { TOK: 's3cret' });
  assert.equal(cfg.admin.token, 's3cret');
  assert.equal(cfg.health_check.user, 'monitor');
  assert.deepEqual(problems(() => parseConfig({ ...minimal(), admin: { token: '${NOPE}' } }, 'f.yaml', {})), [
    'admin.token: environment variable NOPE is not set',
  ]);
});

test('sizes accept units; per-backend health-check overrides merge over the global section', () => {
  const cfg = parseConfig({ ...minimal(), proxy: { max_lag_bytes: '1kB' }, backends: [{ host: 'a', health_check: { timeout_ms: 50 } }] }, 'f.yaml');
  assert.equal(cfg.proxy.max_lag_bytes, 1024);
  const hc = healthCheckFor(cfg, 0);
  assert.equal(hc.timeout_ms, 50);
  assert.equal(hc.period_ms, cfg.health_check.period_ms);
  assert.match(problems(() => parseConfig({ ...minimal(), proxy: { max_lag_bytes: 'lots' } }, 'f.yaml'))[0]!, /^proxy\.max_lag_bytes: "lots" is not a size/);
});

test('files: unreadable and malformed YAML are refused with the file and position', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgwd-cfg-'));
  try {
    const missing = join(dir, 'missing.yaml');
    assert.throws(() => loadConfig(missing), (e: unknown) => e instanceof ConfigError && e.message.includes(missing) && e.problems[0] === 'cannot read file: ENOENT');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'backends:\n  - host: a\n   port: 5\n');
    assert.throws(() => loadConfig(bad), (e: unknown) => e instanceof ConfigError && /^line \d+, column \d+: /.test(e.problems[0]!));
    const dup = join(dir, 'dup.yaml');
    writeFileSync(dup, 'auth: {method: trust}\nbackends: [{host: a}]\nbackends: [{host: b}]\n');
    assert.throws(() => loadConfig(dup), (e: unknown) => e instanceof ConfigError && /unique/i.test(e.problems[0]!));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('watchdog defaults: isolated writes refused, peer priority 0', () => {
  const peers = [{ name: 'a', host: 'h1' }, { name: 'b', host: 'h2' }];
  const cfg = parseConfig({ ...minimal(), watchdog: { peers, auth_key: 'k' } }, 'f.yaml');
  assert.equal(cfg.watchdog.isolated_writes, 'refuse');
  assert.equal(cfg.watchdog.peers[0]!.priority, 0);
});
