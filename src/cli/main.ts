// The `pgwatchdog` command line. `run` returns the exit code instead of exiting, so tests
// can call it in-process: 0 ok, 1 the command failed (bad config, an action refused or
// failed), 2 usage, 3 the peer's admin API could not be reached.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, loadConfig } from '../config/index.js';
import * as admin from './commands.js';

import { packageVersion } from '../version.js';

export const VERSION: string = packageVersion();

interface Command {
  usage: string;
  summary: string;
  options: NonNullable<ParseArgsConfig['options']>;
  positionals?: number;
  /** Set until the issue that brings the command lands. */
  notYet?: string;
  run?: (values: Values, positionals: string[], io: Io) => Promise<number>;
}

type Values = Record<string, string | boolean | undefined>;

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  /** stdout is a terminal: colour and in-place refresh. */
  tty?: boolean;
}

const adminOpt = { admin: { type: 'string' as const } };
const readOpts = { ...adminOpt, json: { type: 'boolean' as const } };

const COMMANDS: Record<string, Command> = {
  start: {
    usage: 'start -c FILE [--name PEER] [--takeover] [--pid-file FILE]',
    summary: 'run a peer: proxy, health checks, failover, watchdog, admin API; --takeover: take over from the running process of this peer; --pid-file: write the pid there once serving (SIGUSR2 restarts it online)',
    options: { config: { type: 'string', short: 'c' }, name: { type: 'string' }, takeover: { type: 'boolean' }, 'pid-file': { type: 'string' } },
    run: async (v, _p, io) => {
      const file = requireConfigPath(v, io);
      if (file === undefined) return 2;
      const { startPeer } = await import('../peer.js');
      return startPeer(file, { name: v.name as string | undefined, takeover: v.takeover === true, pidFile: v['pid-file'] as string | undefined });
    },
  },
  restart: {
    usage: 'restart -c FILE [--name PEER]',
    summary: 'online restart: start a new process of this peer that takes over listener, sessions and backend connections from the running one; waits for the outcome',
    options: { config: { type: 'string', short: 'c' }, name: { type: 'string' } },
    run: async (v, _p, io) => {
      const file = requireConfigPath(v, io);
      if (file === undefined) return 2;
      const { restartPeer } = await import('./restart.js');
      return restartPeer(file, v.name as string | undefined, io);
    },
  },
  'rolling-restart': {
    usage: 'rolling-restart -c FILE [--name PEER] -c FILE [--name PEER] …',
    summary: "rolling upgrade of the peers on this host: each restarted online in turn, the coordinator last, the next once the last is back in the cluster and caught up",
    options: { config: { type: 'string', short: 'c', multiple: true }, name: { type: 'string', multiple: true } },
    run: async (v, _p, io) => {
      const files = (v.config as unknown as string[] | undefined) ?? [];
      if (files.length === 0) {
        io.err('rolling-restart: give each peer\'s config file with -c FILE (and --name PEER after it when the file does not set watchdog.name)');
        return 2;
      }
      const { rollingPeers, rollingRestart } = await import('./rolling-restart.js');
      let peers;
      try {
        peers = rollingPeers(files, (v.name as unknown as string[] | undefined) ?? []);
      } catch (err) {
        io.err(`rolling-restart: ${(err as Error).message}`);
        return err instanceof ConfigError ? 1 : 2;
      }
      return rollingRestart(peers, io);
    },
  },
  'check-config': {
    usage: 'check-config -c FILE',
    summary: 'validate a configuration file; exit 0 if valid, 1 if not',
    options: { config: { type: 'string', short: 'c' } },
    run: async (v, _p, io) => {
      const file = requireConfigPath(v, io);
      if (file === undefined) return 2;
      try {
        const cfg = loadConfig(file);
        io.out(`${file}: OK (${cfg.backends.length} backend${cfg.backends.length === 1 ? '' : 's'}, ${cfg.watchdog.peers.length} watchdog peer${cfg.watchdog.peers.length === 1 ? '' : 's'})`);
        return 0;
      } catch (err) {
        if (err instanceof ConfigError) {
          io.err(err.message);
          return 1;
        }
        throw err;
      }
    },
  },
  status: {
    usage: 'status [--watch] [--json] [--admin URL]',
    summary: "one screen: peers, coordinator, VIP, quorum, term, backends (--watch: live)",
    options: { ...readOpts, watch: { type: 'boolean', short: 'w' } },
    run: admin.status,
  },
  nodes: { usage: 'nodes [--json] [--admin URL]', summary: 'list the PostgreSQL backends (like SHOW POOL_NODES)', options: readOpts, run: admin.nodes },
  watchdog: { usage: 'watchdog [--json] [--admin URL]', summary: "the watchdog cluster and its peers (pcp_watchdog_info's fields)", options: readOpts, run: admin.watchdog },
  failovers: {
    usage: 'failovers [--limit N] [--json] [--admin URL]',
    summary: 'failover history, newest first, with each step and its duration',
    options: { ...readOpts, limit: { type: 'string' } },
    run: admin.failovers,
  },
  attach: { usage: 'attach N [--admin URL]', summary: 'attach backend N', options: adminOpt, positionals: 1, run: admin.action('attach') },
  detach: { usage: 'detach N [--admin URL]', summary: 'detach backend N (fails it over if it is the primary)', options: adminOpt, positionals: 1, run: admin.action('detach') },
  promote: {
    usage: 'promote N [--switchover] [--admin URL]',
    summary: 'promote standby N, showing each step; --switchover stops the old primary cleanly first',
    options: { ...adminOpt, switchover: { type: 'boolean' } },
    positionals: 1,
    run: admin.action('promote'),
  },
  transfer: { usage: 'transfer PEER [--admin URL]', summary: 'hand the coordinator role to PEER', options: adminOpt, positionals: 1, run: admin.transfer },
  reload: {
    usage: 'reload [--admin URL]',
    summary: "re-read a running peer's config file: live settings apply now, the others are named as needing a restart",
    options: adminOpt,
    run: async (v, _p, io) => {
      const { reloadCommand } = await import('./reload.js');
      return reloadCommand(v.admin as string | undefined, io);
    },
  },
  'import-pgpool-conf': {
    usage: 'import-pgpool-conf FILE [-o OUT] [--force]',
    summary: 'convert a pgpool-II 4.x pgpool.conf into a pgwatchdog config; lists what it cannot carry over',
    options: { output: { type: 'string', short: 'o' }, force: { type: 'boolean' } },
    positionals: 1,
    run: async (v, p, io) => {
      const { importPgpoolConfCommand } = await import('./import-pgpool-conf.js');
      return importPgpoolConfCommand(p[0]!, { output: v.output as string | undefined, force: v.force === true }, io);
    },
  },
  demo: {
    usage: 'demo [--once] [--scenario failover|coordinator]',
    summary: 'run a local demo: PostgreSQL primary + 2 standbys, a 3-peer watchdog cluster (Ctrl-C removes it); --scenario narrates a failover',
    options: { once: { type: 'boolean' }, scenario: { type: 'string' } },
    run: async (v, _p, io) => {
      const { demoCommand } = await import('./demo.js');
      const args = [...(v.once ? ['--once'] : []), ...(typeof v.scenario === 'string' ? ['--scenario', v.scenario] : [])];
      return demoCommand(args, io);
    },
  },
};

