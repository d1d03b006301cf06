// Backend connection pools: authenticated connections kept per (user, database, options,
// backend), reset with the configured reset query (DISCARD ALL) when a session gives them
// back, closed after idle_timeout_ms, at most max_per_backend per backend. An acquire that
// finds the backend full waits up to acquire_timeout_ms, then fails with a clear error.
import type { Logger } from '../log.js';
import type { ProxyConfig } from '../config/index.js';
import * as codec from '../protocol/codec.js';
import type { ScanSink } from '../protocol/backend-scanner.js';
import { BackendConn, BackendError, poolKey, type BackendLogin } from './backend-conn.js';
import { BE, TX } from '../protocol/messages.js';
import { TcpConn } from './tcp.js';
import * as splice from './splice.js';

export type LoginFor = (backendId: number, user: string, database: string, options: string) => BackendLogin;

interface Waiter {
  key: string;
  login: BackendLogin;
  resolve: (c: BackendConn) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

class BackendPool {
  /** Every connection counted against the limit: idle, in use, connecting, resetting. */
  total = 0;
  inUse = 0;
  readonly idle = new Map<string, BackendConn[]>();
  idleCount = 0;
  readonly waiters: Waiter[] = [];
  /** Bumped when the backend fails over: connections from an older generation are dropped. */
  generation = 0;
}

export class PoolExhaustedError extends Error {
  readonly sqlstate = '53300';
}

export interface PoolStats {
  backendId: number;
  total: number;
  inUse: number;
  idle: number;
  waiting: number;
}

export class Pools {
  private readonly pools: BackendPool[];
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;
  private readonly gen = new WeakMap<BackendConn, number>();
  private readonly countedOut = new WeakSet<BackendConn>();

  constructor(
    private readonly cfg: ProxyConfig,
    nBackends: number,
    private readonly loginFor: LoginFor,
    private readonly log: Logger,
    private readonly onConnectError: (backendId: number, err: Error) => void,
  ) {
    this.pools = Array.from({ length: nBackends }, () => new BackendPool());
    this.sweeper = setInterval(() => this.sweepIdle(), Math.min(Math.max(cfg.pool.idle_timeout_ms / 4, 250), 10_000));
    this.sweeper.unref();
  }

  stats(): PoolStats[] {
    return this.pools.map((p, backendId) => ({ backendId, total: p.total, inUse: p.inUse, idle: p.idleCount, waiting: p.waiters.length }));
  }

  /**
   * An idle pooled connection for the key, taken at once, or undefined (no waiting, no
   * connect). Checkout: a connection with input waiting that nobody asked for (PostgreSQL
   * ended it: a FATAL, then close, not yet read) is retired, never handed out.
   */
  take(backendId: number, user: string, database: string, options: string): BackendConn | undefined {
    if (this.closed) return undefined;
    const pool = this.pools[backendId]!;
    const list = pool.idle.get(poolKey(user, database, options));
    while (list && list.length > 0) {
      const c = list.pop()!;
      pool.idleCount--;
      if (c.closed) continue; // already counted out by its close handler
      if (c.socket instanceof TcpConn && splice.inputWaiting(c.socket.descriptor)) {
        this.log.info({ backend: backendId, pid: c.pid }, 'idle pooled connection has unsolicited input at checkout; retiring it');
        this.drop(pool, c);
        continue;
      }
      pool.inUse++;
      c.onClose = undefined;
      return c;
    }
    return undefined;
  }

