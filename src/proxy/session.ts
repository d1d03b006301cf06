// One client session (session pooling, pgpool semantics). The session holds a connection to
// the primary and, with load balancing, one to the standby chosen at session start ("legs").
// Client messages are decoded only as far as routing needs (Query text, Parse text, statement
// and portal names); backend output is forwarded by header scanning only.
//
// Ordering invariant: the client must see responses in the order it sent requests. A batch
// whose response goes to the client is written to a leg only when no *other* leg still owes
// the client a response; otherwise the session stops reading the client until it does.
// Responses a leg owes nobody (the standby's copy of a SET sent to both) are swallowed.
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from '../log.js';
import type { Config } from '../config/index.js';
import type { BackendRegistry } from '../backends/registry.js';
import * as codec from '../protocol/codec.js';
import { FrameReader, ProtocolViolation } from '../protocol/frame-reader.js';
import type { ScanSink } from '../protocol/backend-scanner.js';
import { BackendConn, BackendError, encodeParameterStatus } from './backend-conn.js';
import { BE, FE, TARGET, TX } from '../protocol/messages.js';
import { TcpConn, systemErrorName, writeAll, type Conn } from './tcp.js';
import * as splice from './splice.js';
import type { Pools } from './pool.js';
import { AuthFailed, authenticateClient } from './client-auth.js';
import type { UserSecret } from './userlist.js';
import type { Route } from './router.js';
import { NO_NEED, committed, decideRead, describeNeed, parseReadAfterLsn, readAfterLsn, writeSent, type CausalNeed, type CausalReason } from './causal.js';
import { monotonicMs } from '../backends/mono-clock.js';

export interface SessionHost {
  readonly cfg: Config;
  readonly registry: BackendRegistry;
  readonly log: Logger;
  readonly pools: Pools;
  readonly users: ReadonlyMap<string, UserSecret> | undefined;
  readonly tlsContext: tls.SecureContext | undefined;
  route(sql: string, cacheable?: boolean): Route;
  /** The load-balance node for a new session: a standby id, or undefined for "primary only". */
  chooseStandby(primaryId: number): number | undefined;
  registerSession(s: Session): number;
  unregisterSession(s: Session): void;
  cancel(pid: number, secret: number): void;
  countSelect(backendId: number): void;
  /** The answer to `SHOW <name>` (a pool command, see Route.showPool), or undefined if the proxy does not know it. */
  showPool(name: string, s: Session): Buffer | undefined;
  tooManyClients(): boolean;
  backendError(backendId: number, err: Error): void;
  /** Sessions on the primary alone may be forwarded natively (splice.ts). */
  readonly nativeForwarding: boolean;
  /** The proxy's select_cnt counters in native forwarding (index = base + backend id), or -1. */
  readonly selectCounterBase: number;
  /** A client proved this ClientKey for `user` (SCRAM): backend logins may use it. */
  rememberScramKey(user: string, clientKey: Buffer): void;
  /** Causal reads: a session waits on a fresh WAL sample of this backend (asks the replication monitor for one soon). */
  causalWait(backendId: number): void;
}

interface Expect {
  readonly forward: boolean;
  /** An error in this response ends the session (startup SETs). */
  readonly fatalOnError?: boolean;
}
// Shared, immutable: queued once per request, so no allocation on the hot path.
const FORWARD: Expect = Object.freeze({ forward: true });
const SWALLOW: Expect = Object.freeze({ forward: false });
const STARTUP_SET: Expect = Object.freeze({ forward: false, fatalOnError: true });

interface Statement {
  /** A private copy of the client's Parse message, to re-Parse on another leg. */
  parse: Buffer;
  legs: Set<Leg>;
  write: boolean;
}

type Role = 'primary' | 'standby';

const MAX_EARLY_BYTES = 1024 * 1024;
/** Startup and authentication must be done within this (PostgreSQL's authentication_timeout is 60 s). */
const STARTUP_TIMEOUT_MS = 60_000;
/** Read buffer of a client connection that reads into the session's buffers (tcp.ts), once reads fill a small one. */
const CLIENT_READ_BUFFER = 32 * 1024;
/**
 * The first read buffers are small slices of Node's shared Buffer pool (under 4 KiB): a
 * connection-per-transaction client then costs no buffer of its own, whose external memory
 * would drive V8 into major GCs (measured: pgbench -C, +90 µs of proxy CPU per connection).
 */
const SMALL_READ_BUFFER = 2048;
/**
 * Small read buffers of sessions that ended, for new sessions: a connection-per-transaction
 * client then allocates none. A buffer is put here only when nothing can still read from it
 * or into it (see Session.close).
 */
const spareReadBuffers: Buffer[] = [];
const MAX_SPARE_READ_BUFFERS = 256;
/** The answer to SSLRequest/GSSENCRequest when the proxy does not encrypt. */
const NO = Buffer.from('N');
const NO_PARSE = Buffer.alloc(0);
const AUTH_OK = new codec.Writer(9).begin('R').int32(0).end().done();
/**
 * A session goes to native forwarding after this many answered requests: a client that
 * connects per transaction (pgbench -C) ends before that, and lending and taking back its
 * descriptors would cost more than forwarding one transaction in JavaScript.
 */
const SPLICE_AFTER = 2;
const YES = Buffer.from('S');
const ROLLBACK = codec.query('ROLLBACK');

/** Startup-packet keys that are not server settings. */
function isProtocolParam(k: string): boolean {
  return k === 'user' || k === 'database' || k === 'options' || k === 'replication' || k.startsWith('_pq_.');
}


class Leg implements ScanSink {
  readonly queue: Expect[] = [];
  fwdPending = 0;
  swallowParse = 0;
  swallowClose = 0;
  copyIn = false;
  lastForwarded = false;
  /** Native forwarding left this connection's stream mid-message: it cannot be reused, and
   * nothing more can be framed to the client. */
  broken = false;
  /** Something ran here that may leave session state behind (SET, named statements, writes…). */
  dirty = false;
  /** The backend ended the session with this FATAL (or PANIC) error; `forwarded`: the client has it. */
  ended: { fields: Record<string, string>; forwarded: boolean } | undefined;
  out: Buffer[] = [];
  /** Statement names closed by the client but still existing here. */
  readonly stale = new Set<string>();

  constructor(
    readonly session: Session,
    readonly conn: BackendConn,
    readonly role: Role,
  ) {}

  expect(e: Expect): void {
    this.queue.push(e);
    if (e.forward) this.fwdPending++;
  }

  onHeader(type: number): boolean {
    let fwd: boolean;
    if (type === BE.ParseComplete && this.swallowParse > 0) {
      this.swallowParse--;
      fwd = false;
    } else if (type === BE.CloseComplete && this.swallowClose > 0) {
      this.swallowClose--;
      fwd = false;
    } else {
      const head = this.queue[0];
      if (head) fwd = head.forward;
      else fwd = this.role === 'primary' && type !== BE.NotificationResponse && !this.session.otherForwarding(this);
    }
    this.lastForwarded = fwd;
    return fwd;
  }

