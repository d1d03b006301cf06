// The proxy: accepts PostgreSQL clients, authenticates them, gives each a session over
// pooled backend connections, and follows the backend registry (sessions on a backend that
// leaves service end with 57P01; new sessions route by the current primary).
//
// With proxy.workers > 1 the Proxy in the main process forks node:cluster workers that share
// the listening socket; it mirrors registry changes to them over IPC and relays cancel
// requests to the worker that owns the session (the worker index is in the secret key).
import net from 'node:net';
import tls from 'node:tls';
import cluster, { type Worker } from 'node:cluster';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../log.js';
import type { Config } from '../config/index.js';
import type { BackendRegistry, BackendChange, BackendPatch } from '../backends/registry.js';
import { Pools, type PoolStats } from './pool.js';
import { Session, type SessionHost } from './session.js';
import { takeOverAccept, type Conn, type TcpConn } from './tcp.js';
import { Router, type Route } from './router.js';
import { loadUserlist, type UserSecret } from './userlist.js';
import { chooseLoadBalanceNode } from './balance.js';
import { poolNodesResult, poolVersionResult, watchdogNodesResult, type WatchdogNode } from './show.js';
import * as codec from '../protocol/codec.js';
import type { BackendLogin } from './backend-conn.js';
import * as splice from './splice.js';

export interface ProxyOptions {
  config: Config;
  registry: BackendRegistry;
  logger: Logger;
  onBackendError?: (backendId: number, err: Error) => void;
  /** The watchdog peers for SHOW WATCHDOG_NODES (the admin part fills them from the watchdog). */
  watchdogNodes?: () => WatchdogNode[];
  /** Internal: set in a node:cluster worker (its index, 0-based). */
  workerIndex?: number;
}

export interface ProxyStats {
  /** `native`: sessions whose bytes native forwarding moves now (splice.ts). */
  clients: { active: number; idle: number; total: number; native: number };
  pools: PoolStats[];
  /** Statements routed as reads, per backend id (pgpool's select_cnt). */
  selectCounts: number[];
  workers: number;
}

const WORKER_BITS = 6; // up to 64 workers (proxy.workers max)
const KEY_BITS = 32 - WORKER_BITS;

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
    lagBytes: w.lagBytes as number | null,
    lagMs: w.lagMs as number | null,
    replicationState: w.replicationState as string,
    syncState: w.syncState as string,
  };
}

type IpcMsg =
  | { type: 'init'; config: Config; index: number; registry: { id: number; state: WirePatch }[] }
  | { type: 'registry'; id: number; patch: WirePatch; reason: string }
  | { type: 'cancel'; worker: number; pid: number; secret: number }
  | { type: 'closeIdle'; ids: number[] }
  | { type: 'listening'; host: string; port: number }
  | { type: 'stats'; stats: ProxyStats }
  /** To a worker: what the other workers last reported (for SHOW POOL_NODES and max_clients). */
  | { type: 'others'; selectCounts: number[]; clients: number }
  | { type: 'backendError'; id: number; message: string }
  | { type: 'ready' }
  | { type: 'close' }
  | { type: 'closed' };

export class Proxy implements SessionHost {
  readonly cfg: Config;
  readonly registry: BackendRegistry;
  readonly log: Logger;
  readonly pools: Pools;
  readonly users: ReadonlyMap<string, UserSecret> | undefined;
  readonly tlsContext: tls.SecureContext | undefined;
  private readonly router: Router;
  /** ClientKeys proved by SCRAM clients, per user (in this process): backend logins for users
   * whose users-file entry is a SCRAM secret, as pgbouncer does. */
  private readonly scramKeys = new Map<string, Buffer>();
  private server: net.Server | undefined;
  private readonly sessions = new Set<Session>();
  private readonly byKey = new Map<number, Session>();
  private readonly selectCounts: number[];
  /** Sessions settled on one backend are forwarded by native code (splice.ts) when true. */
  readonly nativeForwarding: boolean;
  /** This proxy's select_cnt counters in native forwarding, or -1. */
  readonly selectCounterBase: number;
  private nextSessionId = 1;
  private readonly workerIndex: number;
  private readonly workers: Worker[] = [];
  private readonly workerStats = new Map<number, ProxyStats>();
  /** Worker side: the other workers' select counts and clients, as of their last report. */
  private others: { selectCounts: number[]; clients: number } = { selectCounts: [], clients: 0 };
  private closing = false;
  /** Sweeps sessions stuck in startup once a second (one timer, not one per connection). */
  private janitor: NodeJS.Timeout | undefined;
  private readonly onChange = (c: BackendChange): void => this.registryChanged(c);

