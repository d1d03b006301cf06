// `npm ci` never fails for want of a C toolchain: the install script builds the native
// forwarding addon when it can and otherwise says so in one line and exits 0. Run in a temp
// copy of the package (the checkout's own build/ is left alone), through `npm run install`
// as npm runs it at install time.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { barePathDir, npmCli } from '../support/bare-path.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = new URL('../..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'pgwd-native-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function packageCopy(name: string): string {
  const pkg = join(dir, name);
  for (const f of ['package.json', 'binding.gyp', 'src/proxy/native', 'scripts/install-native.mjs']) cpSync(join(ROOT, f), join(pkg, f), { recursive: true });
  return pkg;
}

function npmRunInstall(cwd: string, env: Record<string, string>) {
  const r = spawnSync(process.execPath, [npmCli(), 'run', 'install', '--silent'], { cwd, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('no compiler on PATH: the install exits 0 and says so in one line', () => {
  const pkg = packageCopy('bare');
  const r = npmRunInstall(pkg, { PATH: barePathDir(dir) });
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trim().split('\n');
  assert.equal(lines.length, 1, `one line:\n${r.out}`);
  assert.match(lines[0]!, /^pgwatchdog: native forwarding not built \(missing a C compiler \(cc\), a C\+\+ compiler to link \(g\+\+\), make, python3\); sessions will run on the JavaScript path/);
  assert.equal(r.err, '');
  assert.ok(!existsSync(join(pkg, 'build', 'Release', 'splice.node')));
});

test('a compiler that fails: the install exits 0, says so in one line and keeps the log', () => {
  const pkg = packageCopy('broken');
  const r = npmRunInstall(pkg, { CC: 'false', CXX: 'false' });
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trim().split('\n');
  assert.equal(lines.length, 1, `one line:\n${r.out}`);
  assert.match(lines[0]!, /^pgwatchdog: native forwarding not built \(node-gyp rebuild failed: exit code \d+; its output is in build\/native-build\.log\)/);
  assert.match(readFileSync(join(pkg, 'build', 'native-build.log'), 'utf8'), /(splice|fdpass).*Error 1/, 'the log has the failed compile');
  assert.ok(!existsSync(join(pkg, 'build', 'Release', 'splice.node')));
});

test('with a toolchain the addon is built, silently', () => {
  const pkg = packageCopy('ok');
  const r = npmRunInstall(pkg, {});
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.trim(), '');
  assert.ok(existsSync(join(pkg, 'build', 'Release', 'splice.node')));
});
