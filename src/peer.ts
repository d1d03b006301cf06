// The composition root of one peer: builds the parts in dependency order, starts them,
// and stops them in reverse. Nothing here decides anything; it only wires.
import { ConfigError, loadConfig, type Config } from './config/index.js';
import { createLogger, type Logger } from './log.js';
import { BackendRegistry } from './backends/registry.js';
import { HealthChecker } from './backends/health.js';
import { ReplicationMonitor } from './backends/replication.js';
import { FailoverEngine } from './failover/index.js';
import { createProxy, Proxy, type ProxyService } from './proxy/index.js';
import { Watchdog, watchdogEnabled } from './cluster/watchdog.js';
import { clusterAdminView } from './cluster/admin-view.js';
import { CancelRelay } from './cluster/cancel-relay.js';
import { hostname, tmpdir } from 'node:os';
import { TakeoverServer, takeoverSocketPath } from './takeover/old-side.js';
import { Successor, type Taker } from './takeover/new-side.js';
import { giver } from './takeover/giver.js';
import { removePidFile, respawn, writePidFile } from './takeover/respawn.js';
import { AdminServer } from './admin/server.js';
import { watchdogNodes } from './admin/views.js';
import { singlePeerView, type WatchdogView } from './admin/watchdog-view.js';
import { reloadConfig, reloadView, type ConfigSource, type ReloadOutcome } from './reload.js';

export class Peer {
  readonly registry: BackendRegistry;
  readonly health: HealthChecker;
  readonly replication: ReplicationMonitor;
  readonly failover: FailoverEngine;
  readonly proxy: ProxyService;
  /** What the admin part knows of the watchdog: the cluster's facts through its adapter
   * (src/cluster/admin-view.ts), or a standalone peer's. */
  readonly watchdog: WatchdogView;
  readonly admin: AdminServer;
  /** The watchdog cluster, with two or more watchdog peers; with one (or none) the peer decides alone, as before. */
  readonly cluster: Watchdog | undefined;
  /** Where the proxy listens, once started. */
  proxyAddress: { host: string; port: number } | undefined;
  /** Where the admin API listens, once started. */
  adminAddress: { host: string; port: number } | undefined;
  /** Where the config came from, for reload(). */
  readonly source: ConfigSource | undefined;
  private stopping: Promise<void> | undefined;
  /** Cancels between peers (with a watchdog): forwards a cancel to the peer its key names. */
  readonly cancelRelay: CancelRelay | undefined;
  /** Where a successor connects to take this process over (online restart). */
  takeoverServer: TakeoverServer | undefined;
  /** While this process takes over from another: resolves with the old process's summary. */
  takeover: Promise<string> | undefined;

