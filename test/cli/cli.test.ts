// The CLI as an operator runs it: the real bin, a real process, exit codes and messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = new URL('../../bin/pgwatchdog.js', import.meta.url).pathname;
const EXAMPLE = new URL('../../conf/pgwatchdog.yaml', import.meta.url).pathname;
const SECRETS = { PGWATCHDOG_ADMIN_TOKEN: 't', PGWATCHDOG_HC_PASSWORD: 'p', PGWATCHDOG_REPL_PASSWORD: 'r', PGWATCHDOG_WD_KEY: 'k' };

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('--help lists every command of the contract; --version prints the version', () => {
  const h = cli(['--help']);
  assert.equal(h.code, 0);
  for (const c of ['start -c FILE [--name PEER]', 'check-config -c FILE', 'status [--watch]', 'nodes', 'watchdog', 'failovers', 'attach N', 'detach N', 'promote N [--switchover]', 'transfer PEER', 'demo', 'PGWATCHDOG_ADMIN', 'PGWATCHDOG_TOKEN', 'Exit codes']) {
    assert.ok(h.out.includes(c), `help mentions "${c}"`);
  }
  const v = cli(['--version']);
  assert.equal(v.code, 0);
  assert.match(v.out.trim(), /^\d+\.\d+\.\d+$/);
});

test('check-config accepts the example and refuses a broken file naming each path', () => {
  const ok = cli(['check-config', '-c', EXAMPLE], SECRETS);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /OK \(2 backends, 3 watchdog peers\)/);

  const dir = mkdtempSync(join(tmpdir(), 'pgwd-cli-'));
  try {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      [
        'auth: {method: trust}',
        'proxy: {port: "ninety-nine", colour: blue}',
        'backends: [{host: a}, {host: b, port: x}]',
        'watchdog:',
        '  peers: [{name: p1, host: h1}, {name: p1, host: h2}]',
      ].join('\n'),
    );
    const r = cli(['check-config', '-c', bad]);
    assert.equal(r.code, 1);
    assert.ok(r.err.includes(bad), 'names the file');
    for (const path of ['proxy.port:', 'proxy: unknown key "colour"', 'backends[1].port:', 'watchdog.peers[1].name: duplicate peer name "p1"']) {
      assert.ok(r.err.includes(path), `names ${path}\n${r.err}`);
    }
    assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');

    const none = join(dir, 'none.yaml');
    writeFileSync(none, 'auth: {method: trust}\n');
    const r2 = cli(['check-config', '-c', none]);
    assert.equal(r2.code, 1);
    assert.match(r2.err, /backends: /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('usage errors exit 2 with a clear message', () => {
  assert.equal(cli([]).code, 2);
  const unknown = cli(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /unknown command "frobnicate"/);
  const noFile = cli(['check-config']);
  assert.equal(noFile.code, 2);
  assert.match(noFile.err, /-c FILE is required/);
  const badOpt = cli(['check-config', '--bogus']);
  assert.equal(badOpt.code, 2);
  assert.match(badOpt.err, /Unknown option '--bogus'/);
  assert.equal(cli(['attach']).code, 2);
});