  onMessage(type: number, buf: Buffer, s: number, e: number): void {
    const sess = this.session;
    switch (type) {
      case BE.ReadyForQuery: {
        const status = buf[s]!;
        this.conn.txStatus = status;
        this.copyIn = false;
        const head = this.queue.shift();
        if (head?.forward) this.fwdPending--;
        sess.onReady(this, status, head);
        break;
      }
      case BE.ParameterStatus:
        this.conn.onParameterStatus(buf, s, e);
        break;
      case BE.ErrorResponse: {
        // After an error the server skips everything up to Sync, including re-Parses and
        // Closes the proxy injected: none of their replies will come.
        this.swallowParse = 0;
        this.swallowClose = 0;
        const fields = codec.parseErrorFields(buf.subarray(s, e));
        const severity = fields.V ?? fields.S;
        if (severity === 'FATAL' || severity === 'PANIC') this.ended = { fields, forwarded: this.lastForwarded };
        sess.onBackendErrorResponse(this, fields, this.queue[0]);
        break;
      }
      case BE.CopyInResponse:
      case BE.CopyBothResponse:
        this.copyIn = true;
        break;
      case BE.NotificationResponse:
        if (!this.lastForwarded && this.role === 'primary') {
          // A notification while the client waits on nobody (or on the standby): rebuild it.
          const msg = Buffer.allocUnsafe(e - s + 5);
          msg[0] = BE.NotificationResponse;
          msg.writeInt32BE(e - s + 4, 1);
          buf.copy(msg, 5, s, e);
          sess.asyncToClient(this, msg);
        }
        break;
      default:
        break;
    }
  }
}

interface BatchEntry {
  msg: Buffer;
  /** Statement name (Parse, Bind, Describe/Close of a statement), else ''. */
  name: string;
  /** Portal name (Bind), else ''. */
  portal: string;
  /** Parse: the statement's route. */
  route: Route | undefined;
}

interface Batch {
  msgs: BatchEntry[];
  needPrimary: boolean;
  preferStandby: boolean;
  /** Leg chosen once part of the batch was written (at Flush); the rest follows it. */
  pinned: Leg | undefined;
  reads: number;
  /** Parses of statements every leg must run (SET, BEGIN, SAVEPOINT …), and of any other kind. */
  both: number;
  /** The batch parses or runs a statement that may write (causal reads wait for its commit). */
  writes: boolean;
  others: number;
  /** A Parse of a statement that ends the transaction (COMMIT, PREPARE TRANSACTION …). */
  endsTxn: boolean;
}

export class Session {
  private readonly reader = new FrameReader(true);
  private state: 'startup' | 'auth' | 'connecting' | 'ready' | 'closed' = 'startup';
  private sock: Conn;
  private waiter: ((m: Buffer | null, err?: Error) => void) | undefined;
  user = '';
  database = '';
  private startupParams = new Map<string, string>();
  primary: Leg | undefined;
  standby: Leg | undefined;
  secret = 0;
  private pending: Buffer | null = null;
  private blocked = false;
  private pumping = false;
  private readonly stmts = new Map<string, Statement>();
  private readonly unnamed: Statement = { parse: NO_PARSE, legs: new Set(), write: false };
  private readonly portals = new Map<string, Leg>();
  private batch: Batch = { msgs: [], needPrimary: false, preferStandby: false, pinned: undefined, reads: 0, both: 0, others: 0, writes: false, endsTxn: false };
  private inTxn = false;
  private txnWrite = false;
  /** The standby failed a statement it shared with the primary: reads go to the primary until it is idle again. */
  private standbyDiverged = false;
  /** The session made state the standby cannot see (a temp table, serializable by default):
   * its reads stay on the primary for the rest of the session. */
  private primaryOnly = false;
  private lastStatus: number = TX.Idle;
  private heldAsync: Buffer[] = [];
  private tlsUsed = false;
  readonly startedAt = Date.now();
  private logger: Logger | undefined;
  /** Set while native forwarding holds the session's descriptors (splice.ts). */
  private lease: splice.Lease | undefined;
  /** Requests answered to the client (ReadyForQuery forwarded). */
  private answered = 0;
  /** Causal reads (causal.ts): what the session's reads must see before they use the standby. */
  private causal: CausalNeed = NO_NEED;
  /** The last causal decision's reason, to log when it changes. */
  private causalReason: CausalReason | undefined;

  /**
   * `fastReads`: the connection reads into nextReadBuffer() and calls onClientRead() (a
   * TcpConn, see tcp.ts); else the socket's 'data' events feed the session.
   */
  constructor(
    private readonly host: SessionHost,
    socket: Conn,
    readonly id: number,
    private readonly fastReads = false,
  ) {
    this.sock = socket;
    this.attachClient(socket);
    void this.startup().catch((err: Error) => this.startupFailed(err));
  }

  /** The session's logger, made on first use: most sessions never log, and pino children cost. */
  private get log(): Logger {
    return (this.logger ??= this.host.log.child({ session: this.id, client: `${this.sock.remoteAddress}:${this.sock.remotePort}` }));
  }

  /** Called by the proxy's janitor: a client still not through startup after the limit is ended. */
  expireStartup(now: number): void {
    if ((this.state === 'startup' || this.state === 'auth' || this.state === 'connecting') && now - this.startedAt >= STARTUP_TIMEOUT_MS) {
      this.fatal('08006', 'timeout expired during client startup and authentication');
    }
  }

  get primaryPid(): number {
    return this.primary?.conn.pid ?? 0;
  }

  get loadBalanceNode(): number | undefined {
    return (this.standby ?? this.primary)?.conn.backendId;
  }

  get active(): boolean {
    // (A natively forwarded session counts as active: only the forwarding thread knows.)
    return this.state === 'ready' && (this.lease !== undefined || (this.primary?.queue.length ?? 0) > 0 || (this.standby?.queue.length ?? 0) > 0);
  }

  /** True while native forwarding moves this session's bytes. */
  get native(): boolean {
    return this.lease !== undefined;
  }

  usesBackend(id: number): boolean {
    return this.primary?.conn.backendId === id || this.standby?.conn.backendId === id;
  }

  // ---- client socket -------------------------------------------------------------------------

  private attachClient(s: Conn): void {
    if (!this.fastReads || this.tlsUsed) s.on('data', this.onClientData);
    s.on('error', (err) => {
      this.log.debug({ err: err.message }, 'client socket error');
      this.close();
    });
    s.on('close', () => this.close());
    s.on('drain', () => {
      this.primary?.conn.socket.resume();
      this.standby?.conn.socket.resume();
    });
  }

  private rbuf: Buffer | undefined;
  private lastReadFull = false;

