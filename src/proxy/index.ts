// The proxy in one process: accepts PostgreSQL clients, authenticates them, gives each a
// session over pooled backend connections, and follows the backend registry (sessions on a
// backend that leaves service end with 57P01; new sessions route by the current primary).
//
// With proxy.workers > 1, createProxy returns a WorkerSupervisor instead (workers.ts): it
// forks node:cluster workers that share the listening socket, each running a Proxy that
// reaches its siblings through a WorkerLink (the worker index is in the cancel key).
import net from 'node:net';
import tls from 'node:tls';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from '../log.js';
import type { Config } from '../config/index.js';
import type { BackendRegistry, BackendChange, RoutingGates } from '../backends/registry.js';
import { Pools } from './pool.js';
import { Session, type SessionHost } from './session.js';
import type { BackendPick, StartupHost } from './startup.js';
import { activeHold } from './gates.js';
import { fromDescriptor, takeOverAccept, TcpConn, type Conn } from './tcp.js';
import { Router, type Route } from './router.js';
import { callsThatMatter } from './classify.js';
import { loadUserlist, type UserSecret } from './userlist.js';
import { chooseLoadBalanceNode } from './balance.js';
import { showPoolResult } from './show.js';
import type { WatchdogNode } from './show.js';
import * as codec from '../protocol/codec.js';
import { BackendConn, type BackendLogin } from './backend-conn.js';
import * as splice from './splice.js';
import type { ProxyOptions, ProxyService, ProxyStats, WorkerLink } from './service.js';
import { WORKER_BITS, WorkerSupervisor } from './workers.js';
import { decideRead, type CausalDecision, type CausalNeed } from './causal.js';
import { listenOn, listenerFd, type ListenOn } from '../takeover/listen.js';
import type { IdleConnBatch, SessionBatch } from '../takeover/old-side.js';
import type { BackendState, IdleConnState, SessionState } from '../takeover/messages.js';
import { close as closeDescriptor } from '../takeover/fdpass.js';

export type { ProxyOptions, ProxyService, ProxyStats } from './service.js';

/** The proxy this configuration asks for: one process, or a supervisor of proxy.workers workers. */
export function createProxy(opts: ProxyOptions): ProxyService {
  return opts.config.proxy.workers > 1 ? new WorkerSupervisor(opts) : new Proxy(opts);
}

export interface ProxyInWorkerOptions extends ProxyOptions {
  /** Set when this Proxy is one of several workers (workers.ts). */
  worker?: WorkerLink;
}

/** Bits of a cancel key that are random; the top WORKER_BITS name the worker. */
const KEY_BITS = 32 - WORKER_BITS;
/**
 * Below the worker bits, PEER_BITS name the peer (its index in watchdog.peers) so that a
 * cancel reaching another peer is forwarded to this one (cluster/cancel-relay.ts); the rest
 * is random.
 */
export const PEER_BITS = 4;
const RANDOM_BITS = KEY_BITS - PEER_BITS;

/** How long statements bound for a backend whose server is going away wait (backendDying): its
 * other connections learn of it within tens of ms; the failover engine's own hold follows. */
const DYING_HOLD_MS = 2000;

function withDying(g: RoutingGates, dying: ReadonlyMap<number, number>): RoutingGates {
  const held = [...g.held];
  for (const [id, untilMs] of dying) held.push({ id, reason: 'its server is going away (a backend said so)', untilMs });
  return { held, refuseWrites: g.refuseWrites };
}

export class Proxy implements SessionHost, StartupHost, ProxyService {
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
  /** Online restart: sessions exported at a safe point, waiting to be sent to the successor. */
  private readonly movable: { s: Session; state: SessionState; fds: number[] }[] = [];
  private readonly moving = new WeakSet<Session>();
  private readonly byKey = new Map<number, Session>();
  private readonly selectCounts: number[];
  /** Sessions settled on one backend are forwarded by native code (splice.ts) when true. */
  readonly nativeForwarding: boolean;
  /** This proxy's select_cnt counters in native forwarding, or -1. */
  readonly selectCounterBase: number;
  private nextSessionId = 1;
  private readonly workerIndex: number;
  /** This peer's index in watchdog.peers (0 without a watchdog): it is in every cancel key. */
  private readonly peerIndex: number;
  private readonly worker: WorkerLink | undefined;
  private closing = false;
  /** Sweeps sessions stuck in startup once a second (one timer, not one per connection). */
  private janitor: NodeJS.Timeout | undefined;
  private readonly onChange = (c: BackendChange): void => this.registryChanged(c);
  private readonly onGates = (g: RoutingGates, reason: string): void => this.gatesChanged(g, reason);
  /** Backends whose server is going away (backendDying) → until when their statements wait. */
  private readonly dying = new Map<number, number>();
  private gatesWithDying: RoutingGates | undefined;