  constructor(
    readonly config: Config,
    readonly log: Logger,
    opts: {
      /** The watchdog's facts for the admin part; by default the cluster's, or a standalone peer's. */
      watchdog?: WatchdogView;
      /** Where the config came from, for reload(). */
      source?: ConfigSource;
    } = {},
  ) {
    this.source = opts.source;
    this.registry = new BackendRegistry(config);
    this.registry.on('change', ({ id, before, after, reason }) => {
      if (before.status !== after.status || before.role !== after.role) {
        log.info({ backend: id, status: after.status, role: after.role, was: { status: before.status, role: before.role }, reason }, 'backend state changed');
      }
    });
    // Under the watchdog the cluster logs the gates it sets; with one peer the failover engine
    // sets them (a hold while it fails over), and this says so.
    if (!watchdogEnabled(config)) this.registry.on('gates', (g, reason) => log.info({ held: g.held.map((h) => h.id), refuseWrites: g.refuseWrites }, `routing gates: ${reason}`));
    this.health = new HealthChecker({ config, registry: this.registry, logger: log.child({ part: 'health' }) });
    this.replication = new ReplicationMonitor({
      config,
      registry: this.registry,
      logger: log.child({ part: 'replication' }),
      // (The health checks' kept connections notice a dead server first; the monitor's own,
      // open once it has sampled between checks, may too.)
      onConnectionLost: (id, err) => this.health.checkNow(id, `replication monitor lost its connection: ${err.message}`),
    });
    // Every health check's round trip carries the monitor's periodic sample.
    this.replication.follow(this.health);
    if (watchdogEnabled(config)) {
      this.cluster = new Watchdog({
        config,
        registry: this.registry,
        logger: log.child({ part: 'watchdog' }),
        // Read with every view built (a few times a second): a plain count, not the full stats
        // (pools, per-backend select counts). Workers report theirs through the supervisor.
        sessions: () => (this.proxy instanceof Proxy ? this.proxy.sessionCount() : this.proxy.stats().clients.total),
        proxyUp: () => this.proxyAddress !== undefined && this.stopping === undefined,
        proxyAddress: () => this.proxyAddress ?? null,
      });
      // Under the watchdog the replicated state is the durable record of backend states (no
      // status file), and the engine records through Raft and runs only on the coordinator.
      const engineConfig: Config = { ...config, failover: { ...config.failover, status_file: '' } };
      this.failover = new FailoverEngine({ config: engineConfig, registry: this.registry, logger: log.child({ part: 'failover' }), health: this.health, decisions: this.cluster.decisions, autoRequest: false });
      this.cluster.attachEngine(this.failover);
    } else {
      this.failover = new FailoverEngine({ config, registry: this.registry, logger: log.child({ part: 'failover' }), health: this.health });
    }
    this.proxy = createProxy({
      config,
      registry: this.registry,
      logger: log.child({ part: 'proxy' }),
      onBackendError: config.failover.failover_on_backend_error ? (id, err) => this.health.checkNow(id, `backend error: ${err.message}`) : undefined,
      onCausalWait: (id) => this.replication.hurry(id),
      watchdogNodes: () => watchdogNodes(this.watchdog.facts()),
      cancelToPeer: this.cluster ? (peer, pid, secret) => this.cancelRelay?.forward(peer, pid, secret) : undefined,
    });
    if (this.cluster) {
      const proxy = this.proxy;
      this.cancelRelay = new CancelRelay(this.cluster.transport, config.watchdog.peers.map((p) => p.name), (pid, secret) => proxy.cancelOwn?.(pid, secret), log.child({ part: 'cancel' }));
    }
    const proxyPort = () => this.proxyAddress?.port ?? null;
    this.watchdog =
      opts.watchdog ??
      (this.cluster ? clusterAdminView({ config, watchdog: this.cluster, proxyPort }) : undefined) ??
      singlePeerView({ name: config.watchdog.name ?? hostname(), host: config.proxy.host, proxyPort, vipAddress: config.watchdog.vip?.address });
    this.admin = new AdminServer({
      config,
      registry: this.registry,
      failover: this.failover,
      proxyStats: () => this.proxy.stats(),
      proxyListening: () => this.proxyAddress !== undefined && this.stopping === undefined,
      watchdog: this.watchdog,
      logger: log.child({ part: 'admin' }),
      reload: opts.source ? () => reloadView(this.reload()) : undefined,
    });
    // pgpool's "close idle" request: the engine decides, the proxy owns the pooled connections.
    this.failover.on('closeIdle', (ids) => this.proxy.closeIdle(ids));
  }

  /**
   * `from`: the running process this one takes over from (online restart): its watchdog is
   * released before this one's starts, its listeners are adopted instead of bound, and its
   * sessions move in afterwards (`takeover` resolves when it holds nothing).
   */
  async start(from?: Successor): Promise<{ host: string; port: number }> {
    this.health.start();
    this.replication.start();
    if (from) {
      const contactAt = await from.releaseWatchdog();
      this.cluster?.inheritContact(contactAt);
    }
    await this.failover.start();
    await this.cluster?.start();
    const l = from ? await from.listeners() : undefined;
    const addr = (this.proxyAddress = await this.proxy.listen(l?.proxy));
    this.adminAddress = await this.admin.listen(l?.admin);
    this.log.info({ proxy: addr, admin: this.adminAddress, nativeForwarding: this.proxy.nativeForwarding, takeover: from ? { from: from.oldPid } : undefined, backends: this.registry.list().map((b) => ({ id: b.id, status: b.status, role: b.role })) }, 'peer ready');
    if (from) {
      this.takeover = from.takeSessions(this.proxy as unknown as Taker);
      this.takeover.catch(() => undefined); // (startPeer reports it)
    }
    else await this.waitForSuccessor();
    return addr;
  }

  /** Opens the takeover socket, where a successor (`pgwatchdog restart`) finds this process. */
  async waitForSuccessor(): Promise<void> {
    const t = this.config.proxy.takeover;
    this.takeoverServer = new TakeoverServer(takeoverSocketPath(t.socket, this.config.proxy.port, tmpdir()), giver(this), this.log.child({ part: 'takeover' }), t.session_wait_ms);
    await this.takeoverServer.listen();
  }

  /** Re-reads the config file: live keys apply now, the others are named as needing a restart. */
  reload(): ReloadOutcome {
    if (!this.source) throw new Error('this peer was not started from a config file');
    return reloadConfig(this, this.source);
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('peer stopping');
      this.takeoverServer?.close();
      await this.cluster?.stop();
      await this.admin.close();
      await this.proxy.close();
      await this.failover.stop();
      await this.replication.stop();
      await this.health.stop();
      this.log.info('peer stopped');
    })();
    return this.stopping;
  }
}

