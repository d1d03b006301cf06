// proxy.workers > 1: several processes serve the same port (node:cluster shares the
// listening socket). The supervisor, in the peer's process, serves no client and holds no
// pool: it forks the workers, mirrors registry changes to them, relays cancel requests to the
// worker that owns the session (its index is in the cancel key's top bits), passes "close
// idle" on, sums their stats and reports their backend errors to the peer. Each worker runs a
// Proxy (index.ts) that reaches its siblings through a WorkerLink; worker-main.ts is its
// entry point. Everything that crosses the process boundary is typed here (IpcMsg).
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../log.js';
import type { Config } from '../config/index.js';
import { BackendRegistry, type BackendChange, type BackendPatch, type RoutingGates } from '../backends/registry.js';
import { createLogger } from '../log.js';
import * as splice from './splice.js';
import { monotonicMs } from '../backends/mono-clock.js';
import type { ProxyOptions, ProxyService, ProxyStats, WorkerLink } from './service.js';

/** Bits of a cancel key naming the worker: up to 64 workers (proxy.workers max). */
export const WORKER_BITS = 6;

/** Registry fields mirrored to workers; bigints travel as strings over IPC. */
type WirePatch = Record<string, string | number | boolean | null>;

function toWire(s: BackendChange['after']): WirePatch {
  return {
    status: s.status,
    role: s.role,
    pgStatus: s.pgStatus,
    pgRole: s.pgRole,
    lsn: s.lsn === null ? null : s.lsn.toString(),
    receiveLsn: s.receiveLsn === null ? null : s.receiveLsn.toString(),
    insertLsn: s.insertLsn === null ? null : s.insertLsn.toString(),
    lagBytes: s.lagBytes,
    lagMs: s.lagMs,
    replicationState: s.replicationState,
    syncState: s.syncState,
  };
}

function fromWire(w: WirePatch): BackendPatch {
  return {
    status: w.status as BackendPatch['status'],
    role: w.role as BackendPatch['role'],
    pgStatus: w.pgStatus as BackendPatch['pgStatus'],
    pgRole: w.pgRole as BackendPatch['pgRole'],
    lsn: w.lsn === null ? null : BigInt(w.lsn as string),
    receiveLsn: w.receiveLsn === null ? null : BigInt(w.receiveLsn as string),
    insertLsn: w.insertLsn === null ? null : BigInt(w.insertLsn as string),
    lagBytes: w.lagBytes as number | null,
    lagMs: w.lagMs as number | null,
    replicationState: w.replicationState as string,
    syncState: w.syncState as string,
  };
}

export type IpcMsg =
  | { type: 'init'; config: Config; index: number; registry: { id: number; state: WirePatch; sampledAt: number | null }[]; gates: RoutingGates }
  | { type: 'registry'; id: number; patch: WirePatch; reason: string }
  /** A WAL sample's send time (BackendState.sampledAt), only while a worker waits on one. */
  | { type: 'sampled'; id: number; sentAt: number }
  | { type: 'gates'; gates: RoutingGates; reason: string }
  | { type: 'cancel'; worker: number; pid: number; secret: number }
  | { type: 'closeIdle'; ids: number[] }
  | { type: 'listening'; host: string; port: number }
  | { type: 'stats'; stats: ProxyStats }
  /** To a worker: what the other workers last reported (for SHOW POOL_NODES and max_clients). */
  | { type: 'others'; selectCounts: number[]; clients: number }
  | { type: 'backendError'; id: number; message: string }
  /** From a worker: a session waits on fresh WAL samples (causal reads). */
  | { type: 'causalWait'; id: number }
  | { type: 'ready' }
  | { type: 'close' };

/** The sum of the workers' reports. */
function sumStats(all: ProxyStats[], nBackends: number, workers: number): ProxyStats {
  const sum: ProxyStats = {
    clients: { active: 0, idle: 0, total: 0, native: 0 },
    pools: Array.from({ length: nBackends }, (_, backendId) => ({ backendId, total: 0, inUse: 0, idle: 0, waiting: 0 })),
    selectCounts: Array.from({ length: nBackends }, () => 0),
    workers,
  };
  for (const st of all) {
    sum.clients.active += st.clients.active;
    sum.clients.idle += st.clients.idle;
    sum.clients.total += st.clients.total;
    sum.clients.native += st.clients.native;
    st.pools.forEach((p, i) => {
      const t = sum.pools[i]!;
      t.total += p.total;
      t.inUse += p.inUse;
      t.idle += p.idle;
      t.waiting += p.waiting;
    });
    st.selectCounts.forEach((n, i) => (sum.selectCounts[i]! += n));
  }
  return sum;
}