  constructor(private readonly opts: ProxyInWorkerOptions) {
    this.cfg = opts.config;
    this.registry = opts.registry;
    this.worker = opts.worker;
    this.workerIndex = opts.worker?.index ?? 0;
    this.peerIndex = Math.max(0, this.cfg.watchdog.peers.findIndex((p) => p.name === this.cfg.watchdog.name)) & ((1 << PEER_BITS) - 1);
    // (The peer tags its parts' loggers; a worker adds its index.)
    this.log = opts.worker ? opts.logger.child({ worker: opts.worker.index }) : opts.logger;
    this.router = new Router(this.cfg.proxy.write_functions);
    this.selectCounts = this.cfg.backends.map(() => 0);
    this.nativeForwarding = this.cfg.proxy.native_forwarding && this.loadNativeForwarding();
    this.selectCounterBase = this.nativeForwarding ? splice.counters(this.cfg.backends.length) : -1;
    if (this.nativeForwarding) splice.watchCalls(callsThatMatter(this.cfg.proxy.write_functions));
    this.users = this.cfg.auth.users_file ? loadUserlist(this.cfg.auth.users_file) : undefined;
    const t = this.cfg.proxy.tls;
    this.tlsContext = t
      ? tls.createSecureContext({ cert: readFileSync(t.cert_file), key: readFileSync(t.key_file), ...(t.ca_file ? { ca: readFileSync(t.ca_file) } : {}) })
      : undefined;
    this.pools = new Pools(this.cfg.proxy, this.cfg.backends.length, (id, user, database, options) => this.loginFor(id, user, database, options), this.log, (id, err) =>
      this.backendError(id, err),
    );
    this.registry.on('change', this.onChange);
    this.registry.on('gates', this.onGates);
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
    return this.ownSelectCount(id) + (this.worker?.others.selectCounts[id] ?? 0);
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

  /** `from`: a listening socket handed over by the process this one takes over from (takeover/). */
  async listen(from?: ListenOn): Promise<{ host: string; port: number }> {
    const server = net.createServer({ noDelay: true }, (sock) => this.accept(sock));
    this.server = server;
    server.on('error', (err) => this.log.error({ err: err.message }, 'proxy listener error'));
    await listenOn(server, from ?? { host: this.cfg.proxy.host, port: this.cfg.proxy.port, backlog: 1024 });
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

  route(sql: string, cacheable?: boolean, standardConformingStrings?: boolean): Route {
    return this.router.route(sql, cacheable, standardConformingStrings);
  }

  get startup(): StartupHost {
    return this;
  }

  get authMethod(): StartupHost['authMethod'] {
    return this.cfg.auth.method;
  }

  /** The primary and, with load balancing, a node chosen by weight among the readable standbys that no gate holds. */
  pickBackends(): BackendPick | undefined {
    const p = this.registry.primary();
    if (!p) return undefined;
    if (!this.cfg.proxy.load_balance) return { primary: p.id, standby: undefined };
    const g = this.registry.gates();
    const now = Date.now();
    const candidates = [{ id: p.id, weight: p.weight }];
    for (const b of this.registry.readableStandbys(this.cfg.proxy.max_lag_bytes)) if (!activeHold(g, b.id, now)) candidates.push({ id: b.id, weight: b.weight });
    const id = chooseLoadBalanceNode(candidates, Math.random);
    return { primary: p.id, standby: id === undefined || id === p.id ? undefined : id };
  }

  standbyReadable(backendId: number): boolean {
    return this.registry.isReadableStandby(backendId, this.cfg.proxy.max_lag_bytes);
  }

  backendName(backendId: number): string {
    return this.registry.get(backendId).name;
  }

  gates(): RoutingGates {
    if (this.dying.size === 0) return this.registry.gates();
    return (this.gatesWithDying ??= withDying(this.registry.gates(), this.dying));
  }

  /**
   * A backend's FATAL said its server is going away (the postmaster died, the server crashed or
   * shuts down): the other backends of that server will say the same within moments, and a
   * statement sent to one in between gets that FATAL instead of an answer. So statements (and
   * new sessions) bound for it wait here for a moment — a proxy-local routing gate — and the
   * sessions move once their own connection is lost (proxy.failover_sessions).
   */
  backendDying(id: number, reason: string): void {
    if (this.dying.has(id)) return;
    this.dying.set(id, Date.now() + DYING_HOLD_MS);
    this.gatesWithDying = undefined;
    this.log.info({ backend: id, reason, holdMs: DYING_HOLD_MS }, 'backend server is going away: statements bound for it wait');
    setTimeout(() => {
      this.dying.delete(id);
      this.gatesWithDying = undefined;
      this.gatesChanged(this.gates(), `backend ${id}: the hold after its server went away ended`);
    }, DYING_HOLD_MS + 1).unref();
    this.gatesChanged(this.gates(), `backend ${id}: its server is going away`);
  }

  registerSession(s: Session): number {
    for (;;) {
      const secret = ((this.workerIndex << KEY_BITS) | (this.peerIndex << RANDOM_BITS) | randomInt(1, 2 ** RANDOM_BITS)) | 0;
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
    const peer = (secret >>> RANDOM_BITS) & ((1 << PEER_BITS) - 1);
    if (this.opts.cancelToPeer && peer !== this.peerIndex) {
      this.opts.cancelToPeer(peer, pid, secret);
      return;
    }
    const worker = (secret >>> KEY_BITS) & ((1 << WORKER_BITS) - 1);
    if (this.worker && worker !== this.workerIndex) {
      this.worker.relayCancel(worker, pid, secret);
      return;
    }
    this.cancelOwn(pid, secret);
  }

  /** Cancels what this process's session with that key runs (a cancel relayed by a sibling worker, too). */
  cancelOwn(pid: number, secret: number): void {
    const s = this.byKey.get(secret | 0);
    if (!s || s.primaryPid !== pid) {
      this.log.info({ pid }, 'cancel request matches no session; ignored');
      return;
    }
    s.cancelRunning();
  }

  get failoverSessions(): 'keep' | 'end' {
    return this.cfg.proxy.failover_sessions;
  }

  get moveWaitMs(): number {
    return this.cfg.watchdog.interlock_timeout_ms;
  }

  get causalReads(): boolean {
    return this.cfg.proxy.causal_reads;
  }

  causalRead(need: CausalNeed, standbyId: number): CausalDecision {
    return decideRead(need, this.registry.primary(), this.registry.get(standbyId));
  }

  causalWait(backendId: number): void {
    this.opts.onCausalWait?.(backendId);
  }

  countSelect(backendId: number): void {
    this.selectCounts[backendId]!++;
  }

  showPool(name: string, s: Session): Buffer | undefined {
    const r = showPoolResult(name, {
      registry: this.registry,
      selectCount: (id: number) => this.selectCount(id),
      loadBalanceNode: s.loadBalanceNode,
      watchdogNodes: () => this.watchdogNodes(),
    });
    return r && codec.textResult(r.columns, r.rows, `SELECT ${r.rows.length}`);
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
    return this.sessions.size + (this.worker?.others.clients ?? 0) > this.cfg.proxy.max_clients;
  }

  backendError(backendId: number, err: Error): void {
    this.opts.onBackendError?.(backendId, err);
  }

  // ---- registry --------------------------------------------------------------------------------

  /** Held statements try again, and natively forwarded sessions the gates now concern come back to JavaScript. */
  private gatesChanged(g: RoutingGates, reason: string): void {
    this.gatesWithDying = undefined;
    // (Whoever set the gates logs them at info; this is the proxy's side.)
    this.log.debug({ held: g.held.map((h) => h.id), refuseWrites: g.refuseWrites, reason, sessions: this.sessions.size }, 'sessions apply the new gates');
    for (const s of [...this.sessions]) s.gatesChanged();
  }

  private registryChanged(c: BackendChange): void {
    const leftService = c.before.status === 'up' && c.after.status !== 'up';
    const lostPrimary = c.before.role === 'primary' && c.after.role !== 'primary';
    if (!leftService && !lostPrimary) return;
    this.log.info({ backend: c.id, status: c.after.status, role: c.after.role, reason: c.reason }, 'backend left service: moving or ending its sessions (proxy.failover_sessions) and closing its pooled connections');
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
    for (const id of backendIds) {
      if (!Number.isInteger(id) || id < 0 || id >= this.cfg.backends.length) {
        this.log.warn({ backend: id }, 'close idle requested for an unknown backend id; ignored');
        continue;
      }
      const n = this.pools.closeIdle(id);
      if (n > 0 || !this.worker) this.log.info({ backend: id, closed: n, reason: 'close idle requested' }, 'closed idle pooled connections');
    }
  }

  // ---- stats -----------------------------------------------------------------------------------

  stats(): ProxyStats {
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

  // ---- online restart (takeover/) ------------------------------------------------------------

  /** The listening socket's descriptor, for the process taking over, or undefined. */
  listenerFd(): number | undefined {
    return listenerFd(this.server);
  }

  /** Client sessions in this process (the takeover's loop asks often: no stats walk). */
  sessionCount(): number {
    return this.sessions.size;
  }

  /** Stops accepting: the listening socket lives on in the process that took it over (or is closed). */
  async stopAccepting(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((r) => server.close(() => r()));
  }

  /**
   * Up to `max` sessions at a safe point, taken off this proxy's books for a successor
   * process, or undefined when sessions cannot move from here (they drain instead).
   */
  takeSessions(max: number): SessionBatch | undefined {
    if (this.worker) return undefined;
    // Sessions are asked to stop at their next safe point until a batch is ready (an idle one
    // exports at once; asking all a thousand first delayed the first batch by their exports);
    // those that reached one since the last call go in this batch.
    for (const s of this.sessions) {
      if (this.movable.length >= max) break;
      if (this.moving.has(s)) continue;
      s.moveAtSafePoint((e) => {
        this.moving.add(s);
        this.movable.push({ s, ...e });
      });
    }
    const taken = new Map<number, Session>();
    const states: SessionState[] = [];
    const fds: number[] = [];
    for (const { s, state: st, fds: own } of this.movable.splice(0, max)) {
      // Descriptor indexes are per message: shift this session's to where its fds go.
      const base = fds.length;
      fds.push(...own);
      states.push({ ...st, clientFd: base + st.clientFd, primary: { ...st.primary, fd: base + st.primary.fd }, standby: st.standby && { ...st.standby, fd: base + st.standby.fd } });
      taken.set(s.id, s);
    }
    return {
      sessions: states,
      fds,
      commit: (ids) => {
        for (const id of ids) taken.get(id)?.handedOff();
      },
      rollback: (ids) => {
        for (const id of ids) {
          const s = taken.get(id);
          if (!s) continue;
          this.moving.delete(s);
          s.resumeHere();
        }
      },
    };
  }

  /**
   * Up to `max` idle pooled connections, checked out for a successor process with their
   * descriptors (it pools them as they are: no reconnect, no new login).
   */
  takeIdleConns(max: number): IdleConnBatch {
    const taken: BackendConn[] = [];
    const conns: IdleConnState[] = [];
    const fds: number[] = [];
    for (const c of this.pools.takeIdle(max)) {
      const fd = c.socket instanceof TcpConn ? c.socket.lend() : -1;
      if (fd < 0) {
        // Not on a lean connection, or a write in flight: it cannot move; it is closed.
        this.pools.release(c, false);
        continue;
      }
      const { user, database, options } = c.login;
      conns.push({ fd: fds.push(fd) - 1, backendId: c.backendId, pid: c.pid, secret: c.secret, params: Object.fromEntries(c.params), applied: Object.fromEntries(c.applied), dirty: false, stale: [], user, database, options });
      taken.push(c);
    }
    return {
      conns,
      fds,
      commit: (ids) => {
        for (const i of ids) if (taken[i]) this.pools.handOff(taken[i]);
      },
      rollback: (ids) => {
        for (const i of ids) {
          const c = taken[i];
          if (!c) continue;
          (c.socket as TcpConn).giveBack();
          this.pools.putBack(c);
        }
      },
    };
  }

  /** A backend connection moved in from the previous process, logged in as `user` on `database`. */
  private adoptConn(b: BackendState, fd: number, user: string, database: string, options: string): BackendConn {
    return BackendConn.adopt(fromDescriptor(fd), this.loginFor(b.backendId, user, database, options), b);
  }

  /** Idle pooled connections moved in from the process this one takes over from (ids: their indexes). */
  adoptIdleConns(conns: IdleConnState[], fds: number[]): { ids: number[]; failed: { id: number; reason: string }[] } {
    const ids: number[] = [];
    const failed: { id: number; reason: string }[] = [];
    const used = new Set<number>();
    conns.forEach((st, i) => {
      used.add(st.fd);
      const fd = fds[st.fd];
      try {
        if (fd === undefined) throw new Error('its descriptor is missing');
        this.pools.adoptIdle(this.adoptConn(st, fd, st.user, st.database, st.options));
        ids.push(i);
      } catch (err) {
        failed.push({ id: i, reason: (err as Error).message });
        if (fd !== undefined) closeDescriptor(fd);
      }
    });
    fds.forEach((fd, i) => {
      if (!used.has(i)) closeDescriptor(fd);
    });
    if (ids.length) this.log.info({ adopted: ids.length, failed: failed.length }, 'idle pooled connections moved in from the previous process');
    return { ids, failed };
  }

  /** Sessions moved in from the process this one takes over from, with their descriptors. */
  adoptSessions(states: SessionState[], fds: number[]): { ids: number[]; failed: { id: number; reason: string }[] } {
    const ids: number[] = [];
    const failed: { id: number; reason: string }[] = [];
    const used = new Set<number>();
    for (const st of states) {
      const own = [st.clientFd, st.primary.fd, ...(st.standby ? [st.standby.fd] : [])];
      for (const i of own) used.add(i);
      try {
        if (this.byKey.has(st.secret)) throw new Error('its cancel key is taken here');
        if (own.some((i) => fds[i] === undefined)) throw new Error('a descriptor is missing');
        const conn = (b: BackendState): BackendConn => {
          const c = this.adoptConn(b, fds[b.fd]!, st.user, st.database, st.startupParams.options ?? '');
          this.pools.adopt(c);
          return c;
        };
        const sock = fromDescriptor(fds[st.clientFd]!);
        sock.on('error', () => {});
        const pc = conn(st.primary);
        const sc = st.standby ? conn(st.standby) : undefined;
        const s = Session.adopt(this, sock, this.nextSessionId++, st, pc, sc);
        this.sessions.add(s);
        this.byKey.set(st.secret, s);
        if (sock instanceof TcpConn) sock.start({ buffer: s.nextReadBuffer, read: s.onClientRead });
        ids.push(st.id);
      } catch (err) {
        failed.push({ id: st.id, reason: (err as Error).message });
        for (const i of own) if (fds[i] !== undefined) closeDescriptor(fds[i]!);
      }
    }
    // Descriptors no session claimed are closed, not leaked.
    fds.forEach((fd, i) => {
      if (!used.has(i)) closeDescriptor(fd);
    });
    if (ids.length) this.log.debug({ adopted: ids.length, failed: failed.length }, 'sessions moved in from the previous process');
    return { ids, failed };
  }

  /** Ends every session with a 57P01 that says why; returns how many. */
  endSessions(message: string): number {
    const n = this.sessions.size;
    for (const s of [...this.sessions]) {
      let reason = 'exported for the successor but not sent';
      if (this.moving.has(s)) this.log.warn({ session: s.id }, 'ending a session exported for the successor but not sent');
      else {
        const why = s.exportState();
        reason = typeof why === 'string' ? why : 'at a safe point only now';
        this.log.info({ session: s.id, user: s.user, reason }, 'ending a session that could not move');
      }
      // The client reads why this session in particular could not move (a TLS session never can).
      s.fatal('57P01', `${message} (${reason})`);
    }
    return n;
  }

  // ---- shutdown --------------------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.janitor);
    this.registry.off('change', this.onChange);
    this.registry.off('gates', this.onGates);
    const closed = this.server ? new Promise<void>((r) => this.server!.close(() => r())) : Promise.resolve();
    for (const s of [...this.sessions]) s.fatal('57P01', 'terminating connection due to administrator command (pgwatchdog is shutting down)');
    this.pools.close();
    await closed;
    this.log.info('proxy closed');
  }
}

