// What `npm pack` ships runs: the project is packed (prepack builds dist/), the tarball is
// installed into an empty temp project, and the installed command is run under plain node —
// no TypeScript sources and no tsx in the installed tree.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from '../support/pg.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const SECRETS = { PGWATCHDOG_ADMIN_TOKEN: 't', PGWATCHDOG_HC_PASSWORD: 'p', PGWATCHDOG_REPL_PASSWORD: 'r', PGWATCHDOG_WD_KEY: 'k' };
const dir = mkdtempSync(join(tmpdir(), 'pgwd-pack-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function sh(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 300_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('npm pack → npm install → pgwatchdog runs the compiled JavaScript', { timeout: 600_000 }, async (t) => {
  const pack = sh('npm', ['pack', '--pack-destination', dir, '--json'], ROOT);
  assert.equal(pack.code, 0, `npm pack failed:\n${pack.err}`);
  const [info] = JSON.parse(pack.out.slice(pack.out.indexOf('['))) as [{ filename: string; files: { path: string }[] }];
  const shipped = info.files.map((f) => f.path);
  assert.ok(shipped.includes('dist/src/cli/main.js'), 'the tarball has the compiled CLI');
  assert.ok(shipped.includes('bin/pgwatchdog.js'));
  assert.ok(!shipped.some((p) => p.endsWith('.ts') && !p.endsWith('.d.ts')), `no TypeScript sources shipped: ${shipped.filter((p) => p.endsWith('.ts')).join(', ')}`);

  const app = join(dir, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'pack-test', private: true }));
  const tarball = join(dir, info.filename);
  const inst = sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], app);
  assert.equal(inst.code, 0, `npm install of the tarball failed:\n${inst.err}`);
  const pkg = join(app, 'node_modules', 'pgwatchdog');
  assert.ok(!existsSync(join(app, 'node_modules', 'tsx')), 'tsx is not installed with the package');
  assert.deepEqual(readdirSync(join(pkg, 'src')).sort(), ['admin', 'proxy'], 'only the native addon sources and the dashboard assets ship under src/');
  assert.deepEqual(readdirSync(join(pkg, 'src', 'admin')), ['static'], 'only the dashboard assets ship under src/admin');
  const bin = join(app, 'node_modules', '.bin', 'pgwatchdog');

  await t.test('--version', () => {
    const v = sh(bin, ['--version'], app);
    assert.equal(v.code, 0, v.err);
    assert.match(v.out.trim(), /^\d+\.\d+\.\d+$/);
  });

  await t.test('check-config on the shipped example, and on a broken file', () => {
    const ok = sh(bin, ['check-config', '-c', join(pkg, 'conf', 'pgwatchdog.yaml')], app, SECRETS);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /OK \(2 backends, 3 watchdog peers\)/);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'backends: [{host: a, port: x}]\nauth: {method: trust}\n');
    const r = sh(bin, ['check-config', '-c', bad], app);
    assert.equal(r.code, 1);
    assert.match(r.err, /backends\[0\]\.port:/);
  });

  await t.test('start runs a peer with proxy workers (the worker entry is compiled too), natively forwarding', async () => {
    const ready = await peerReady(bin, app, { workers: 2 });
    assert.equal(ready.nativeForwarding, true, 'the addon built at install time loads from dist/');
  });

  await t.test('installed without a C toolchain: npm install succeeds and the peer runs on the JavaScript path, saying so', async () => {
    const bare = join(dir, 'bare');
    mkdirSync(join(bare, 'bin'), { recursive: true });
    writeFileSync(join(bare, 'package.json'), JSON.stringify({ name: 'pack-test-bare', private: true }));
    // PATH holds node and sh only: no cc, g++, make or python3.
    symlinkSync(process.execPath, join(bare, 'bin', 'node'));
    symlinkSync('/bin/sh', join(bare, 'bin', 'sh'));
    const npmCli = realpathSync(spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim());
    const r = sh(process.execPath, [npmCli, 'install', '--no-audit', '--no-fund', '--prefer-offline', tarball], bare, { PATH: join(bare, 'bin') });
    assert.equal(r.code, 0, `npm install without a toolchain failed:\n${r.err}`);
    assert.ok(!existsSync(join(bare, 'node_modules', 'pgwatchdog', 'build', 'Release', 'splice.node')));
    const ready = await peerReady(join(bare, 'node_modules', '.bin', 'pgwatchdog'), bare, {});
    assert.equal(ready.nativeForwarding, false);
    assert.ok(ready.logs.some((l) => l.level === 40 && /native forwarding is not built/.test(l.msg)), 'the peer warns at start');
  });
});

interface Ready {
  nativeForwarding: unknown;
  logs: { level: number; msg: string }[];
}

/** Starts the installed peer, waits for "peer ready", stops it; returns what it logged. */
async function peerReady(bin: string, cwd: string, proxy: Record<string, unknown>): Promise<Ready> {
  const [port, adminPort, deadPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const cfgFile = join(cwd, 'peer.yaml');
  writeFileSync(
    cfgFile,
    stringify({
      proxy: { host: '127.0.0.1', port, ...proxy },
      auth: { method: 'trust' },
      admin: { host: '127.0.0.1', port: adminPort },
      backends: [{ host: '127.0.0.1', port: deadPort }],
      failover: { status_file: join(cwd, 'status') },
    }),
  );
  const proc = spawn(bin, ['start', '-c', cfgFile], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const logs: Ready['logs'] = [];
  try {
    const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "peer ready" within 30 s:\n${out}`)), 30_000);
      let buf = '';
      proc.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        buf += b.toString();
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          let l: { level: number; msg: string };
          try {
            l = JSON.parse(line) as { level: number; msg: string };
          } catch {
            continue;
          }
          logs.push(l);
          if (l.msg === 'peer ready') {
            clearTimeout(timer);
            resolve(l as unknown as Record<string, unknown>);
          }
        }
      });
      proc.stderr.on('data', (b: Buffer) => (out += b.toString()));
      proc.on('exit', (code) => reject(new Error(`peer exited ${code} before ready:\n${out}`)));
    });
    return { nativeForwarding: ready.nativeForwarding, logs };
  } finally {
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
  }
}