  /**
   * The buffer the next client read lands in. It is reused only while nothing holds a view
   * of the last read (messages the reader still buffers, a blocked message, an unfinished
   * extended batch, bytes queued on a backend socket); otherwise a fresh one. (Startup
   * messages reach the awaiting code as copies, see wakeWaiter.) Buffers start small; a read
   * that fills one moves the session to CLIENT_READ_BUFFER.
   */
  readonly nextReadBuffer = (): Buffer => {
    const b = this.rbuf;
    const grow = this.lastReadFull && (b === undefined || b.length < CLIENT_READ_BUFFER);
    if (b !== undefined && !grow && this.state !== 'closed' && !this.inputRetained()) return b;
    if (grow || (b !== undefined && b.length >= CLIENT_READ_BUFFER)) return (this.rbuf = Buffer.allocUnsafe(CLIENT_READ_BUFFER));
    // A closed session's connection reads no more: never hand it a spare.
    return (this.rbuf = (this.state !== 'closed' && spareReadBuffers.pop()) || Buffer.allocUnsafe(SMALL_READ_BUFFER));
  };

  private inputRetained(): boolean {
    if (this.reader.buffered > 0 || this.pending !== null || this.batch.msgs.length > 0) return true;
    const p = this.primary;
    if (p && (p.out.length > 0 || p.conn.socket.writableLength > 0)) return true;
    const sb = this.standby;
    return sb !== undefined && (sb.out.length > 0 || sb.conn.socket.writableLength > 0);
  }

  /** `n` bytes from the client landed in `buf` (the fast read path). */
  readonly onClientRead = (n: number, buf: Buffer): void => {
    this.lastReadFull = n === buf.length;
    this.onClientData(buf.subarray(0, n));
  };

  private readonly onClientData = (chunk: Buffer): void => {
    this.reader.push(chunk);
    if (this.state === 'ready') this.pump();
    else if (this.reader.buffered > MAX_EARLY_BYTES && this.state !== 'startup' && this.state !== 'auth') {
      // Pipelined queries before the session is ready are fine; megabytes of them are not.
      this.fatal('08P01', `client sent more than ${MAX_EARLY_BYTES} bytes before the session was ready`);
    } else this.wakeWaiter();
  };

  private wakeWaiter(): void {
    const w = this.waiter;
    if (!w) return;
    let m: Buffer | null;
    try {
      m = this.reader.next();
    } catch (err) {
      this.waiter = undefined;
      w(null, err as Error);
      return;
    }
    if (m) {
      this.waiter = undefined;
      // A copy: the awaiting code runs after the read buffer may have been reused.
      w(this.fastReads ? Buffer.from(m) : m);
    }
  }

