import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expandCommand, runCommand, shellQuote, validateTemplate, type PlaceholderValues } from '../../src/failover/commands.js';
import { silentLogger } from '../../src/log.js';
import { spawnSync } from 'node:child_process';

const values: PlaceholderValues = {
  failedId: 0,
  failedHost: 'db0.example',
  failedPort: 5432,
  failedDataDir: "/data/it's here",
  newMainId: 2,
  newMainHost: 'db2',
  newMainPort: 5434,
  newMainDataDir: '/data/two',
  oldMainId: 0,
  oldPrimaryId: 0,
  oldPrimaryHost: 'db0.example',
  oldPrimaryPort: 5432,
  term: 7,
};

test('every placeholder expands, single-quoted', () => {
  const out = expandCommand('x %d %h %p %D %m %H %M %P %r %R %N %S %T %%', values);
  assert.equal(out, `x '0' 'db0.example' '5432' '/data/it'\\''s here' '2' 'db2' '0' '0' '5434' '/data/two' 'db0.example' '5432' '7' %`);
});

test('the shell sees each value as one argument, quotes and spaces intact', () => {
  const cmd = expandCommand('printf "[%%s]" %D %H %%', { ...values, newMainHost: '$(touch /tmp/pwned) `x` ; rm' });
  const r = spawnSync('/bin/sh', ['-c', cmd], { encoding: 'utf8' });
  assert.equal(r.stdout, "[/data/it's here][$(touch /tmp/pwned) `x` ; rm][%]");
});

test('unknown ids are -1 and unknown hosts/ports empty, as in pgpool', () => {
  const out = expandCommand('%m %H %r', { ...values, newMainId: -1, newMainHost: '', newMainPort: null });
  assert.equal(out, `'-1' '' ''`);
});

test('an unknown placeholder or a trailing % is refused', () => {
  assert.deepEqual(validateTemplate('ok %d %%'), []);
  assert.match(validateTemplate('bad %x')[0]!, /unknown placeholder "%x"/);
  assert.match(validateTemplate('bad %')[0]!, /lone "%"/);
  assert.throws(() => expandCommand('run %q', values), /unknown placeholder "%q"/);
});

test('shellQuote handles the empty string and quotes', () => {
  assert.equal(shellQuote(''), "''");
  assert.equal(shellQuote("a'b"), `'a'\\''b'`);
});

test('runner: exit code and output are reported', async () => {
  const ok = await runCommand('echo out; echo err >&2', { timeoutMs: 5000, logger: silentLogger, what: 't' });
  assert.equal(ok.ok, true);
  assert.equal(ok.exitCode, 0);
  assert.match(ok.output, /out/);
  assert.match(ok.output, /err/);
  const bad = await runCommand('exit 3', { timeoutMs: 5000, logger: silentLogger, what: 't' });
  assert.equal(bad.ok, false);
  assert.equal(bad.exitCode, 3);
});

test('runner: a command past its timeout is killed with its children', async () => {
  const t0 = Date.now();
  const r = await runCommand('sleep 30 & sleep 30', { timeoutMs: 300, logger: silentLogger, what: 't' });
  assert.equal(r.timedOut, true);
  assert.equal(r.ok, false);
  assert.ok(Date.now() - t0 < 3000, `returned after ${Date.now() - t0} ms`);
});