  constructor(private readonly opts: ProxyOptions) {
    this.cfg = opts.config;
    this.registry = opts.registry;
    this.workerIndex = opts.workerIndex ?? 0;
    this.log = opts.logger.child({ component: 'proxy', ...(opts.workerIndex !== undefined ? { worker: opts.workerIndex } : {}) });
    this.router = new Router(this.cfg.proxy.write_functions);
    this.selectCounts = this.cfg.backends.map(() => 0);
    this.nativeForwarding = this.cfg.proxy.native_forwarding && this.loadNativeForwarding();
    this.selectCounterBase = this.nativeForwarding ? splice.counters(this.cfg.backends.length) : -1;
    this.users = this.cfg.auth.users_file ? loadUserlist(this.cfg.auth.users_file) : undefined;
    const t = this.cfg.proxy.tls;
    this.tlsContext = t
      ? tls.createSecureContext({ cert: readFileSync(t.cert_file), key: readFileSync(t.key_file), ...(t.ca_file ? { ca: readFileSync(t.ca_file) } : {}) })
      : undefined;
    this.pools = new Pools(this.cfg.proxy, this.cfg.backends.length, (id, user, database, options) => this.loginFor(id, user, database, options), this.log, (id, err) =>
      this.backendError(id, err),
    );
    this.registry.on('change', this.onChange);
  }