  async acquire(backendId: number, user: string, database: string, options: string): Promise<BackendConn> {
    if (this.closed) throw new Error('proxy is shutting down');
    const pool = this.pools[backendId]!;
    const key = poolKey(user, database, options);
    const idle = this.take(backendId, user, database, options);
    if (idle) return idle;
    const login = this.loginFor(backendId, user, database, options);
    if (pool.total >= this.cfg.pool.max_per_backend && !this.evictOtherIdle(pool, key)) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          const i = pool.waiters.indexOf(w);
          if (i >= 0) pool.waiters.splice(i, 1);
          reject(
            new PoolExhaustedError(
              `connection pool of backend ${backendId} is exhausted: ${this.cfg.pool.max_per_backend} connections in use (proxy.pool.max_per_backend), none freed within ${this.cfg.pool.acquire_timeout_ms} ms (proxy.pool.acquire_timeout_ms)`,
            ),
          );
        }, this.cfg.pool.acquire_timeout_ms);
        const w: Waiter = { key, login, resolve, reject, timer };
        pool.waiters.push(w);
      });
    }
    return this.open(pool, login);
  }

  private async open(pool: BackendPool, login: BackendLogin): Promise<BackendConn> {
    pool.total++;
    const generation = pool.generation;
    try {
      const c = await BackendConn.connect(login);
      if (generation !== pool.generation) {
        c.destroy();
        throw new BackendError(`backend ${login.backendId} failed over while connecting`, login.backendId);
      }
      this.gen.set(c, generation);
      pool.inUse++;
      this.log.debug({ backend: login.backendId, user: login.user, database: login.database, pid: c.pid }, 'opened backend connection');
      return c;
    } catch (err) {
      pool.total--;
      this.serveWaiters(pool);
      const e = err as BackendError;
      // Login refusals (bad password, no such database) say nothing about the backend's health.
      if (!e.fields) this.onConnectError(login.backendId, e);
      throw err;
    }
  }

  private evictOtherIdle(pool: BackendPool, key: string): boolean {
    for (const [k, list] of pool.idle) {
      if (k === key || list.length === 0) continue;
      const c = list.shift()!;
      pool.idleCount--;
      c.terminate();
      this.countOut(pool, c);
      return true;
    }
    return false;
  }

  /** Gives a connection to the first waiter that can use it, or starts one for a waiter. */
  private serveWaiters(pool: BackendPool): void {
    while (pool.waiters.length > 0 && (pool.total < this.cfg.pool.max_per_backend || this.evictOtherIdle(pool, pool.waiters[0]!.key))) {
      const w = pool.waiters.shift()!;
      clearTimeout(w.timer);
      this.open(pool, w.login).then(w.resolve, w.reject);
    }
  }

  /**
   * A session is done with `c`. Whatever the caller knows, the connection goes back to the
   * pool only as a fresh session would find it: broken or busy connections are closed; one
   * inside a transaction (its last ReadyForQuery said so) is rolled back; one the session may
   * have changed (`dirty`: SET, temporary objects, prepared statements, writes…) is reset
   * with the reset query — or, with none configured, closed, since nothing else would undo
   * what it holds. A session that ran nothing but reads leaves nothing to reset, and its
   * connection is reusable at once. Startup parameters the proxy SET are tracked on the
   * connection (c.applied) and adjusted by the next session, so they need no reset either.
   * The connection is pooled only if every step ends in ReadyForQuery 'I' without error.
   */
  release(c: BackendConn, clean: boolean, dirty = true): void {
    const pool = this.pools[c.backendId]!;
    pool.inUse--;
    if (!clean || c.closed || this.closed || this.gen.get(c) !== pool.generation) {
      this.drop(pool, c);
      return;
    }
    const reset = this.cfg.pool.reset_query;
    if (dirty && !reset) {
      this.log.debug({ backend: c.backendId, pid: c.pid }, 'closing a connection the session may have changed: proxy.pool.reset_query is empty');
      this.drop(pool, c);
      return;
    }
    const steps: Buffer[] = [];
    if (c.txStatus !== TX.Idle) steps.push(codec.query('ROLLBACK'));
    if (reset && (dirty || c.txStatus !== TX.Idle)) {
      steps.push(codec.query(reset));
      c.applied.clear();
    }
    if (steps.length === 0) {
      this.makeIdle(pool, c);
      return;
    }
    let pending = steps.length;
    let failed = false;
    const timer = setTimeout(() => {
      this.log.warn({ backend: c.backendId, pid: c.pid }, 'reset query did not finish within 5 s; closing the connection');
      this.drop(pool, c);
    }, 5000);
    const sink: ScanSink = {
      onHeader: () => false,
      onMessage: (type, buf, s, e) => {
        if (type === BE.ErrorResponse) {
          failed = true;
          this.log.warn({ backend: c.backendId, error: codec.parseErrorFields(buf.subarray(s, e)).M }, 'reset query failed; closing the connection');
        } else if (type === BE.ParameterStatus) {
          c.onParameterStatus(buf, s, e);
        } else if (type === BE.ReadyForQuery) {
          c.txStatus = buf[s]!;
          if (--pending === 0) {
            clearTimeout(timer);
            if (failed || c.txStatus !== TX.Idle) this.drop(pool, c);
            else this.makeIdle(pool, c);
          }
        }
      },
    };
    c.sink = sink;
    c.out = () => {};
    c.retains = NEVER;
    c.onClose = () => {
      clearTimeout(timer);
      this.countOut(pool, c);
      this.serveWaiters(pool);
    };
    if (steps.length === 1) c.write(steps[0]!);
    else c.write(Buffer.concat(steps));
  }

  /** A connection moved in from another process with its session (online restart): in use here. */
  adopt(c: BackendConn): void {
    const pool = this.pools[c.backendId]!;
    pool.total++;
    pool.inUse++;
    this.gen.set(c, pool.generation);
  }

  /**
   * Online restart: up to `max` idle connections, checked out as `take` would (for the
   * successor process's pool). Each is then handed off (handOff) or given back (putBack).
   */
  takeIdle(max: number): BackendConn[] {
    const out: BackendConn[] = [];
    for (const [backendId, pool] of this.pools.entries()) {
      for (const list of [...pool.idle.values()]) {
        while (out.length < max && list.length > 0) {
          const c = list[list.length - 1]!;
          const got = this.take(backendId, c.login.user, c.login.database, c.login.options);
          if (got) out.push(got);
        }
      }
    }
    return out;
  }

  /** A connection from takeIdle the successor did not take: idle here again. */
  putBack(c: BackendConn): void {
    const pool = this.pools[c.backendId]!;
    pool.inUse--;
    if (c.closed) this.countOut(pool, c);
    else this.makeIdle(pool, c);
  }

  /** An idle connection moved in from the process this one takes over from. */
  adoptIdle(c: BackendConn): void {
    const pool = this.pools[c.backendId]!;
    pool.total++;
    this.gen.set(c, pool.generation);
    this.makeIdle(pool, c);
  }

  /**
   * A connection moved out to another process with its session: off the books, and this
   * process's descriptor closed without a word to the server (the other process holds it).
   */
  handOff(c: BackendConn): void {
    const pool = this.pools[c.backendId]!;
    pool.inUse--;
    c.destroy();
    this.countOut(pool, c);
    this.serveWaiters(pool);
  }

  private drop(pool: BackendPool, c: BackendConn): void {
    c.terminate();
    this.countOut(pool, c);
    this.serveWaiters(pool);
  }

  /** Takes a connection off its backend's count, exactly once whatever path closes it. */
  private countOut(pool: BackendPool, c: BackendConn): void {
    if (this.countedOut.has(c)) return;
    this.countedOut.add(c);
    pool.total--;
  }

  private makeIdle(pool: BackendPool, c: BackendConn): void {
    // A waiter for the same key takes it at once.
    const wi = pool.waiters.findIndex((w) => w.key === c.key);
    if (wi >= 0) {
      const w = pool.waiters.splice(wi, 1)[0]!;
      clearTimeout(w.timer);
      pool.inUse++;
      c.onClose = undefined;
      w.resolve(c);
      return;
    }
    if (pool.waiters.length > 0) {
      // Someone waits for another user/database: trade this connection for theirs.
      this.drop(pool, c);
      return;
    }
    c.idleSince = Date.now();
    // An idle connection is owed nothing: any message but a ParameterStatus is PostgreSQL
    // ending it (FATAL before it closes) or something else no session may inherit, and
    // retires it at once, before the close arrives.
    c.sink = {
      onHeader: () => false,
      onMessage: (type, buf, s, e) => {
        if (type === BE.ParameterStatus) {
          c.onParameterStatus(buf, s, e);
          return;
        }
        const why = type === BE.ErrorResponse ? codec.parseErrorFields(buf.subarray(s, e)).M : `message type ${String.fromCharCode(type)}`;
        this.log.info({ backend: c.backendId, pid: c.pid, reason: why }, 'idle pooled connection got an unsolicited message; retiring it');
        this.forgetIdle(pool, c);
        c.terminate();
      },
    };
    c.out = () => {};
    c.retains = NEVER;
    c.onClose = () => this.forgetIdle(pool, c);
    let list = pool.idle.get(c.key);
    if (!list) pool.idle.set(c.key, (list = []));
    list.push(c);
    pool.idleCount++;
  }

  /** An idle connection is gone (closed, or retired): off the idle list and the count. */
  private forgetIdle(pool: BackendPool, c: BackendConn): void {
    this.countOut(pool, c);
    const list = pool.idle.get(c.key);
    const i = list ? list.indexOf(c) : -1;
    if (i >= 0) {
      list!.splice(i, 1);
      pool.idleCount--;
    }
    this.serveWaiters(pool);
  }

  private sweepIdle(): void {
    const timeout = this.cfg.pool.idle_timeout_ms;
    if (timeout === 0) return;
    const cutoff = Date.now() - timeout;
    for (const pool of this.pools) {
      for (const list of pool.idle.values()) {
        for (let i = list.length - 1; i >= 0; i--) {
          const c = list[i]!;
          if (c.idleSince < cutoff) {
            list.splice(i, 1);
            pool.idleCount--;
            c.terminate();
            this.countOut(pool, c);
          }
        }
      }
    }
  }

  /**
   * Closes the backend's idle connections now (pgpool's "close idle" request); connections in
   * use stay with their sessions and are pooled again on release as usual.
   */
  closeIdle(backendId: number): number {
    const pool = this.pools[backendId];
    if (!pool) return 0;
    let n = 0;
    for (const list of pool.idle.values()) {
      for (const c of list) {
        c.terminate();
        this.countOut(pool, c);
        n++;
      }
      list.length = 0;
    }
    pool.idleCount = 0;
    this.serveWaiters(pool);
    return n;
  }

  /** The backend left service: close its idle connections; in-use ones are dropped on release. */
  closeBackend(backendId: number): void {
    const pool = this.pools[backendId];
    if (!pool) return;
    pool.generation++;
    for (const list of pool.idle.values()) {
      for (const c of list) {
        c.terminate();
        this.countOut(pool, c);
      }
      list.length = 0;
    }
    pool.idleCount = 0;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (let id = 0; id < this.pools.length; id++) {
      const pool = this.pools[id]!;
      for (const w of pool.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error('proxy is shutting down'));
      }
      this.closeBackend(id);
    }
  }
}

const NEVER = (): boolean => false;
