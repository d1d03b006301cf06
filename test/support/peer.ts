// Runs a real pgwatchdog peer process (`bin/pgwatchdog.js start`) against a test-bed cluster.
// The config is written to a temp dir; the process is killed at stop() and, failing that,
// when the test process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { freePort, SUPERUSER, SUPERUSER_PASSWORD, type PgCluster } from './pg.js';

const BIN = new URL('../../bin/pgwatchdog.js', import.meta.url).pathname;
const live = new Set<ChildProcess>();
let hooked = false;

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export interface PeerProcess {
  proc: ChildProcess;
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
 */
export async function startPeerProcess(
  cluster: PgCluster,
  overrides: Tree = {},
  opts: { readyTimeoutMs?: number; args?: string[]; env?: NodeJS.ProcessEnv; takeoverFrom?: PeerProcess; parentDir?: string } = {},
): Promise<PeerProcess> {
  if (!hooked) {
    hooked = true;
    process.on('exit', () => {
      for (const p of live) p.kill('SIGKILL');
    });
  }
  const from = opts.takeoverFrom;
  const dir = from ? from.dir : mkdtempSync(join(opts.parentDir ?? tmpdir(), 'pgwd-peer-'));
  const configFile = join(dir, 'pgwatchdog.yaml');
  const cfg = from ? (parse(readFileSync(configFile, 'utf8')) as Tree) : await peerConfig(cluster, dir, overrides);
  if (from) from.ownsDir = false;
  else writeFileSync(configFile, stringify(cfg));
  // PGWD_NODE_ARGS: extra node flags for every peer process, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile them.
  const nodeArgs = process.env.PGWD_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const proc = spawn(process.execPath, [...nodeArgs, BIN, 'start', '-c', configFile, ...(from ? ['--takeover'] : []), ...(opts.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PGWATCHDOG_LOG_LEVEL: process.env.PGWATCHDOG_LOG_LEVEL ?? 'debug', ...opts.env },
  });
  live.add(proc);
  const logs: LogLine[] = [];
  const waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  let stderr = '';
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let l: LogLine;
      try {
        l = JSON.parse(line) as LogLine;
      } catch {
        l = { level: 30, msg: line };
      }
      logs.push(l);
      for (const w of [...waiters]) if (w.pred(l)) w.resolve(l);
    }
  });
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    proc.on('exit', (code) => {
      live.delete(proc);
      resolve(code);
    }),
  );

  const recent = () => `stderr:\n${stderr}\nlast logs:\n${logs.slice(-15).map((x) => JSON.stringify(x)).join('\n')}`;
  const waitForLog = (pred: (l: LogLine) => boolean, timeoutMs = 20_000) => {
    const seen = logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      const settle = (err: Error | undefined, l?: LogLine) => {
        clearTimeout(timer);
        const i = waiters.indexOf(w);
        if (i < 0) return;
        waiters.splice(i, 1);
        if (err) reject(err);
        else resolve(l!);
      };
      const w = { pred, resolve: (l: LogLine) => settle(undefined, l) };
      const timer = setTimeout(() => settle(new Error(`peer: no matching log line within ${timeoutMs} ms; ${recent()}`)), timeoutMs);
      waiters.push(w);
      void exited.then(() => settle(new Error(`peer exited before the expected log line; ${recent()}`)));
    });
  };

  const peer: PeerProcess = {
    proc,
    dir,
    configFile,
    host: '127.0.0.1',
    port: (cfg.proxy as Tree).port as number,
    adminPort: (cfg.admin as Tree).port as number,
    logs,
    waitForLog,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(t);
      if (peer.ownsDir) rmSync(dir, { recursive: true, force: true });
      return code;
    },
    async kill9() {
      proc.kill('SIGKILL');
      await exited;
    },
    exited,
    ownsDir: true,
  };
  try {
    // 60 s: a peer started from the sources compiles them first (tsx), slow on a loaded 2-core machine; one that fails exits and ends the wait at once.
    await waitForLog((l) => l.msg === 'peer ready', opts.readyTimeoutMs ?? 60_000);
  } catch (err) {
    await peer.stop();
    throw err;
  }
  return peer;
}