  private loadNativeForwarding(): boolean {
    try {
      if (splice.available()) return true;
      this.log.warn('native forwarding is not built (npm run build:native): every session is forwarded by JavaScript');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'native forwarding does not load here: every session is forwarded by JavaScript');
    }
    return false;
  }

  /** pgpool's select_cnt for a backend in this process: reads routed by sessions plus those forwarded natively. */
  private ownSelectCount(id: number): number {
    return (this.selectCounts[id] ?? 0) + (this.selectCounterBase >= 0 ? splice.selects(this.selectCounterBase + id) : 0);
  }

  /** select_cnt of the whole proxy: in a worker, with the other workers' last reports (≤ 1 s old). */
  private selectCount(id: number): number {
    return this.ownSelectCount(id) + (this.others.selectCounts[id] ?? 0);
  }

  private get multiProcess(): boolean {
    return this.cfg.proxy.workers > 1 && this.opts.workerIndex === undefined;
  }

  private loginFor(backendId: number, user: string, database: string, options: string): BackendLogin {
    const b = this.registry.get(backendId);
    const secret = this.users?.get(user);
    const login: BackendLogin = { backendId, host: b.host, port: b.port, user, database, options, connectTimeoutMs: this.cfg.proxy.pool.acquire_timeout_ms };
    if (secret?.password !== undefined && secret.password !== '') login.password = secret.password;
    if (secret?.md5) login.md5 = secret.md5;
    const clientKey = this.scramKeys.get(user);
    if (secret?.scram && clientKey) login.scram = { secret: secret.scram, clientKey };
    return login;
  }

  rememberScramKey(user: string, clientKey: Buffer): void {
    // Only users without a password need it; the key is as sensitive as the password.
    if (this.users?.get(user)?.password === undefined) this.scramKeys.set(user, clientKey);
  }

  // ---- listening -------------------------------------------------------------------------------

  async listen(): Promise<{ host: string; port: number }> {
    if (this.multiProcess) return this.listenWorkers();
    const server = net.createServer({ noDelay: true }, (sock) => this.accept(sock));
    this.server = server;
    server.on('error', (err) => this.log.error({ err: err.message }, 'proxy listener error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.cfg.proxy.host, port: this.cfg.proxy.port, backlog: 1024 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.serveLean(server);
    this.janitor = setInterval(() => {
      const now = Date.now();
      for (const s of this.sessions) s.expireStartup(now);
    }, 1000);
    this.janitor.unref();
    const a = server.address() as net.AddressInfo;
    this.log.info({ host: a.address, port: a.port, tls: this.tlsContext !== undefined, loadBalance: this.cfg.proxy.load_balance }, 'proxy listening');
    return { host: a.address, port: a.port };
  }

  /**
   * Without TLS, clients are served on lean TCP connections (tcp.ts) that read into the
   * session's buffer; with TLS (which needs a net.Socket to wrap), or where this Node lacks
   * the handle API, on the net.Socket the server makes.
   */
  private serveLean(server: net.Server): void {
    if (this.tlsContext !== undefined) return;
    const ok = takeOverAccept(
      server,
      (c) => this.accept(c, true),
      (err) => this.log.warn({ err: err.message }, 'accepting a client connection failed'),
    );
    if (!ok) this.log.debug('lean TCP connections unavailable on this Node; clients use net.Socket');
  }

  private accept(sock: Conn, lean = false): void {
    if (this.closing) {
      sock.destroy();
      return;
    }
    sock.on('error', () => {}); // handled per session; never crash the process on a client reset
    const s = new Session(this, sock, this.nextSessionId++, lean);
    this.sessions.add(s);
    if (lean) (sock as TcpConn).start({ buffer: s.nextReadBuffer, read: s.onClientRead });
  }

  // ---- SessionHost ---------------------------------------------------------------------------

  route(sql: string, cacheable?: boolean): Route {
    return this.router.route(sql, cacheable);
  }

  chooseStandby(primaryId: number): number | undefined {
    const p = this.registry.get(primaryId);
    const candidates = [{ id: p.id, weight: p.weight }, ...this.registry.readableStandbys(this.cfg.proxy.max_lag_bytes).map((b) => ({ id: b.id, weight: b.weight }))];
    const id = chooseLoadBalanceNode(candidates, Math.random);
    return id === undefined || id === primaryId ? undefined : id;
  }

  registerSession(s: Session): number {
    for (;;) {
      const secret = ((this.workerIndex << KEY_BITS) | randomInt(1, 2 ** KEY_BITS)) | 0;
      if (!this.byKey.has(secret)) {
        this.byKey.set(secret, s);
        return secret;
      }
    }
  }

  unregisterSession(s: Session): void {
    this.sessions.delete(s);
    if (this.byKey.get(s.secret) === s) this.byKey.delete(s.secret);
  }

  cancel(pid: number, secret: number): void {
    const worker = (secret >>> KEY_BITS) & ((1 << WORKER_BITS) - 1);
    if (this.opts.workerIndex !== undefined && worker !== this.workerIndex) {
      process.send?.({ type: 'cancel', worker, pid, secret } satisfies IpcMsg);
      return;
    }
    this.cancelLocal(pid, secret);
  }

  private cancelLocal(pid: number, secret: number): void {
    const s = this.byKey.get(secret | 0);
    if (!s || s.primaryPid !== pid) {
      this.log.info({ pid }, 'cancel request matches no session; ignored');
      return;
    }
    s.cancelRunning();
  }

  countSelect(backendId: number): void {
    this.selectCounts[backendId]!++;
  }

  localQuery(sql: string, s: Session): Buffer | undefined {
    const q = sql.replace(/;\s*$/, '').trim().replace(/\s+/g, ' ').toLowerCase();
    if (q === 'show pool_nodes') {
      const r = poolNodesResult(this.registry, { selectCount: (id: number) => this.selectCount(id), loadBalanceNode: s.loadBalanceNode });
      return codec.textResult(r.columns, r.rows, `SELECT ${r.rows.length}`);
    }
    if (q === 'show watchdog_nodes') {
      const r = watchdogNodesResult(this.watchdogNodes());
      return codec.textResult(r.columns, r.rows, `SELECT ${r.rows.length}`);
    }
    if (q === 'show pool_version') {
      const r = poolVersionResult();
      return codec.textResult(r.columns, r.rows, `SELECT ${r.rows.length}`);
    }
    return undefined;
  }

  /** Without a provider (a proxy worker process) this peer is described from its config alone. */
  private watchdogNodes(): WatchdogNode[] {
    if (this.opts.watchdogNodes) return this.opts.watchdogNodes();
    const name = this.cfg.watchdog.name ?? '';
    const peers = this.cfg.watchdog.peers;
    return (peers.length ? peers : [{ name, host: this.cfg.proxy.host, port: null }]).map((p, i) => ({
      node_id: String(i),
      node_name: p.name,
      hostname: p.host,
      pgpool_port: p.name === name ? String(this.cfg.proxy.port) : '',
      watchdog_port: p.port === null ? '' : String(p.port),
      priority: '0',
      status_name: peers.length ? 'UNKNOWN' : 'STANDALONE',
      membership: 'MEMBER',
      is_coordinator: peers.length ? 'false' : 'true',
      delegate_ip: this.cfg.watchdog.vip?.address ?? '',
      vip_holder: 'false',
      last_seen: '',
      is_local: p.name === name ? 'true' : 'false',
    }));
  }

  tooManyClients(): boolean {
    // Workers count the others' clients as of their last report (≤ 1 s old).
    return this.sessions.size + this.others.clients > this.cfg.proxy.max_clients;
  }

  backendError(backendId: number, err: Error): void {
    if (this.opts.workerIndex !== undefined) {
      process.send?.({ type: 'backendError', id: backendId, message: err.message } satisfies IpcMsg);
      return;
    }
    this.opts.onBackendError?.(backendId, err);
  }

  // ---- registry --------------------------------------------------------------------------------

  private registryChanged(c: BackendChange): void {
    if (this.multiProcess) {
      for (const w of this.workers) if (w.isConnected()) w.send({ type: 'registry', id: c.id, patch: toWire(c.after), reason: c.reason } satisfies IpcMsg);
      return;
    }
    const leftService = c.before.status === 'up' && c.after.status !== 'up';
    const lostPrimary = c.before.role === 'primary' && c.after.role !== 'primary';
    if (!leftService && !lostPrimary) return;
    this.log.info({ backend: c.id, status: c.after.status, role: c.after.role, reason: c.reason }, 'backend left service: ending its sessions and closing its pooled connections');
    this.pools.closeBackend(c.id);
    for (const s of [...this.sessions]) {
      if (!s.usesBackend(c.id)) continue;
      // A standby that became primary keeps its sessions only if it was not their primary.
      if (!leftService && s.primary?.conn.backendId !== c.id) continue;
      s.terminateForFailover(c.id);
    }
  }

  /**
   * Closes the idle pooled connections to these backends (the failover engine's "close idle"
   * request); connections in use stay with their sessions. Workers each close their own.
   */
  closeIdle(backendIds: number[]): void {
    if (this.multiProcess) {
      for (const w of this.workers) if (w.isConnected()) w.send({ type: 'closeIdle', ids: backendIds } satisfies IpcMsg);
    }
    for (const id of backendIds) {
      if (!Number.isInteger(id) || id < 0 || id >= this.cfg.backends.length) {
        this.log.warn({ backend: id }, 'close idle requested for an unknown backend id; ignored');
        continue;
      }
      const n = this.pools.closeIdle(id);
      if (n > 0 || !this.multiProcess) this.log.info({ backend: id, closed: n, reason: 'close idle requested' }, 'closed idle pooled connections');
    }
  }

  // ---- stats -----------------------------------------------------------------------------------

  stats(): ProxyStats {
    if (this.multiProcess) {
      const all = [...this.workerStats.values()];
      const sum: ProxyStats = {
        clients: { active: 0, idle: 0, total: 0, native: 0 },
        pools: this.cfg.backends.map((_, backendId) => ({ backendId, total: 0, inUse: 0, idle: 0, waiting: 0 })),
        selectCounts: this.cfg.backends.map(() => 0),
        workers: this.workers.length,
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
    let active = 0;
    let native = 0;
    for (const s of this.sessions) {
      if (s.active) active++;
      if (s.native) native++;
    }
    return {
      clients: { active, idle: this.sessions.size - active, total: this.sessions.size, native },
      pools: this.pools.stats(),
      selectCounts: this.selectCounts.map((_, id) => this.ownSelectCount(id)),
      workers: 1,
    };
  }

  // ---- workers ---------------------------------------------------------------------------------

  private async listenWorkers(): Promise<{ host: string; port: number }> {
    // Compiled (an installed package), the worker is plain JavaScript; from the sources it runs through tsx.
    const compiled = import.meta.url.endsWith('.js');
    cluster.setupPrimary({ exec: fileURLToPath(new URL(compiled ? './worker-main.js' : './worker-main.ts', import.meta.url)), execArgv: compiled ? [] : ['--import', 'tsx'] });
    const n = this.cfg.proxy.workers;
    const registry = this.registry.list().map((b) => ({ id: b.id, state: toWire(b) }));
    const addresses: Promise<{ host: string; port: number }>[] = [];
    for (let i = 0; i < n; i++) {
      const w = cluster.fork({ PGWATCHDOG_PROXY_WORKER: String(i) });
      this.workers.push(w);
      const init: IpcMsg = { type: 'init', config: this.cfg, index: i, registry };
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
    }
  }

  /** Worker side: handles a message from the main process. */
  handleIpc(m: IpcMsg): void {
    if (m.type === 'registry') this.registry.update(m.id, fromWire(m.patch), m.reason);
    else if (m.type === 'cancel') this.cancelLocal(m.pid, m.secret);
    else if (m.type === 'closeIdle') this.closeIdle(m.ids);
    else if (m.type === 'others') this.others = { selectCounts: m.selectCounts, clients: m.clients };
  }

  // ---- shutdown --------------------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.janitor);
    this.registry.off('change', this.onChange);
    if (this.multiProcess) {
      await Promise.all(
        this.workers.map(
          (w) =>
            new Promise<void>((resolve) => {
              if (w.isDead()) return resolve();
              const t = setTimeout(() => {
                w.kill('SIGKILL');
              }, 5000);
              w.once('exit', () => {
                clearTimeout(t);
                resolve();
              });
              if (w.isConnected()) w.send({ type: 'close' } satisfies IpcMsg);
              else w.kill('SIGTERM');
            }),
        ),
      );
      this.pools.close();
      return;
    }
    const closed = this.server ? new Promise<void>((r) => this.server!.close(() => r())) : Promise.resolve();
    for (const s of [...this.sessions]) s.fatal('57P01', 'terminating connection due to administrator command (pgwatchdog is shutting down)');
    this.pools.close();
    await closed;
    this.log.info('proxy closed');
  }
}

export type { IpcMsg, WirePatch };
export { fromWire };