/** `pgwatchdog start`: runs a peer until SIGINT/SIGTERM; resolves to the exit code. */
export async function startPeer(file: string, opts: { name?: string; takeover?: boolean; pidFile?: string } = {}): Promise<number> {
  let config: Config;
  try {
    config = loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    throw err;
  }
  if (opts.name !== undefined) {
    if (config.watchdog.peers.length > 0 && !config.watchdog.peers.some((p) => p.name === opts.name)) {
      process.stderr.write(`${file}: --name ${opts.name} is not one of watchdog.peers (${config.watchdog.peers.map((p) => p.name).join(', ')})\n`);
      return 1;
    }
    config.watchdog.name = opts.name;
  }
  if (config.watchdog.peers.length >= 2 && config.watchdog.name === undefined) {
    process.stderr.write(`${file}: watchdog.name or --name must say which of watchdog.peers this peer is (${config.watchdog.peers.map((p) => p.name).join(', ')})\n`);
    return 1;
  }
  // Checked here rather than in the schema: a converted pgpool.conf without wd_authkey is a
  // valid file to finish editing, but no peer joins a cluster without the key.
  if (config.watchdog.peers.length >= 2 && !config.watchdog.auth_key) {
    process.stderr.write(`${file}: watchdog.auth_key: required to join a watchdog cluster of ${config.watchdog.peers.length} peers (it authenticates them to each other)\n`);
    return 1;
  }
  const log = createLogger({ level: config.log.level, name: config.watchdog.name ?? 'pgwatchdog' });
  const peer = new Peer(config, log, { source: { file, name: opts.name } });
  // SIGHUP re-reads the config (systemd's ExecReload); registered before start, since its
  // default action would end the process.
  process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, 'reload requested');
    peer.reload();
  });
  // SIGUSR2: an online restart from inside (respawn.ts): the successor is this process's child.
  process.on('SIGUSR2', () => respawn(log));
  // `--takeover`: the running process on this proxy port hands everything over; until the
  // listeners have moved, a failure here leaves it serving. `pgwatchdog restart` started
  // this process with an IPC channel and hears the outcome on it.
  let from: Successor | undefined;
  if (opts.takeover) {
    const t = config.proxy.takeover;
    try {
      from = await Successor.connect(takeoverSocketPath(t.socket, config.proxy.port, tmpdir()), log.child({ part: 'takeover' }));
    } catch (err) {
      log.fatal({ reason: (err as Error).message }, 'takeover failed: the running process keeps serving');
      report({ ok: false, reason: (err as Error).message, serving: 'old' });
      return 1;
    }
  }
  try {
    await peer.start(from);
    // Serving now (a successor: the listeners are its own): the service manager may follow.
    if (opts.pidFile) writePidFile(opts.pidFile);
  } catch (err) {
    log.fatal({ err }, 'peer failed to start');
    from?.abort(`the new process failed to start: ${(err as Error).message}`);
    report({ ok: false, reason: `the new process failed to start: ${(err as Error).message}`, serving: 'old' });
    await peer.stop().catch(() => undefined);
    return 1;
  }
  return new Promise<number>((resolve) => {
    const shutdown = (sig: string) => {
      log.info({ signal: sig }, 'shutdown requested');
      peer.stop().then(
        () => {
          if (opts.pidFile) removePidFile(opts.pidFile);
          resolve(0);
        },
        (err: unknown) => {
          log.error({ err }, 'error while stopping');
          resolve(1);
        },
      );
    };
    process.once('SIGINT', () => shutdown('SIGINT'));
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    const successorMayCome = (): void => {
      void peer.takeoverServer?.finished.then((reason) => {
        log.info({ reason }, 'a successor took this process over');
        shutdown('takeover');
      });
    };
    if (peer.takeover) {
      peer.takeover.then(
        async (reason) => {
          log.info({ reason }, 'takeover complete: this process serves everything');
          report({ ok: true, reason, serving: 'new' });
          await peer.waitForSuccessor();
          successorMayCome();
        },
        async (err: Error) => {
          // The listeners are here already: this process serves; the old one drains.
          log.error({ reason: err.message }, 'takeover of sessions failed; this process serves new clients');
          report({ ok: false, reason: err.message, serving: 'new' });
          await peer.waitForSuccessor();
          successorMayCome();
        },
      );
    } else successorMayCome();
  });
}

/** Tells `pgwatchdog restart` (over the IPC channel it opened) how the takeover went. */
function report(outcome: { ok: boolean; reason: string; serving: 'old' | 'new' }): void {
  if (!process.send) return;
  process.send({ takeover: outcome }, () => process.disconnect?.());
}