export class WorkerSupervisor implements ProxyService {
  readonly nativeForwarding: boolean;
  private readonly cfg: Config;
  private readonly registry: BackendRegistry;
  private readonly log: Logger;
  private readonly workers: Worker[] = [];
  private readonly workerStats = new Map<number, ProxyStats>();
  private closing = false;
  /**
   * Per backend: the latest instant (mono-clock.ts) a worker said a session waits on a fresh WAL
   * sample of it (causal reads), until a sample sent after it has been mirrored. Sample times
   * cross to the workers only then: an idle peer sends its workers nothing per sample.
   */
  private readonly waitingSince = new Map<number, number>();
  private readonly onChange = (c: BackendChange): void => {
    for (const w of this.workers) if (w.isConnected()) w.send({ type: 'registry', id: c.id, patch: toWire(c.after), reason: c.reason } satisfies IpcMsg);
  };
  private readonly onSampled = (id: number, sentAt: number): void => {
    const since = this.waitingSince.get(id);
    if (since === undefined) return;
    if (sentAt > since) this.waitingSince.delete(id);
    for (const w of this.workers) if (w.isConnected()) w.send({ type: 'sampled', id, sentAt } satisfies IpcMsg);
  };
  private readonly onGates = (gates: RoutingGates, reason: string): void => {
    for (const w of this.workers) if (w.isConnected()) w.send({ type: 'gates', gates, reason } satisfies IpcMsg);
  };

  constructor(private readonly opts: ProxyOptions) {
    this.cfg = opts.config;
    this.registry = opts.registry;
    this.log = opts.logger;
    this.nativeForwarding = this.cfg.proxy.native_forwarding && splice.available();
    this.registry.on('change', this.onChange);
    this.registry.on('sampled', this.onSampled);
    this.registry.on('gates', this.onGates);
  }

  async listen(): Promise<{ host: string; port: number }> {
    // Compiled (an installed package), the worker is plain JavaScript; from the sources it runs through tsx.
    const compiled = import.meta.url.endsWith('.js');
    cluster.setupPrimary({ exec: fileURLToPath(new URL(compiled ? './worker-main.js' : './worker-main.ts', import.meta.url)), execArgv: compiled ? [] : ['--import', 'tsx'] });
    const n = this.cfg.proxy.workers;
    const registry = this.registry.list().map((b) => ({ id: b.id, state: toWire(b), sampledAt: b.sampledAt }));
    const addresses: Promise<{ host: string; port: number }>[] = [];
    for (let i = 0; i < n; i++) {
      const w = cluster.fork({ PGWATCHDOG_PROXY_WORKER: String(i) });
      this.workers.push(w);
      const init: IpcMsg = { type: 'init', config: this.cfg, index: i, registry, gates: this.registry.gates() };
      const listening = new Promise<{ host: string; port: number }>((resolve, reject) => {
        w.on('message', (m: IpcMsg) => {
          // Messages sent before the worker's module has loaded would be lost: it asks first.
          if (m.type === 'ready') w.send(init);
          else if (m.type === 'listening') resolve({ host: m.host, port: m.port });
          else this.fromWorker(m, i);
        });
        w.once('exit', (code) => reject(new Error(`proxy worker ${i} exited with code ${code} before listening`)));
      });
      // Workers listen with the configured port; node:cluster shares one handle among them
      // (with port 0, one ephemeral port for all).
      addresses.push(listening);
      await listening;
      w.on('exit', (code, signal) => {
        // Its clients are gone: they no longer count against max_clients in the other workers.
        this.workerStats.delete(i);
        if (!this.closing) this.log.error({ worker: i, code, signal }, 'proxy worker died');
      });
    }
    const a = await addresses[0]!;
    this.log.info({ host: a.host, port: a.port, workers: n }, 'proxy listening (workers)');
    return a;
  }

  private fromWorker(m: IpcMsg, index: number): void {
    if (m.type === 'cancel') {
      const w = this.workers[m.worker];
      if (w?.isConnected()) w.send(m);
    } else if (m.type === 'stats') {
      this.workerStats.set(index, m.stats);
      const others: Extract<IpcMsg, { type: 'others' }> = { type: 'others', selectCounts: this.cfg.backends.map(() => 0), clients: 0 };
      for (const [i, st] of this.workerStats) {
        if (i === index) continue;
        others.clients += st.clients.total;
        st.selectCounts.forEach((n, id) => (others.selectCounts[id]! += n));
      }
      const w = this.workers[index];
      if (w?.isConnected()) w.send(others);
    } else if (m.type === 'backendError') {
      this.opts.onBackendError?.(m.id, new Error(m.message));
    } else if (m.type === 'causalWait') {
      this.waitingSince.set(m.id, monotonicMs());
      this.opts.onCausalWait?.(m.id);
    }
  }

