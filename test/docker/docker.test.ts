// docker/: no Docker engine runs here, so the files are checked for what can be checked —
// the compose file's structure and config, the Dockerfile's stages, user, healthcheck and
// copies — and the image's entrypoint is run under plain node from a tree laid out as the
// runtime stage lays it out (compiled JavaScript, no TypeScript sources).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/index.js';
import { freePort } from '../support/pg.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const DOCKER = join(ROOT, 'docker');
const dir = mkdtempSync(join(tmpdir(), 'pgwd-docker-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[] | string;
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  user?: string;
}
const compose = parse(readFileSync(join(DOCKER, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const PEERS = ['pgwd1', 'pgwd2', 'pgwd3'];

/** `${VAR:-default}` as compose would expand it with nothing set. */
const composeDefault = (v: string) => v.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1');

test('compose: three peers built from docker/Dockerfile, a primary and a standby', () => {
  assert.deepEqual(Object.keys(compose.services).sort(), ['pg-primary', 'pg-standby', ...PEERS].sort());
  for (const name of PEERS) {
    const s = compose.services[name]!;
    assert.deepEqual(s.build, { context: '..', dockerfile: 'docker/Dockerfile' }, `${name} builds the image`);
    assert.ok(existsSync(join(DOCKER, s.build!.context, s.build!.dockerfile)));
    const cmd = s.command as string[];
    assert.deepEqual(cmd.slice(0, 3), ['start', '-c', '/etc/pgwatchdog/pgwatchdog.yaml']);
    assert.deepEqual(cmd.slice(3), ['--name', name], 'each peer is named, as in watchdog.peers');
    assert.equal(s.depends_on?.['pg-primary']?.condition, 'service_healthy');
  }
  assert.equal(compose.services['pg-standby']!.depends_on?.['pg-primary']?.condition, 'service_healthy');
  for (const pg of ['pg-primary', 'pg-standby']) assert.match(compose.services[pg]!.image!, /^postgres:15/);
  assert.match(String(compose.services['pg-standby']!.command), /pg_basebackup -h pg-primary -U replicator .* -R/);
});

test('compose: mounts exist, named volumes are declared, published ports do not clash', () => {
  const published: string[] = [];
  for (const [name, s] of Object.entries(compose.services)) {
    for (const v of s.volumes ?? []) {
      const [src] = v.split(':');
      if (src!.startsWith('.')) assert.ok(existsSync(join(DOCKER, src!)), `${name}: ${src} exists`);
      else assert.ok(src! in compose.volumes, `${name}: volume ${src} is declared`);
    }
    published.push(...(s.ports ?? []).map((p) => p.split(':')[0]!));
  }
  assert.equal(new Set(published).size, published.length, `no host port published twice: ${published.join(', ')}`);
  for (const name of PEERS) {
    const mounts = compose.services[name]!.volumes!;
    assert.ok(mounts.includes('./pgwatchdog.yaml:/etc/pgwatchdog/pgwatchdog.yaml:ro'));
    assert.ok(mounts.some((m) => m.endsWith(':/var/lib/pgwatchdog')), `${name} keeps its Raft log and status in a volume`);
  }
});

test("compose: the peers' config passes check-config with the compose environment, and names the services", () => {
  const env = Object.fromEntries(Object.entries(compose.services.pgwd1!.environment!).map(([k, v]) => [k, composeDefault(v)]));
  const cfg = parseConfig(parse(readFileSync(join(DOCKER, 'pgwatchdog.yaml'), 'utf8')), join(DOCKER, 'pgwatchdog.yaml'), env);
  assert.deepEqual(cfg.watchdog.peers.map((p) => p.name), PEERS);
  assert.deepEqual(cfg.watchdog.peers.map((p) => p.host), PEERS, 'peers reach each other by service name');
  assert.deepEqual(cfg.backends.map((b) => b.host), ['pg-primary', 'pg-standby']);
  assert.equal(cfg.admin.host, '0.0.0.0', 'the admin API is reachable for the published port');
  for (const name of PEERS) assert.ok(compose.services[name]!.ports!.some((p) => p.endsWith(`:${cfg.admin.port}`)), `${name} publishes admin.port`);
  assert.ok(compose.services[PEERS[0]!]!.ports!.some((p) => p.endsWith(`:${cfg.proxy.port}`)));
  // The primary's init script creates the replication user the standby and the builtin follow use.
  assert.match(readFileSync(join(DOCKER, 'initdb', '10-replication.sh'), 'utf8'), new RegExp(`CREATE ROLE ${cfg.failover.replication_user} WITH REPLICATION`));
});

interface Stage {
  from: string;
  name?: string;
  lines: string[];
}
function dockerfileStages(): Stage[] {
  const text = readFileSync(join(DOCKER, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const stages: Stage[] = [];
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (line === '' || line.startsWith('#')) continue;
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) stages.push({ from: from[1]!, name: from[2], lines: [] });
    else stages.at(-1)!.lines.push(line);
  }
  return stages;
}

test('Dockerfile: a build stage, then a runtime stage as a non-root user with a /health healthcheck', () => {
  const stages = dockerfileStages();
  assert.ok(stages.length >= 2, 'multi-stage');
  const build = stages[0]!;
  const runtime = stages.at(-1)!;
  assert.equal(build.name, 'build');
  assert.ok(build.lines.some((l) => /npm run build/.test(l)), 'the build stage compiles dist/');
  assert.ok(build.lines.some((l) => /npm prune --omit=dev/.test(l)), 'the runtime gets production dependencies only');
  const user = runtime.lines.filter((l) => l.startsWith('USER ')).at(-1);
  assert.ok(user && !/^USER\s+(root|0)(:|$)/.test(user), `runs as a non-root user (${user})`);
  const hc = runtime.lines.find((l) => l.startsWith('HEALTHCHECK'));
  assert.ok(hc, 'has a HEALTHCHECK');
  assert.match(hc!, /healthcheck\.mjs/);
  assert.match(readFileSync(join(DOCKER, 'healthcheck.mjs'), 'utf8'), /\/health/);
  // Every file copied from the build context exists; nothing of src/ reaches the runtime stage.
  for (const stage of stages) {
    for (const l of stage.lines.filter((x) => x.startsWith('COPY ') && !x.includes('--from='))) {
      const parts = l.split(/\s+/).slice(1);
      for (const src of parts.slice(0, -1)) assert.ok(existsSync(join(ROOT, src)), `COPY source ${src} exists`);
    }
  }
  assert.ok(!runtime.lines.some((l) => /^COPY\s+src\b/.test(l)), 'no TypeScript sources in the runtime image');
  const fromBuild = runtime.lines.filter((l) => l.includes('--from=build')).map((l) => l.split(/\s+/)[2]);
  assert.deepEqual(fromBuild.sort(), ['/opt/pgwatchdog/build/Release/fdpass.node', '/opt/pgwatchdog/build/Release/splice.node', '/opt/pgwatchdog/dist/src', '/opt/pgwatchdog/node_modules']);
});

test("the image's entrypoint runs under plain node from the runtime layout; the healthcheck reads /health", { timeout: 300_000 }, async () => {
  const runtime = dockerfileStages().at(-1)!;
  const entry = JSON.parse(runtime.lines.find((l) => l.startsWith('ENTRYPOINT'))!.slice('ENTRYPOINT'.length)) as string[];
  assert.deepEqual(entry.slice(0, 3), ['/usr/bin/tini', '--', 'node'], 'tini, then plain node (no tsx)');
  // The runtime stage's tree: compiled dist/src (built here into the temp dir), bin, conf, package.json.
  const app = join(dir, 'opt', 'pgwatchdog');
  mkdirSync(app, { recursive: true });
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(app, 'dist')], { encoding: 'utf8' });
  assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
  for (const f of ['package.json', 'bin', 'conf', 'docker/healthcheck.mjs']) cpSync(join(ROOT, f), join(app, f), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules'));
  assert.ok(!existsSync(join(app, 'src')), 'no sources: bin must take dist/');
  const script = entry[3]!.replace('/opt/pgwatchdog', app);
  const run = (args: string[], env: Record<string, string> = {}) => spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });
  const v = run(['--version']);
  assert.equal(v.status, 0, v.stderr);
  assert.match(v.stdout.trim(), /^\d+\.\d+\.\d+$/);
  const env = Object.fromEntries(Object.entries(compose.services.pgwd1!.environment!).map(([k, val]) => [k, composeDefault(val)]));
  const check = run(['check-config', '-c', join(DOCKER, 'pgwatchdog.yaml')], env);
  assert.equal(check.status, 0, check.stderr);

  // HEALTHCHECK: 0 on a 200 from /health, 1 on anything else and on no answer at all.
  const hc = JSON.parse(runtime.lines.find((l) => l.startsWith('HEALTHCHECK'))!.replace(/^HEALTHCHECK.*?CMD\s+/, '')) as string[];
  const hcScript = hc[1]!.replace('/opt/pgwatchdog', app);
  let status = 200;
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(req.url ?? '');
    res.writeHead(status).end(status === 200 ? 'ok' : 'not accepting');
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  try {
    // Asynchronous (not spawnSync): the probe talks to a server in this process.
    const probe = () =>
      new Promise<number | null>((resolve) => {
        spawn(process.execPath, [hcScript], { env: { ...process.env, PGWATCHDOG_ADMIN_PORT: String(port) }, stdio: 'ignore' }).on('exit', resolve);
      });
    assert.equal(await probe(), 0);
    status = 503;
    assert.equal(await probe(), 1);
    assert.deepEqual(paths, ['/health', '/health']);
  } finally {
    await new Promise((r) => server.close(r));
  }
  const down = spawnSync(process.execPath, [hcScript], { env: { ...process.env, PGWATCHDOG_ADMIN_PORT: String(port) }, encoding: 'utf8' });
  assert.equal(down.status, 1, 'no admin API: unhealthy');
  assert.match(down.stderr, /ECONNREFUSED/);
});