function requireConfigPath(v: Values, io: Io): string | undefined {
  const file = v.config;
  if (typeof file !== 'string' || file === '') {
    io.err('error: -c FILE is required');
    return undefined;
  }
  return file;
}

function help(): string {
  const width = Math.max(...Object.values(COMMANDS).map((c) => c.usage.length));
  return [
    `pgwatchdog ${VERSION} — a watchdog cluster of peer PostgreSQL proxies`,
    '',
    'Usage: pgwatchdog <command> [options]',
    '',
    'Commands:',
    ...Object.values(COMMANDS).map((c) => `  ${c.usage.padEnd(width)}  ${c.summary}${c.notYet ? ' (not yet available)' : ''}`),
    '',
    'Options:',
    '  -h, --help     show this help',
    '  -V, --version  print the version',
    '  --admin URL    admin API of the peer to ask (or PGWATCHDOG_ADMIN; default http://127.0.0.1:9898)',
    '  --json         machine-readable output for read commands',
    '',
    'Environment: PGWATCHDOG_ADMIN (the peer), PGWATCHDOG_TOKEN (admin.token, for attach,',
    'detach, promote and transfer), NO_COLOR (no colour even on a terminal).',
    '',
    'Exit codes: 0 done; 1 failed (invalid config, call refused, action failed);',
    '2 usage error or command not available; 3 the admin API could not be reached.',
  ].join('\n');
}

const stdio: Io = {
  out: (s) => process.stdout.write(`${s}\n`),
  err: (s) => process.stderr.write(`${s}\n`),
  tty: process.stdout.isTTY === true && !process.env.NO_COLOR,
};

export async function run(argv: string[], io: Io = stdio): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    io.out(help());
    return name === undefined ? 2 : 0;
  }
  if (name === '-V' || name === '--version') {
    io.out(VERSION);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    io.err(`error: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args: rest, options: { ...cmd.options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true }) as {
      values: Values;
      positionals: string[];
    };
  } catch (err) {
    io.err(`error: ${(err as Error).message}\nusage: pgwatchdog ${cmd.usage}`);
    return 2;
  }
  if (parsed.values.help) {
    io.out(`usage: pgwatchdog ${cmd.usage}\n  ${cmd.summary}`);
    return 0;
  }
  if (parsed.positionals.length !== (cmd.positionals ?? 0)) {
    io.err(`error: wrong number of arguments\nusage: pgwatchdog ${cmd.usage}`);
    return 2;
  }
  if (cmd.notYet || !cmd.run) {
    io.err(`pgwatchdog ${name}: not yet available in ${VERSION} (it arrives with ${cmd.notYet ?? 'a later version'})`);
    return 2;
  }
  return cmd.run(parsed.values, parsed.positionals, io);
}