  closeIdle(backendIds: number[]): void {
    const known = backendIds.filter((id) => {
      const ok = Number.isInteger(id) && id >= 0 && id < this.cfg.backends.length;
      if (!ok) this.log.warn({ backend: id }, 'close idle requested for an unknown backend id; ignored');
      return ok;
    });
    // Each worker closes its own and logs what it closed.
    for (const w of this.workers) if (w.isConnected()) w.send({ type: 'closeIdle', ids: known } satisfies IpcMsg);
  }

  /** The workers' stats as of their last reports (≤ 1 s old). */
  stats(): ProxyStats {
    return sumStats([...this.workerStats.values()], this.cfg.backends.length, this.workers.length);
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.registry.off('change', this.onChange);
    this.registry.off('sampled', this.onSampled);
    this.registry.off('gates', this.onGates);
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            const t = setTimeout(() => w.kill('SIGKILL'), 5000);
            w.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
            if (w.isConnected()) w.send({ type: 'close' } satisfies IpcMsg);
            else w.kill('SIGTERM');
          }),
      ),
    );
  }
}

/** What the worker side needs of the Proxy it runs. */
export interface WorkerProxy {
  listen(): Promise<{ host: string; port: number }>;
  stats(): ProxyStats;
  cancelOwn(pid: number, secret: number): void;
  closeIdle(backendIds: number[]): void;
  close(): Promise<void>;
}

/**
 * The worker side (called by worker-main.ts in a forked process): waits for the supervisor's
 * config and registry snapshot, runs the Proxy `make` builds on the shared socket, applies
 * mirrored registry changes, reports stats once a second, and exits when told to close or
 * when the supervisor goes away.
 */
export function serveAsWorker(make: (opts: ProxyOptions, link: WorkerLink) => WorkerProxy): void {
  let proxy: WorkerProxy | undefined;
  let registry: BackendRegistry | undefined;
  const link: { -readonly [K in keyof WorkerLink]: WorkerLink[K] } = {
    index: 0,
    relayCancel: (worker, pid, secret) => process.send?.({ type: 'cancel', worker, pid, secret } satisfies IpcMsg),
    others: { selectCounts: [], clients: 0 },
  };
  const stop = (): void => {
    void (proxy?.close() ?? Promise.resolve()).finally(() => process.exit(0));
  };

  async function start(m: Extract<IpcMsg, { type: 'init' }>): Promise<void> {
    registry = new BackendRegistry(m.config);
    for (const { id, state, sampledAt } of m.registry) {
      registry.update(id, fromWire(state), 'initial state from the main process');
      if (sampledAt !== null) registry.sampled(id, sampledAt);
    }
    registry.setGates(m.gates, 'initial gates from the main process');
    const logger = createLogger({ level: m.config.log.level, name: `pgwatchdog-worker-${m.index}`, pretty: false });
    link.index = m.index;
    const onBackendError = (id: number, err: Error): void => void process.send?.({ type: 'backendError', id, message: err.message } satisfies IpcMsg);
    // Sessions ask on every read they keep off the standby: one message per causal_sample_ms
    // at most (the monitor would coalesce them anyway).
    const lastWait = m.config.backends.map(() => -Infinity);
    const onCausalWait = (id: number): void => {
      const now = monotonicMs();
      if (!(now - lastWait[id]! >= m.config.proxy.causal_sample_ms)) return;
      lastWait[id] = now;
      process.send?.({ type: 'causalWait', id } satisfies IpcMsg);
    };
    proxy = make({ config: m.config, registry, logger, onBackendError, onCausalWait }, link);
    const a = await proxy.listen();
    process.send?.({ type: 'listening', host: a.host, port: a.port } satisfies IpcMsg);
    const timer = setInterval(() => process.send?.({ type: 'stats', stats: proxy!.stats() } satisfies IpcMsg), 1000);
    timer.unref();
  }

  process.on('message', (m: IpcMsg) => {
    if (m.type === 'init') {
      void start(m).catch((err: Error) => {
        console.error(`proxy worker ${m.index}: ${err.message}`);
        process.exit(1);
      });
    } else if (m.type === 'close') stop();
    else if (m.type === 'registry') registry?.update(m.id, fromWire(m.patch), m.reason);
    else if (m.type === 'sampled') registry?.sampled(m.id, m.sentAt);
    else if (m.type === 'gates') registry?.setGates(m.gates, m.reason);
    else if (m.type === 'cancel') proxy?.cancelOwn(m.pid, m.secret);
    else if (m.type === 'closeIdle') proxy?.closeIdle(m.ids);
    else if (m.type === 'others') link.others = { selectCounts: m.selectCounts, clients: m.clients };
  });
  // The main process going away must not leave orphan workers serving clients.
  process.on('disconnect', stop);
  process.send?.({ type: 'ready' } satisfies IpcMsg);
}