  private nextMessage(): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.state === 'closed') return reject(new Error('client closed'));
      this.waiter = (m, err) => (m ? resolve(m) : reject(err ?? new Error('client closed the connection')));
      this.wakeWaiter();
    });
  }

  private readonly clientRetains = (): boolean => this.sock.writableLength > 0;

  private toClient = (b: Buffer): void => {
    if (!this.sock.write(b)) {
      // Backpressure: stop reading backends until the client drains.
      this.primary?.conn.socket.pause();
      this.standby?.conn.socket.pause();
    }
  };

  // ---- startup -------------------------------------------------------------------------------

  private async startup(): Promise<void> {
    let sslDone = false;
    let gssDone = false;
    let pkt: codec.StartupPacket;
    for (;;) {
      const raw = await this.nextMessage();
      pkt = codec.parseStartupPacket(raw);
      if (pkt.kind === 'ssl') {
        if (sslDone) throw new ProtocolViolation('SSL request received twice');
        sslDone = true;
        if (this.host.tlsContext) {
          if (this.reader.buffered > 0) throw new ProtocolViolation('received unencrypted data after SSL request');
          await this.upgradeTls(this.host.tlsContext);
        } else {
          this.sock.write(NO);
        }
        continue;
      }
      if (pkt.kind === 'gssenc') {
        if (gssDone) throw new ProtocolViolation('GSSENC request received twice');
        gssDone = true;
        this.sock.write(NO);
        continue;
      }
      break;
    }
    if (pkt.kind === 'cancel') {
      this.host.cancel(pkt.pid, pkt.secret);
      this.close();
      return;
    }
    if (pkt.kind !== 'startup') return;
    if (pkt.major !== 3) {
      throw new ProtocolViolation(`unsupported frontend protocol ${pkt.major}.${pkt.minor}: server supports 3.0 to 3.0`, '0A000');
    }
    const unrecognized = [...pkt.params.keys()].filter((k) => k.startsWith('_pq_.'));
    if (pkt.minor > 0 || unrecognized.length > 0) this.sock.write(codec.negotiateProtocolVersion(0, unrecognized));
    const user = pkt.params.get('user');
    if (!user) throw new ProtocolViolation('no PostgreSQL user name specified in startup packet', '28000');
    if (pkt.params.has('replication') && pkt.params.get('replication') !== 'false' && pkt.params.get('replication') !== '0') {
      throw new ProtocolViolation('replication connections are not supported through pgwatchdog; connect to the primary directly', '0A000');
    }
    this.user = user;
    this.database = pkt.params.get('database') || user;
    this.startupParams = pkt.params;
    if (this.host.tooManyClients()) throw new ProtocolViolation('sorry, too many clients already', '53300');
    this.reader.startupPhase = false;
    this.state = 'auth';
    if (this.host.cfg.auth.method !== 'trust') {
      const clientKey = await authenticateClient(this.host.cfg.auth.method, user, this.host.users, {
        send: (b) => this.sock.write(b),
        recvPassword: async () => {
          const m = await this.nextMessage();
          if (m[0] !== FE.Password) throw new ProtocolViolation(`expected password response, got message type ${m[0]}`);
          return m.subarray(5);
        },
      });
      if (clientKey) this.host.rememberScramKey(user, clientKey);
    }
    this.state = 'connecting';
    // Usually both connections wait idle in the pool: take them without a round of promises.
    if (!this.connectPooled()) await this.connectBackends();
  }

  private connectPooled(): boolean {
    const { registry, pools, cfg } = this.host;
    const p = registry.primary();
    if (!p) return false;
    const standbyId = cfg.proxy.load_balance ? this.host.chooseStandby(p.id) : undefined;
    const options = this.startupParams.get('options') ?? '';
    const pc = pools.take(p.id, this.user, this.database, options);
    if (!pc) return false;
    const sc = standbyId === undefined ? undefined : pools.take(standbyId, this.user, this.database, options);
    if (standbyId !== undefined && !sc) {
      pools.release(pc, true, false);
      return false;
    }
    this.primary = this.adopt(pc, 'primary');
    if (sc) this.standby = this.adopt(sc, 'standby');
    this.ready();
    return true;
  }

  private upgradeTls(ctx: tls.SecureContext): Promise<void> {
    // With TLS configured the proxy serves clients on net.Sockets (see Proxy.serveLean).
    if (!(this.sock instanceof net.Socket)) throw new Error('TLS requested on a connection that is not a net.Socket');
    const raw = this.sock;
    raw.removeListener('data', this.onClientData);
    raw.removeAllListeners('close');
    raw.removeAllListeners('error');
    raw.removeAllListeners('drain');
    raw.write(YES);
    const t = new tls.TLSSocket(raw, { isServer: true, secureContext: ctx });
    this.sock = t;
    this.tlsUsed = true;
    this.attachClient(t);
    raw.on('error', () => this.close());
    return new Promise((resolve, reject) => {
      t.once('secure', () => resolve());
      t.once('error', reject);
      t.once('close', () => reject(new Error('client closed during TLS handshake')));
    });
  }

  private startupFailed(err: Error): void {
    if (this.state === 'closed') return;
    if (err instanceof AuthFailed) {
      this.log.info({ user: err.user, reason: err.reason }, 'client authentication failed');
      this.fatal('28P01', err.message);
    } else if (err instanceof ProtocolViolation) {
      this.log.debug({ reason: err.message, answered: !err.unanswered }, 'bad startup from client');
      if (err.unanswered) this.close();
      else this.fatal(err.sqlstate, err.message);
    } else if (err instanceof BackendError) {
      this.log.warn({ backend: err.backendId, user: this.user, database: this.database, reason: err.message }, 'could not get a backend connection for a client');
      this.fatal(err.fields?.C ?? '08006', err.fields?.M ?? err.message);
    } else if ((err as { sqlstate?: string }).sqlstate) {
      this.log.warn({ reason: err.message }, 'session start failed');
      this.fatal((err as { sqlstate?: string }).sqlstate!, err.message);
    } else {
      this.log.debug({ reason: err.message }, 'session start failed');
      this.fatal('08006', err.message);
    }
  }

  private async connectBackends(): Promise<void> {
    const { registry, pools, cfg } = this.host;
    const p = registry.primary();
    if (!p) throw Object.assign(new Error('pgwatchdog: no primary backend is up; try again after failover'), { sqlstate: '57P03' });
    const standbyId = cfg.proxy.load_balance ? this.host.chooseStandby(p.id) : undefined;
    const options = this.startupParams.get('options') ?? '';
    const [pc, sc] = await Promise.allSettled([
      pools.acquire(p.id, this.user, this.database, options),
      standbyId === undefined ? Promise.resolve(undefined) : pools.acquire(standbyId, this.user, this.database, options),
    ]);
    if (this.state === 'closed' || pc.status === 'rejected') {
      if (pc.status === 'fulfilled') pools.release(pc.value, true, false);
      if (sc.status === 'fulfilled' && sc.value) pools.release(sc.value, true, false);
      if (pc.status === 'rejected') throw pc.reason;
      return;
    }
    this.primary = this.adopt(pc.value, 'primary');
    if (sc.status === 'fulfilled') {
      if (sc.value) this.standby = this.adopt(sc.value, 'standby');
    } else {
      // The standby failing is no reason to refuse the session: it runs on the primary alone.
      this.log.warn({ backend: standbyId, reason: (sc.reason as Error).message }, 'load-balance standby unavailable; session uses the primary only');
    }
    this.ready();
  }

  /** Both legs are in hand: apply startup parameters and tell the client it may begin. */
  private ready(): void {
    this.secret = this.host.registerSession(this);
    // Startup parameters the client asked for (application_name, client_encoding, …) are
    // applied on each leg with SET, pipelined ahead of the client's first query.
    for (const leg of [this.primary, this.standby]) if (leg) this.applyStartupParams(leg);
    // ParameterStatus as the client will see it: the primary connection's values, with what
    // the client asked for (its SETs are on the way). Usually they agree already and the
    // connection's encoded block is reused as is.
    const conn = this.primary!.conn;
    let overlay: Map<string, string> | undefined;
    for (const [k, v] of this.startupParams) {
      if (isProtocolParam(k)) continue;
      const canon = conn.canonicalParam(k);
      if (canon !== undefined && conn.params.get(canon) !== v) (overlay ??= new Map(conn.params)).set(canon, v);
    }
    // AuthenticationOk, the ParameterStatus block (shared, not copied), BackendKeyData and
    // ReadyForQuery: one write.
    const tail = new codec.Writer(19).begin('K').int32(this.primary!.conn.pid).int32(this.secret).end().begin('Z').int8(TX.Idle).end().done();
    this.state = 'ready';
    // A session on the primary alone may go to native forwarding once settled (trySplice).
    if (this.standby === undefined && this.host.nativeForwarding && this.sock instanceof TcpConn && conn.socket instanceof TcpConn) conn.afterRead = this.trySplice;
    writeAll(this.sock, [AUTH_OK, overlay ? encodeParameterStatus(overlay) : conn.statusBlock(), tail]);
    if (this.host.log.isLevelEnabled('debug')) this.log.debug({ user: this.user, database: this.database, primary: this.primary!.conn.backendId, standby: this.standby?.conn.backendId, tls: this.tlsUsed }, 'session started');
    this.flushAll();
    this.pump();
  }

  private applyStartupParams(leg: Leg): void {
    const c = leg.conn;
    const sets: string[] = [];
    const wanted = new Map<string, string>();
    for (const [k, v] of this.startupParams) {
      if (isProtocolParam(k)) continue;
      wanted.set(k, v);
      const canon = c.applied.has(k) ? undefined : c.canonicalParam(k);
      const have = c.applied.get(k) ?? (canon === undefined ? undefined : c.params.get(canon));
      if (have === v) continue;
      sets.push(`SET "${k.replace(/"/g, '""')}" TO '${v.replace(/'/g, "''")}'`);
      c.applied.set(k, v);
    }
    // What an earlier session on this connection asked for and this one did not, goes back.
    for (const k of [...c.applied.keys()]) {
      if (wanted.has(k)) continue;
      sets.push(`RESET "${k.replace(/"/g, '""')}"`);
      c.applied.delete(k);
    }
    if (sets.length === 0) return;
    leg.out.push(codec.query(sets.join('; ')));
    leg.expect(STARTUP_SET);
  }

  private adopt(conn: BackendConn, role: Role): Leg {
    const leg = new Leg(this, conn, role);
    conn.sink = leg;
    conn.out = this.toClient;
    conn.onClose = (err) => this.legLost(leg, err);
    conn.retains = this.clientRetains;
    if (!this.sock.writableNeedDrain) conn.socket.resume();
    return leg;
  }

  // ---- native forwarding ---------------------------------------------------------------------

  /**
   * After each backend read: a session on the primary alone, with nothing queued, buffered
   * or owed on either side, lends its descriptors to native forwarding (splice.ts).
   */
  private readonly trySplice = (): void => {
    const P = this.primary;
    if (this.answered < SPLICE_AFTER || this.state !== 'ready' || this.lease !== undefined || P === undefined) return;
    if (P.queue.length > 0 || P.out.length > 0 || P.copyIn || P.swallowParse > 0 || P.swallowClose > 0 || P.broken || !P.conn.scanner.atBoundary) return;
    const b = this.batch;
    if (this.reader.buffered > 0 || this.pending !== null || b.msgs.length > 0 || b.pinned !== undefined || this.blocked || this.backendFull || this.heldAsync.length > 0) return;
    const cs = this.sock;
    const bs = P.conn.socket;
    if (!(cs instanceof TcpConn) || !(bs instanceof TcpConn) || cs.isPaused()) return;
    const cfd = cs.lend();
    if (cfd < 0) return;
    const bfd = bs.lend();
    if (bfd < 0) {
      cs.giveBack();
      return;
    }
    try {
      this.lease = splice.attach(this, cfd, bfd, this.host.selectCounterBase < 0 ? -1 : this.host.selectCounterBase + P.conn.backendId, P.conn.txStatus);
    } catch (err) {
      cs.giveBack();
      bs.giveBack();
      P.conn.afterRead = undefined;
      this.log.warn({ err: (err as Error).message }, 'native forwarding refused the session; it stays on the JavaScript path');
      return;
    }
    // What the client runs natively is not tracked: the connection is reset when it goes back.
    P.dirty = true;
  };

  /** Native forwarding gave the session back (see splice.GiveBack). */
  onGiveBack(g: splice.GiveBack): void {
    this.lease = undefined;
    const P = this.primary;
    if (this.state === 'closed' || P === undefined) return;
    const R = splice.REASON;
    const ended = g.reason === R.clientGone || g.reason === R.backendGone || g.reason === R.backendProtocol;
    // When the session ends here the backend's unforwarded bytes are dropped: its stream is
    // then cut mid-way.
    this.resumeFromNative(P, g.outstanding, g.boundary && !(ended && g.fromBackend.length > 0), g.status);
    if (g.reason === R.clientGone) {
      if (g.errno) this.log.debug({ reason: systemErrorName(-g.errno) }, 'client connection failed');
      this.close();
      return;
    }
    if (g.reason === R.backendGone || g.reason === R.backendProtocol) {
      const c = P.conn;
      const why = g.reason === R.backendProtocol ? 'sent an invalid message header' : g.errno ? systemErrorName(-g.errno) : 'closed the connection';
      const err = new BackendError(`backend ${c.backendId} (${c.login.host}:${c.login.port}): ${why}`, c.backendId);
      if (g.fatalForwarded) P.ended = { fields: {}, forwarded: true };
      this.legLost(P, g.errno || g.reason === R.backendProtocol ? err : undefined);
      return;
    }
    if (!g.boundary) {
      // Native forwarding stops only at boundaries for these reasons: a bug if not.
      this.log.error({ reason: g.reason }, 'native forwarding gave a session back mid-message; closing it');
      this.fatal('XX000', 'pgwatchdog internal error: forwarding lost its place in the stream');
      return;
    }
    // The client's unforwarded bytes are queued first, so that nothing the backend's leftover
    // output triggers (a new splice) runs ahead of them.
    if (g.fromClient.length > 0) this.reader.push(g.fromClient);
    if (g.fromBackend.length > 0) P.conn.onRead(g.fromBackend.length, g.fromBackend);
    this.pump();
  }

  /** JavaScript takes the session back from native forwarding, for good or ill (close, fatal). */
  private unsplice(): void {
    const lease = this.lease;
    if (lease === undefined) return;
    this.lease = undefined;
    const k = splice.kill(lease);
    // null: the session was already on its way back, in a state not known here (broken: the
    // pool will not reuse the connection).
    const P = this.primary!;
    this.resumeFromNative(P, k?.outstanding ?? 0, k?.boundary ?? false, k?.status ?? P.conn.txStatus);
  }

  /** The session is JavaScript's again; `status` is what PostgreSQL last said (ReadyForQuery). */
  private resumeFromNative(P: Leg, outstanding: number, boundary: boolean, status: number): void {
    P.conn.txStatus = this.lastStatus = status;
    for (let i = 0; i < outstanding; i++) P.expect(FORWARD);
    if (!boundary) P.broken = true;
    (this.sock as TcpConn).giveBack();
    (P.conn.socket as TcpConn).giveBack();
  }

  // ---- client → backends ---------------------------------------------------------------------

  private pump(): void {
    if (this.pumping || this.state !== 'ready') return;
    this.pumping = true;
    try {
      // A message may end the session (Terminate, a fatal error): nothing after it is handled.
      while (!this.blocked && this.state === 'ready') {
        const msg = this.pending ?? this.reader.next();
        if (!msg) break;
        this.pending = null;
        if (!this.handle(msg)) {
          this.pending = msg;
          this.blocked = true;
        }
      }
    } catch (err) {
      this.pumping = false;
      if (err instanceof ProtocolViolation) {
        this.log.info({ reason: err.message }, 'protocol violation by client; closing');
        this.fatal(err.sqlstate, err.message);
      } else {
        // A bug must cost one session, never the process.
        this.log.error({ err: (err as Error).stack }, 'internal error handling a client message; closing the session');
        this.fatal('XX000', `pgwatchdog internal error: ${(err as Error).message}`);
      }
      return;
    }
    this.pumping = false;
    this.flushAll();
    if (this.state !== 'ready') return;
    if (this.blocked) this.sock.pause();
    else if (!this.backendFull && this.sock.isPaused()) this.sock.resume();
  }

  private backendFull = false;

  private flushAll(): void {
    if (this.primary) this.flushLeg(this.primary);
    if (this.standby) this.flushLeg(this.standby);
  }

  private flushLeg(leg: Leg): void {
    const out = leg.out;
    if (out.length === 0) return;
    const sock = leg.conn.socket;
    let ok: boolean;
    if (out.length === 1) {
      ok = sock.write(out[0]!);
    } else {
      // Messages cut from one client chunk are usually contiguous: send them as one view.
      const chunks: Buffer[] = [];
      let cur = out[0]!;
      for (let i = 1; i < out.length; i++) {
        const m = out[i]!;
        if (m.buffer === cur.buffer && cur.byteOffset + cur.length === m.byteOffset) {
          cur = Buffer.from(cur.buffer, cur.byteOffset, cur.length + m.length);
        } else {
          chunks.push(cur);
          cur = m;
        }
      }
      chunks.push(cur);
      ok = writeAll(sock, chunks);
    }
    leg.out = [];
    if (!ok && !this.backendFull) {
      this.backendFull = true;
      this.sock.pause();
      sock.once('drain', () => {
        this.backendFull = false;
        if (!this.blocked && this.state === 'ready') this.sock.resume();
      });
    }
  }

  /** True when a leg other than `leg` still owes the client a response. */
  otherForwarding(leg: Leg): boolean {
    const other = leg === this.primary ? this.standby : this.primary;
    return other !== undefined && other.fwdPending > 0;
  }

  private canForwardOn(leg: Leg): boolean {
    return !this.otherForwarding(leg);
  }

  private standbyReadable(): boolean {
    const sb = this.standby;
    if (!sb || this.txnWrite || this.standbyDiverged || this.primaryOnly) return false;
    const st = this.host.registry.get(sb.conn.backendId);
    if (st.status !== 'up' || (st.lagBytes !== null && st.lagBytes > this.host.cfg.proxy.max_lag_bytes)) return false;
    return this.causal === NO_NEED || this.causalAllows(st);
  }

  // ---- causal reads (causal.ts) ----------------------------------------------------------------

  /** A statement that may write went to the primary: later reads wait for its commit. */
  private causalWriteSent(): void {
    if (this.standby !== undefined && this.host.cfg.proxy.causal_reads) this.causal = writeSent(this.causal);
  }

  /** May this read use the standby, as far as the session's committed writes go? */
  private causalAllows(standby: Parameters<typeof decideRead>[2]): boolean {
    if (!this.host.cfg.proxy.causal_reads) {
      this.causal = NO_NEED;
      return true;
    }
    const d = decideRead(this.causal, this.host.registry.primary(), standby);
    if (d.reason !== this.causalReason) {
      this.causalReason = d.reason;
      if (this.host.log.isLevelEnabled('debug')) this.log.debug({ target: d.target, reason: d.reason, waitsFor: describeNeed(this.causal) }, 'causal read');
    }
    this.causal = d.need;
    if (d.target === 'standby') return true;
    // A fresh sample of the backend the decision waits on (none while the write still runs).
    if (d.reason === 'no primary WAL sample since the commit') this.host.causalWait(this.primary!.conn.backendId);
    else if (d.reason !== 'write not committed yet') this.host.causalWait(this.standby!.conn.backendId);
    return false;
  }

  /** `SET pgwatchdog.…` as a simple query: the proxy's own setting, answered here. */
  private answerProxySetting(p: { name: string; value: string | null }): boolean {
    if (this.primary!.fwdPending > 0 || (this.standby?.fwdPending ?? 0) > 0) return false;
    const err = this.noteProxySetting(p);
    const reply = err ? codec.errorResponse({ severity: 'ERROR', code: err.code, message: err.message }) : codec.commandComplete('SET');
    this.sock.write(Buffer.concat([reply, codec.readyForQuery(this.lastStatus)]));
    return true;
  }

  /**
   * Applies `SET pgwatchdog.read_after_lsn`; returns the error for a bad one. (Through the
   * extended protocol the statement also reaches PostgreSQL, which keeps it as a placeholder
   * setting; there a bad value is only logged.)
   */
  private noteProxySetting(p: { name: string; value: string | null }): { code: string; message: string } | undefined {
    if (p.name !== 'read_after_lsn') return { code: '42704', message: `unrecognized configuration parameter "pgwatchdog.${p.name}" (pgwatchdog knows pgwatchdog.read_after_lsn)` };
    let lsn: bigint;
    try {
      lsn = parseReadAfterLsn(p.value ?? '');
    } catch (e) {
      this.log.info({ value: p.value }, (e as Error).message);
      return { code: '22023', message: (e as Error).message };
    }
    if (this.standby !== undefined && this.host.cfg.proxy.causal_reads) this.causal = readAfterLsn(this.causal, lsn);
    return undefined;
  }

  /** Handles one client message; false = cannot proceed yet (ordering), try again later. */
  private handle(msg: Buffer): boolean {
    const type = msg[0]!;
    switch (type) {
      case FE.Query:
        return this.simpleQuery(msg);
      case FE.Parse:
        return this.extParse(msg);
      case FE.Bind:
        return this.extBind(msg);
      case FE.Describe:
      case FE.Close:
        return this.extDescribeClose(msg);
      case FE.Execute: {
        // A named portal runs where it was bound.
        const portal = codec.readCString(msg, 5);
        if (!portal) throw new ProtocolViolation('invalid Execute message');
        const at = portal[0] === '' ? undefined : this.portals.get(portal[0]);
        if (at === this.primary) this.batch.needPrimary = true;
        else if (at && at === this.standby) this.batch.preferStandby = true;
        this.addToBatch(msg);
        return true;
      }
      case FE.Flush:
        return this.extFlush(msg, false);
      case FE.Sync:
        return this.extFlush(msg, true);
      case FE.CopyData:
      case FE.CopyDone:
      case FE.CopyFail: {
        // COPY data goes to the leg in COPY IN; outside COPY the server ignores it.
        const leg = this.standby?.copyIn ? this.standby : this.primary!;
        leg.out.push(msg);
        if (type !== FE.CopyData) leg.copyIn = false;
        return true;
      }
      case FE.FunctionCall: // large objects and the like → primary
        if (!this.canForwardOn(this.primary!)) return false;
        this.primary!.out.push(msg);
        this.primary!.expect(FORWARD);
        this.primary!.dirty = true;
        if (this.inTxn) this.txnWrite = true;
        this.causalWriteSent();
        return true;
      case FE.Terminate:
        this.close();
        return true;
      default:
        throw new ProtocolViolation(`unexpected message type "${String.fromCharCode(type)}" after startup`);
    }
  }

  private simpleQuery(msg: Buffer): boolean {
    const sql = msg.toString('utf8', 5, msg.length - 1);
    const r = this.host.route(sql, false);
    const local = r.showPool === undefined ? undefined : this.host.showPool(r.showPool, this);
    if (local) {
      if (this.primary!.fwdPending > 0 || (this.standby?.fwdPending ?? 0) > 0) return false;
      this.sock.write(Buffer.concat([local, codec.readyForQuery(this.lastStatus)]));
      return true;
    }
    if (r.proxySetting) return this.answerProxySetting(r.proxySetting);
    const P = this.primary!;
    let S = this.standby;
    const dirty = r.stateful;
    if (r.target === 'both' && S) {
      if (!this.canForwardOn(P)) return false;
      P.out.push(msg);
      P.expect(FORWARD);
      S.out.push(msg);
      S.expect(SWALLOW);
      if (dirty) P.dirty = S.dirty = true;
    } else {
      const useStandby = r.target === 'standby' && !r.write && this.standbyReadable();
      const leg = useStandby ? S! : P;
      if (!this.canForwardOn(leg)) return false;
      leg.out.push(msg);
      leg.expect(FORWARD);
      if (r.read) this.host.countSelect(leg.conn.backendId);
      if (dirty) leg.dirty = true;
      if (r.write) this.causalWriteSent();
      S = undefined;
    }
    if (r.standbyUnusable) this.primaryOnly = true;
    if (r.txn === 'begin') this.inTxn = true;
    if (r.write && (this.inTxn || r.txn === 'begin')) this.txnWrite = true;
    if (r.txn === 'end') {
      this.inTxn = false;
      this.txnWrite = false;
      if (S === undefined) this.endStandbyTransaction();
    }
    return true;
  }

  /**
   * A statement that ends the transaction went to the primary alone (PREPARE TRANSACTION, a
   * multi-statement query ending in COMMIT …): the standby leg, which BEGIN opened too, must
   * not stay inside a transaction block. Its ROLLBACK is answered to nobody (outside a block
   * it is a mere warning, also swallowed).
   */
  private endStandbyTransaction(): void {
    const S = this.standby;
    if (S === undefined) return;
    S.out.push(ROLLBACK);
    S.expect(SWALLOW);
  }

  // Extended protocol: messages up to Sync (or Flush) form a batch sent to one leg, chosen
  // when the batch is written: the primary if anything in it needs the primary, else the
  // standby if a read prefers it. Names and routes are decoded once, when a message arrives.

  private addToBatch(msg: Buffer, name = '', portal = '', route?: Route): void {
    this.batch.msgs.push({ msg, name, portal, route });
  }

  private extParse(msg: Buffer): boolean {
    const name = codec.readCString(msg, 5);
    if (!name) throw new ProtocolViolation('invalid Parse message');
    const q = codec.readCString(msg, name[1]);
    if (!q) throw new ProtocolViolation('invalid Parse message');
    const r = this.host.route(q[0]);
    const toPrimary = r.target !== 'standby' || r.write;
    if (r.target === 'both') this.batch.both++;
    else this.batch.others++;
    if (toPrimary) this.batch.needPrimary = true;
    else this.batch.preferStandby = true;
    if (r.read) this.batch.reads++;
    if (r.write) this.batch.writes = true;
    if (r.proxySetting) this.noteProxySetting(r.proxySetting);
    if (r.standbyUnusable) this.primaryOnly = true;
    if (r.txn === 'begin') this.inTxn = true;
    if (r.write && this.inTxn) this.txnWrite = true;
    if (r.txn === 'end') {
      this.inTxn = false;
      this.txnWrite = false;
      this.batch.endsTxn = true;
    }
    this.addToBatch(msg, name[0], '', r);
    return true;
  }

  private extBind(msg: Buffer): boolean {
    const portal = codec.readCString(msg, 5);
    const stmt = portal && codec.readCString(msg, portal[1]);
    if (!stmt) throw new ProtocolViolation('invalid Bind message');
    this.noteStatementUse(stmt[0]);
    this.addToBatch(msg, stmt[0], portal[0]);
    return true;
  }

  private extDescribeClose(msg: Buffer): boolean {
    const kind = msg[5];
    const name = msg.length >= 7 ? codec.readCString(msg, 6) : null;
    if ((kind !== TARGET.Statement && kind !== TARGET.Portal) || !name) {
      throw new ProtocolViolation(`invalid ${msg[0] === FE.Describe ? 'Describe' : 'Close'} message`);
    }
    if (kind === TARGET.Statement && msg[0] === FE.Describe) this.noteStatementUse(name[0]);
    this.addToBatch(msg, name[0]);
    return true;
  }

  private noteStatementUse(name: string): void {
    // A statement parsed earlier in this batch is routed by that Parse, not by its old version.
    const msgs = this.batch.msgs;
    for (let i = msgs.length - 1; i >= 0; i--) if (msgs[i]!.msg[0] === FE.Parse && msgs[i]!.name === name) return;
    const st = this.stmts.get(name);
    if (!st) return;
    if (st.write) {
      this.batch.needPrimary = true;
      this.batch.writes = true;
    } else if (this.standby && st.legs.has(this.standby) && !st.legs.has(this.primary!)) this.batch.preferStandby = true;
  }

  private extFlush(msg: Buffer, isSync: boolean): boolean {
    const b = this.batch;
    if (b.msgs.length === 0 && !isSync) return true; // nothing to push out
    if (isSync && !b.pinned && this.standby && b.both > 0 && b.others === 0 && this.selfContained(b)) return this.extBoth(msg);
    let leg = b.pinned;
    if (!leg) {
      leg = !b.needPrimary && b.preferStandby && this.standbyReadable() ? this.standby! : this.primary!;
      if (b.msgs.length === 0 && isSync) leg = this.primary!;
      if (!this.canForwardOn(leg)) return false;
      leg.expect(FORWARD);
      if (b.reads > 0) for (let i = 0; i < b.reads; i++) this.host.countSelect(leg.conn.backendId);
    }
    for (const e of b.msgs) this.emitExtended(leg, e);
    leg.out.push(msg);
    if (b.writes && leg === this.primary) this.causalWriteSent();
    if (b.endsTxn && leg === this.primary) {
      b.endsTxn = false;
      this.endStandbyTransaction();
    }
    if (isSync) {
      this.resetBatch();
    } else {
      b.msgs = [];
      b.pinned = leg;
      b.reads = 0;
    }
    return true;
  }

  private resetBatch(): void {
    const b = this.batch;
    b.msgs.length = 0;
    b.needPrimary = false;
    b.preferStandby = false;
    b.pinned = undefined;
    b.reads = 0;
    b.both = 0;
    b.others = 0;
    b.writes = false;
    b.endsTxn = false;
  }

  /** True when every statement the batch binds or describes is parsed in the batch itself. */
  private selfContained(b: Batch): boolean {
    for (let i = 0; i < b.msgs.length; i++) {
      const e = b.msgs[i]!;
      const t = e.msg[0];
      if (t !== FE.Bind && !(t === FE.Describe && e.msg[5] === TARGET.Statement)) continue;
      let found = false;
      for (let j = 0; j < i && !found; j++) found = b.msgs[j]!.msg[0] === FE.Parse && b.msgs[j]!.name === e.name;
      if (!found) return false;
    }
    return true;
  }

  /**
   * A batch of statements every leg must run (SET, BEGIN, SAVEPOINT … through the extended
   * protocol, as JDBC and other drivers send them): the primary answers the client, the
   * standby runs the same messages and its answers are swallowed.
   */
  private extBoth(sync: Buffer): boolean {
    const P = this.primary!;
    const S = this.standby!;
    if (!this.canForwardOn(P)) return false;
    const b = this.batch;
    P.expect(FORWARD);
    S.expect(SWALLOW);
    for (const e of b.msgs) this.emitExtended(S, e);
    for (const e of b.msgs) this.emitExtended(P, e);
    // Both legs now hold the batch's statements.
    for (const e of b.msgs) {
      if (e.msg[0] !== FE.Parse) continue;
      this.stmts.get(e.name)?.legs.add(S);
      S.stale.delete(e.name);
    }
    P.out.push(sync);
    S.out.push(sync);
    this.resetBatch();
    return true;
  }

  /** Writes one extended-protocol message to `leg`, re-Parsing statements that live elsewhere. */
  private emitExtended(leg: Leg, e: BatchEntry): void {
    const m = e.msg;
    const type = m[0]!;
    const name = e.name;
    if (type === FE.Parse) {
      const r = e.route!;
      if (name === '') {
        // The unnamed statement is replaced by every Parse: reuse its record, and keep a view
        // of the client's bytes rather than a copy (it is re-Parsed rarely, if ever) — unless
        // client reads reuse their buffer (fastReads): then a copy.
        if (r.stateful) leg.dirty = true;
        const u = this.unnamed;
        // Kept only to re-Parse on the other leg: a session on the primary alone has none.
        u.parse = this.standby === undefined ? NO_PARSE : this.fastReads ? Buffer.from(m) : m;
        u.legs.clear();
        u.legs.add(leg);
        u.write = r.target !== 'standby' || r.write;
        this.stmts.set('', u);
      } else {
        leg.dirty = true;
        if (leg.stale.has(name)) this.injectClose(leg, name);
        const old = this.stmts.get(name);
        if (old) for (const l of old.legs) if (l !== leg) l.stale.add(name);
        this.stmts.set(name, { parse: Buffer.from(m), legs: new Set([leg]), write: r.target !== 'standby' || r.write });
      }
      leg.out.push(m);
      return;
    }
    if (type === FE.Bind || (type === FE.Describe && m[5] === TARGET.Statement)) {
      if (type === FE.Bind) {
        if (e.portal !== '') {
          this.portals.set(e.portal, leg);
          leg.dirty = true;
        }
      }
      const st = this.stmts.get(name);
      if (st && !st.legs.has(leg)) {
        if (name !== '') leg.dirty = true;
        if (name !== '' && leg.stale.has(name)) this.injectClose(leg, name);
        leg.out.push(st.parse);
        leg.swallowParse++;
        st.legs.add(leg);
      }
      leg.out.push(m);
      return;
    }
    if (type === FE.Close && m[5] === TARGET.Statement) {
      const st = this.stmts.get(name);
      if (st) {
        for (const l of st.legs) if (l !== leg) l.stale.add(name);
        this.stmts.delete(name);
      }
      leg.stale.delete(name);
    }
    leg.out.push(m);
  }

  private injectClose(leg: Leg, name: string): void {
    leg.out.push(codec.closeStatement(name));
    leg.swallowClose++;
    leg.stale.delete(name);
  }

  // ---- backend events ------------------------------------------------------------------------

  onReady(leg: Leg, status: number, head: Expect | undefined): void {
    if (leg === this.primary) {
      this.inTxn = status !== TX.Idle;
      if (!this.inTxn) this.txnWrite = false;
      // Idle with nothing more outstanding: every write sent so far has committed (or rolled back).
      if (!this.inTxn && leg.queue.length === 0 && this.causal.pendingSince === Infinity) this.causal = committed(this.causal, monotonicMs());
    } else if (status === TX.Idle) {
      this.standbyDiverged = false;
    }
    if (head?.forward) {
      this.lastStatus = status;
      this.answered++;
    }
    if (leg === this.standby && this.heldAsync.length > 0 && leg.fwdPending === 0) {
      const held = this.heldAsync;
      this.heldAsync = [];
      for (const m of held) this.toClient(m);
    }
    if (this.blocked) {
      this.blocked = false;
      this.pump();
    }
  }

  onBackendErrorResponse(leg: Leg, fields: Record<string, string>, head: Expect | undefined): void {
    if (head && !head.forward) {
      if (head.fatalOnError) {
        this.log.info({ backend: leg.conn.backendId, error: fields.M }, 'startup parameter refused by the backend');
        this.fatal(fields.C ?? '22023', fields.M ?? 'invalid startup parameter');
        return;
      }
      if (leg === this.standby) this.standbyDiverged = true;
      this.log.debug({ backend: leg.conn.backendId, error: fields.M }, 'statement sent to both backends failed on the standby');
    }
  }

  asyncToClient(leg: Leg, msg: Buffer): void {
    if (this.otherForwarding(leg)) this.heldAsync.push(msg);
    else this.toClient(msg);
  }

  /**
   * A backend connection of the session closed. The client gets one error: the backend's own
   * FATAL when it sent one (already forwarded, or sent now), else the proxy's 08006.
   */
  private legLost(leg: Leg, err?: Error): void {
    if (this.state === 'closed') return;
    const id = leg.conn.backendId;
    if (err) this.host.backendError(id, err);
    const ended = leg.ended;
    if (ended) {
      this.log.info({ backend: id, role: leg.role, code: ended.fields.C, error: ended.fields.M }, 'backend ended the session; ending the client session with its error');
      if (ended.forwarded) this.close();
      else this.fatal(ended.fields.C ?? '08006', ended.fields.M ?? `backend ${id} ended the session`);
      return;
    }
    this.log.warn({ backend: id, role: leg.role, reason: err?.message ?? 'connection closed' }, 'backend connection lost; ending the session');
    const name = this.host.registry.get(id).name;
    this.fatal('08006', `connection to backend ${id} (${name}) was lost`);
  }

  /** Ends the session because backend `id` failed over (or was detached). */
  terminateForFailover(id: number): void {
    const name = this.host.registry.get(id).name;
    this.log.info({ backend: id }, 'ending session: its backend left service');
    this.fatal('57P01', `terminating connection because backend ${id} (${name}) failed over`);
  }

  /** Sends a CancelRequest for whatever this session is running, to the backend(s) running it. */
  cancelRunning(): void {
    for (const leg of [this.primary, this.standby]) {
      // A natively forwarded session may be running something: PostgreSQL ignores a cancel
      // that finds its backend idle.
      if (!leg || (leg.queue.length === 0 && this.lease === undefined)) continue;
      const c = leg.conn;
      const s = net.connect({ host: c.login.host, port: c.login.port }, () => s.end(codec.cancelRequest(c.pid, c.secret)));
      s.on('error', (err) => this.log.warn({ backend: c.backendId, err: err.message }, 'could not forward cancel request'));
      s.setTimeout(5000, () => s.destroy());
      this.log.info({ backend: c.backendId, pid: c.pid }, 'forwarded cancel request');
    }
  }

  // ---- ending ----------------------------------------------------------------------------------

  /** Sends FATAL (when it can be framed cleanly) and closes. */
  fatal(code: string, message: string): void {
    if (this.state === 'closed') return;
    this.unsplice();
    const midMessage = this.primary?.broken || (this.primary && !this.primary.conn.scanner.atBoundary && this.primary.lastForwarded) || (this.standby && !this.standby.conn.scanner.atBoundary && this.standby.lastForwarded);
    if (!midMessage && !this.sock.destroyed) this.sock.end(codec.errorResponse({ severity: 'FATAL', code, message }));
    this.close();
  }

  close(): void {
    if (this.state === 'closed') return;
    this.unsplice();
    this.state = 'closed';
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w(null, new Error('client closed the connection'));
    }
    // Flush what is queued (a final ErrorResponse) and close; a client that never reads
    // what is queued gets two seconds.
    if (!this.sock.destroyed) {
      this.sock.destroySoon();
      if (this.sock.writableLength > 0) setTimeout(() => this.sock.destroy(), 2000).unref();
    }
    // The read buffer can serve another session once the connection reads no more and no
    // bytes of it wait in a backend's write queue.
    const rb = this.rbuf;
    if (this.fastReads && this.sock.destroyed && rb?.length === SMALL_READ_BUFFER && !this.inputRetained() && spareReadBuffers.length < MAX_SPARE_READ_BUFFERS) {
      spareReadBuffers.push(rb);
      this.rbuf = undefined;
    }
    for (const leg of [this.primary, this.standby]) {
      if (!leg) continue;
      const c = leg.conn;
      c.onClose = undefined;
      c.afterRead = undefined;
      c.socket.resume();
      const clean = !leg.broken && !c.closed && leg.queue.length === 0 && !leg.copyIn && c.scanner.atBoundary && leg.out.length === 0 && leg.swallowParse === 0 && leg.swallowClose === 0 && this.batch.pinned === undefined;
      this.host.pools.release(c, clean, leg.dirty || leg.copyIn);
    }
    this.primary = undefined;
    this.standby = undefined;
    this.host.unregisterSession(this);
  }
}
