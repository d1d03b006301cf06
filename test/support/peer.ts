// Runs a real pgwatchdog peer process (`bin/pgwatchdog.js start`) against a test-bed cluster.
// The config is written to a temp dir; the process is killed at stop() and, failing that,
// when the test process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { TestChild, type LogLine } from './child.js';
import { freePort, SUPERUSER, SUPERUSER_PASSWORD, type PgCluster } from './pg.js';

const BIN = new URL('../../bin/pgwatchdog.js', import.meta.url).pathname;

export type { LogLine };

export interface PeerProcess {
  proc: ChildProcess;
  /** Its output and end (child.ts): `child.guard(p)` fails at once if the peer dies meanwhile. */
  child: TestChild;
  dir: string;
  configFile: string;
  host: string;
  port: number;
  adminPort: number;
  logs: LogLine[];
  /** Resolves with the first log line (already seen or future) that matches. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** SIGTERM and wait for a clean exit; resolves to the exit code. */
  stop(): Promise<number | null>;
  kill9(): Promise<void>;
  /** Resolves to the exit code when the process exits. */
  exited: Promise<number | null>;
  /** stop() removes the temp dir (false once a successor process uses it: takeover). */
  ownsDir: boolean;
}

type Tree = Record<string, unknown>;

function merge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b) ? merge(b as Tree, v as Tree) : v;
  }
  return out;
}

/** The config a test peer gets: every test-bed node a backend (primary first), fast health checks. */
export async function peerConfig(cluster: PgCluster, dir: string, overrides: Tree = {}): Promise<Tree> {
  const [port, adminPort] = await Promise.all([freePort(), freePort()]);
  // Clients are trusted; the users file gives the proxy the password to log into the backends.
  const usersFile = join(dir, 'userlist.txt');
  writeFileSync(usersFile, `"${SUPERUSER}" "${SUPERUSER_PASSWORD}"\n`);
  const base: Tree = {
    log: { level: 'info' },
    proxy: { host: '127.0.0.1', port, pool: { max_per_backend: 50 } },
    auth: { method: 'trust', users_file: usersFile },
    admin: { host: '127.0.0.1', port: adminPort },
    backends: cluster.nodes.map((n) => ({ name: n.name, host: n.host, port: n.port, data_dir: n.dataDir })),
    health_check: { period_ms: 500, timeout_ms: 1000, connect_timeout_ms: 1000, max_retries: 1, retry_delay_ms: 100, user: SUPERUSER, password: SUPERUSER_PASSWORD },
    failover: { status_file: join(dir, 'pgwatchdog_status'), replication_user: SUPERUSER, replication_password: SUPERUSER_PASSWORD },
  };
  return merge(base, overrides);
}

/**
 * `takeoverFrom`: start `start --takeover` with that peer's config file and dir (the online
 * restart); the old process's dir becomes this one's. `parentDir`: where a new peer's dir is made.
 * `wrap`: a command the peer runs under, e.g. ['ip', 'netns', 'exec', NS] (it must exec the
 * peer, so the pid is the peer's).
 */
export async function startPeerProcess(
  cluster: PgCluster,
  overrides: Tree = {},
  opts: { readyTimeoutMs?: number; args?: string[]; env?: NodeJS.ProcessEnv; takeoverFrom?: PeerProcess; parentDir?: string; wrap?: string[] } = {},
): Promise<PeerProcess> {
  const from = opts.takeoverFrom;
  const dir = from ? from.dir : mkdtempSync(join(opts.parentDir ?? tmpdir(), 'pgwd-peer-'));
  const configFile = join(dir, 'pgwatchdog.yaml');
  const cfg = from ? (parse(readFileSync(configFile, 'utf8')) as Tree) : await peerConfig(cluster, dir, overrides);
  if (from) {
    from.ownsDir = false;
    from.child.expectEnd(); // it exits once it has handed over
  } else writeFileSync(configFile, stringify(cfg));
  // PGWD_NODE_ARGS: extra node flags for every peer process, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile them.
  const nodeArgs = process.env.PGWD_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const argv = [process.execPath, ...nodeArgs, BIN, 'start', '-c', configFile, ...(from ? ['--takeover'] : []), ...(opts.args ?? [])];
  const [cmd, ...args] = [...(opts.wrap ?? []), ...argv] as [string, ...string[]];
  const proc = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PGWATCHDOG_LOG_LEVEL: process.env.PGWATCHDOG_LOG_LEVEL ?? 'debug', ...opts.env },
  });
  const nameAt = argv.indexOf('--name');
  const child = new TestChild(`peer${nameAt >= 0 ? ` ${argv[nameAt + 1]}` : ''} (proxy port ${(cfg.proxy as Tree).port as number}, pid ${proc.pid})`, proc);
  const exited = child.ended.then((e) => e.code);

  const peer: PeerProcess = {
    proc,
    dir,
    configFile,
    host: '127.0.0.1',
    port: (cfg.proxy as Tree).port as number,
    adminPort: (cfg.admin as Tree).port as number,
    child,
    logs: child.logs,
    waitForLog: (pred, timeoutMs = 20_000) => child.waitForLog(pred, timeoutMs),
    async stop() {
      child.expectEnd();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(t);
      if (peer.ownsDir) rmSync(dir, { recursive: true, force: true });
      return code;
    },
    async kill9() {
      child.expectEnd();
      proc.kill('SIGKILL');
      await exited;
    },
    exited,
    ownsDir: true,
  };
  try {
    // 60 s: a peer started from the sources compiles them first (tsx), slow on a loaded 2-core machine; one that fails exits and ends the wait at once.
    await peer.waitForLog((l) => l.msg === 'peer ready', opts.readyTimeoutMs ?? 60_000);
  } catch (err) {
    await peer.stop();
    throw err;
  }
  return peer;
}
