// One client session (session pooling, pgpool semantics). The session holds a connection to
// the primary and, with load balancing, one to the standby chosen at session start ("legs",
// leg.ts). Client messages are decoded only as far as routing needs (Query text, Parse text,
// statement and portal names); backend output is forwarded by header scanning only.
//
// Its phases live apart: the handshake and first checkout in startup.ts, client reads in
// client-input.ts, a backend leg and the transaction state in leg.ts, extended-protocol
// batching in extended.ts, the routing gates' rule in gates.ts, causal reads' rule in
// causal.ts, native forwarding in splice.ts, the hand-off to a successor process in
// src/takeover. This file keeps what ties them: the order of responses, simple queries,
// backpressure, the hand-over to and from native forwarding, applying the gates and the causal
// rule, exporting and adopting a session at a safe point, moving it to a fresh primary
// connection when its own is lost (proxy.failover_sessions; what to re-create is
// session-state.ts's), and ending. (Over 500 lines for that
// reason: those all act on the same few fields — pending, blocked, the legs' queues and
// quiescence — and split apart each would reach into the others' state.)
//
// Ordering invariant: the client must see responses in the order it sent requests. A batch
// whose response goes to the client is written to a leg only when no *other* leg still owes
// the client a response; otherwise the session stops reading the client until it does.
// Responses a leg owes nobody (the standby's copy of a SET sent to both) are swallowed.
import net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from '../log.js';
import type { RoutingGates } from '../backends/registry.js';
import * as codec from '../protocol/codec.js';
import { ProtocolViolation, type FrameReader } from '../protocol/frame-reader.js';
import { ClientInput } from './client-input.js';
import { BackendError, encodeParameterStatus, type BackendConn } from './backend-conn.js';
import { FE, TX } from '../protocol/messages.js';
import { TcpConn, systemErrorName, writeAll, type Conn } from './tcp.js';
import * as splice from './splice.js';
import type { Pools } from './pool.js';
import { AuthFailed } from './client-auth.js';
import type { Route } from './router.js';
import { FORWARD, Leg, RECREATE, STARTUP_SET, SWALLOW, TxnState, type Expect, type LegOwner, type Role } from './leg.js';
import { EMPTY_RECORD, moveBlocker, noteStatements, recordFromWire, recordToWire, replay, type SessionRecord } from './session-state.js';
import { ExtendedBatcher, type Admission, type BatchNeeds, type BatchSession } from './extended.js';
import { acquire, handshake, startTls, startupSets, statusOverlay, takePooled, type BackendPick, type StartupHost } from './startup.js';
import { activeHold, gatesOpen, judgeCheckout, judgeStatement, refusalError } from './gates.js';
import { NO_NEED, committed, describeNeed, needFromWire, needToWire, parseReadAfterLsn, readAfterLsn, writeSent, type CausalDecision, type CausalNeed, type CausalReason } from './causal.js';
import { monotonicMs } from '../backends/mono-clock.js';
import { REPLAY_REASON } from './never-ran.js';
import type { BackendState, SessionState } from '../takeover/messages.js';

/** What a session needs of its proxy. */
export interface SessionHost {
  readonly log: Logger;
  readonly pools: Pools;
  readonly startup: StartupHost;
  /** Sessions on the primary alone may be forwarded natively (splice.ts). */
  readonly nativeForwarding: boolean;
  /** The proxy's select_cnt counters in native forwarding (index = base + backend id), or -1. */
  readonly selectCounterBase: number;
  route(sql: string, cacheable?: boolean, standardConformingStrings?: boolean): Route;
  /** The backends a new session starts on (no held standby), or undefined when no primary is routable. */
  pickBackends(): BackendPick | undefined;
  /** The registry's rule (status, lag): may this standby take reads now? */
  standbyReadable(backendId: number): boolean;
  backendName(backendId: number): string;
  /** The routing gates in force (the proxy calls Session.gatesChanged when they change). */
  gates(): RoutingGates;
  registerSession(s: Session): number;
  unregisterSession(s: Session): void;
  countSelect(backendId: number): void;
  /** The answer to `SHOW <name>` (a pool command, see Route.showPool), or undefined if the proxy does not know it. */
  showPool(name: string, s: Session): Buffer | undefined;
  backendError(backendId: number, err: Error): void;
  /** proxy.causal_reads, read at use (a reload turns it on or off). */
  readonly causalReads: boolean;
  /** Causal reads (causal.ts): where the next read may go, by the registry's WAL samples of the primary and this standby. */
  causalRead(need: CausalNeed, standbyId: number): CausalDecision;
  /** Causal reads: a session waits on a fresh WAL sample of this backend (asks the replication monitor for one soon). */
  causalWait(backendId: number): void;
  /** proxy.failover_sessions, read at use: `keep` moves a session between transactions whose backend is lost. */
  readonly failoverSessions: 'keep' | 'end';
  /** How long a session waits for a primary to move to (watchdog.interlock_timeout_ms). */
  readonly moveWaitMs: number;
  /** A backend's FATAL said its server is going away: hold statements bound for it a moment (a proxy-local gate). */
  backendDying(backendId: number, reason: string): void;
}

const MAX_EARLY_BYTES = 1024 * 1024;
/** Startup and authentication must be done within this (PostgreSQL's authentication_timeout is 60 s). */
const STARTUP_TIMEOUT_MS = 60_000;
const AUTH_OK = new codec.Writer(9).begin('R').int32(0).end().done();
/**
 * A session goes to native forwarding after this many answered requests: a client that
 * connects per transaction (pgbench -C) ends before that, and lending and taking back its
 * descriptors would cost more than forwarding one transaction in JavaScript.
 */
const SPLICE_AFTER = 2;
const ROLLBACK = codec.query('ROLLBACK');
const SYNC = codec.sync();
/** A session waiting for a primary to move to looks again this often (and at every gates change). */
const MOVE_RETRY_MS = 100;
const TX_IN_BLOCK = 0x54; // 'T'

/** Aborts the transaction a refused write came in, as PostgreSQL's own error would (answered to nobody). */
const ABORT_REFUSED = codec.query(`DO $pgwatchdog$BEGIN RAISE EXCEPTION USING ERRCODE = '25006', MESSAGE = 'write refused by pgwatchdog: this peer refuses writes'; END$pgwatchdog$`);

/** A session whose primary connection was lost between transactions, waiting to move (failover_sessions: keep). */
interface Move {
  /** The backend it was on. */
  readonly from: number;
  /** The backend's own FATAL, if it sent one (the session ends with it if that backend turns out to serve on). */
  readonly ended: Record<string, string> | undefined;
  readonly since: number;
  readonly deadline: number;
  /** Until the lost backend is seen failing (a connect refused, it left service, routing moved), a
   * connection that works there means only this backend was ended (pg_terminate_backend): the
   * session ends as PostgreSQL ended it. */
  backendMayServe: boolean;
  connecting: boolean;
  timer: NodeJS.Timeout | undefined;
}
export class Session implements LegOwner, BatchSession {
  private readonly input: ClientInput;
  private readonly reader: FrameReader;
  private state: 'startup' | 'auth' | 'connecting' | 'ready' | 'closed' = 'startup';
  private sock: Conn;
  user = '';
  database = '';
  private startupParams = new Map<string, string>();
  primary: Leg | undefined;
  standby: Leg | undefined;
  secret = 0;
  private pending: Buffer | null = null;
  private blocked = false;
  private pumping = false;
  private readonly ext = new ExtendedBatcher(this);
  readonly txn = new TxnState();
  /** The standby failed a statement it shared with the primary: reads go to the primary until it is idle again. */
  private standbyDiverged = false;
  /** The session made state the standby cannot see (a temp table, serializable by default):
   * its reads stay on the primary for the rest of the session. */
  private primaryOnly = false;
  /** Transaction status of the last ReadyForQuery the client got. */
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
  /** Set while a routing gate holds the session (a statement, or its first checkout). */
  private gateTimer: NodeJS.Timeout | undefined;
  private gateWake: (() => void) | undefined;
  /** The message of the write the gates refused last. */
  private refusal = '';
  /** What the session made of its connection that a fresh one must be given again (session-state.ts). */
  private record: SessionRecord = EMPTY_RECORD;
  /** Set while the session waits to move to a new primary connection (failover_sessions: keep). */
  private move: Move | undefined;
  /** The session's record as it stood before the unit kept on a leg (Leg.kept): a unit that never ran changed nothing. */
  private keptRecord: SessionRecord = EMPTY_RECORD;
  /** Native forwarding gave the session back inside an extended batch it had partly forwarded: the rest is no whole unit. */
  private nativeMidBatch = false;
  /** A unit that never ran on this backend waits in the client input to be sent after the move (never-ran.ts). */
  private replayFrom: { backend: number; native: boolean } | undefined;

  /**
   * `fastReads`: the connection reads into nextReadBuffer() and calls onClientRead() (a
   * TcpConn, see tcp.ts); else the socket's 'data' events feed the session.
   */
  constructor(
    private readonly host: SessionHost,
    socket: Conn,
    readonly id: number,
    readonly fastReads = false,
    /** Set when the session moved in from another process (Session.adopt): no startup here. */
    moved?: SessionState,
  ) {
    this.sock = socket;
    this.input = new ClientInput(fastReads, () => this.inputRetained(), this.onClientData);
    this.reader = this.input.reader;
    this.nextReadBuffer = this.input.nextReadBuffer;
    this.onClientRead = this.input.onRead;
    this.attachClient(socket);
    if (!moved) void this.start().catch((err: Error) => this.startFailed(err));
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
    if (!this.fastReads || this.tlsUsed) s.on('data', this.input.onData);
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

  /** Where the lean connection reads and what it calls (tcp.ts; see ClientInput). */
  readonly nextReadBuffer: () => Buffer;
  readonly onClientRead: (n: number, buf: Buffer) => void;

  private inputRetained(): boolean {
    if (this.reader.buffered > 0 || this.pending !== null || this.ext.open) return true;
    const p = this.primary;
    // (A kept unit is views of client reads until its reply starts.)
    if (p && (p.out.length > 0 || p.conn.socket.writableLength > 0 || p.kept !== undefined)) return true;
    const sb = this.standby;
    return sb !== undefined && (sb.out.length > 0 || sb.conn.socket.writableLength > 0 || sb.kept !== undefined);
  }

  private readonly onClientData = (): void => {
    if (this.state === 'ready') this.pump();
    else if (this.reader.buffered > MAX_EARLY_BYTES && this.state !== 'startup' && this.state !== 'auth') {
      // Pipelined queries before the session is ready are fine; megabytes of them are not.
      this.fatal('08P01', `client sent more than ${MAX_EARLY_BYTES} bytes before the session was ready`);
    } else this.input.wake();
  };

  private readonly clientRetains = (): boolean => this.sock.writableLength > 0;

  private toClient = (b: Buffer): void => {
    if (!this.sock.write(b)) {
      // Backpressure: stop reading backends until the client drains.
      this.primary?.conn.socket.pause();
      this.standby?.conn.socket.pause();
    }
  };

  // ---- startup (startup.ts) ------------------------------------------------------------------

  private async start(): Promise<void> {
    const reader = this.reader;
    const c = await handshake(
      {
        next: () => this.input.next(),
        write: (b) => this.sock.write(b),
        get buffered() {
          return reader.buffered;
        },
        upgradeTls: (ctx) => this.upgradeTls(ctx),
        startupDone: () => {
          this.reader.startupPhase = false;
          this.state = 'auth';
        },
      },
      this.host.startup,
    );
    if (c === undefined) {
      this.close();
      return;
    }
    this.user = c.user;
    this.database = c.database;
    this.startupParams = c.params;
    this.state = 'connecting';
    const pick = await this.checkoutAllowed();
    if (this.closed) return;
    if (!pick) throw Object.assign(new Error('pgwatchdog: no primary backend is up; try again after failover'), { sqlstate: '57P03' });
    // Usually both connections wait idle in the pool: take them without a round of promises.
    const got = takePooled(this.host.pools, pick, c) ?? (await acquire(this.host.pools, pick, c, () => this.state !== 'closed', this.log));
    if (got) this.ready(got.primary, got.standby);
  }

  /** The backends to start on, once no routing gate holds the first checkout back. */
  private async checkoutAllowed(): Promise<BackendPick | undefined> {
    for (;;) {
      const pick = this.host.pickBackends();
      const v = judgeCheckout(this.host.gates(), pick?.primary, Date.now());
      if (v.action !== 'wait') return pick;
      this.log.info({ reason: v.reason, until: new Date(v.untilMs).toISOString() }, 'new session waits for a routing gate before its first backend connection');
      await new Promise<void>((resolve) => {
        this.gateWake = resolve;
        this.armGateTimer(v.untilMs);
      });
      if (this.closed) return undefined;
    }
  }

  /** (A getter: TypeScript would narrow `state` across an await.) */
  private get closed(): boolean {
    return this.state === 'closed';
  }

  private upgradeTls(ctx: tls.SecureContext): Promise<void> {
    // With TLS configured the proxy serves clients on net.Sockets (see Proxy.serveLean).
    if (!(this.sock instanceof net.Socket)) throw new Error('TLS requested on a connection that is not a net.Socket');
    const raw = this.sock;
    raw.removeListener('data', this.input.onData);
    raw.removeAllListeners('close');
    raw.removeAllListeners('error');
    raw.removeAllListeners('drain');
    const { socket, secure } = startTls(raw, ctx);
    this.sock = socket;
    this.tlsUsed = true;
    this.attachClient(socket);
    raw.on('error', () => this.close());
    return secure;
  }

  private startFailed(err: Error): void {
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

  /** Both legs are in hand: apply startup parameters and tell the client it may begin. */
  private ready(pc: BackendConn, sc: BackendConn | undefined): void {
    this.primary = this.adopt(pc, 'primary');
    if (sc) this.standby = this.adopt(sc, 'standby');
    this.secret = this.host.registerSession(this);
    // Startup parameters the client asked for (application_name, client_encoding, …) are
    // applied on each leg with SET, pipelined ahead of the client's first query.
    for (const leg of [this.primary, this.standby]) {
      const sets = leg && startupSets(leg.conn, this.startupParams);
      if (!sets) continue;
      leg!.out.push(sets);
      leg!.expect(STARTUP_SET);
    }
    const overlay = statusOverlay(pc, this.startupParams);
    // AuthenticationOk, the ParameterStatus block (shared, not copied), BackendKeyData and
    // ReadyForQuery: one write.
    const tail = new codec.Writer(19).begin('K').int32(pc.pid).int32(this.secret).end().begin('Z').int8(TX.Idle).end().done();
    this.state = 'ready';
    // A session on the primary alone may go to native forwarding once settled (trySplice).
    if (this.standby === undefined && this.host.nativeForwarding && this.sock instanceof TcpConn && pc.socket instanceof TcpConn) pc.afterRead = this.trySplice;
    writeAll(this.sock, [AUTH_OK, overlay ? encodeParameterStatus(overlay) : pc.statusBlock(), tail]);
    if (this.host.log.isLevelEnabled('debug')) this.log.debug({ user: this.user, database: this.database, primary: pc.backendId, standby: sc?.backendId, tls: this.tlsUsed }, 'session started');
    this.flushAll();
    this.pump();
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

  // ---- native forwarding (splice.ts) ---------------------------------------------------------

  /**
   * After each backend read: a session on the primary alone, quiescent, with nothing queued,
   * buffered or owed on the client side, and no routing gate that concerns it, lends its
   * descriptors to native forwarding.
   */
  private readonly trySplice = (): void => {
    const P = this.primary;
    if (this.answered < SPLICE_AFTER || this.state !== 'ready' || this.lease !== undefined || P === undefined || !P.quiescent() || this.moveWanted !== undefined || P.ended !== undefined) return;
    // Effects of an open block wait for its COMMIT or ROLLBACK, which JavaScript must see.
    if (this.record.pending.length > 0) return;
    if (this.reader.buffered > 0 || this.pending !== null || this.ext.open || this.blocked || this.backendFull || this.heldAsync.length > 0) return;
    if (!gatesOpen(this.host.gates()) && this.gatesConcernNative()) return;
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
    this.nativeMidBatch = g.batchOpen;
    // The unit comes back in fromClient and the FATAL in fromBackend: the leg ends unforwarded,
    // and the session moves and sends the unit there (never-ran.ts).
    if (g.reason === R.backendReplay) this.replayFrom = { backend: P.conn.backendId, native: true };
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
    // What native forwarding ran is known by PostgreSQL's last word only (BEGIN … END there).
    this.txn.onPrimaryReady(status);
    for (let i = 0; i < outstanding; i++) P.expect(FORWARD);
    if (!boundary) P.broken = true;
    (this.sock as TcpConn).giveBack();
    (P.conn.socket as TcpConn).giveBack();
  }

  // ---- routing gates (gates.ts) --------------------------------------------------------------

  /** A gate that concerns a natively forwarded session: writes refused, or its primary held. */
  private gatesConcernNative(): boolean {
    const g = this.host.gates();
    return g.refuseWrites !== null || (this.primary !== undefined && activeHold(g, this.primary.conn.backendId, Date.now()) !== undefined);
  }

  /**
   * The routing gates changed (the proxy calls this on every 'gates' event), or a hold this
   * session waits on ran out: a held statement or checkout tries again, and a natively
   * forwarded session the gates now concern comes back to JavaScript at its next client
   * message (splice.recall), where the gates are applied.
   */
  readonly gatesChanged = (): void => {
    if (this.move !== undefined) this.tryMoveToPrimary();
    if (this.gateTimer !== undefined) {
      clearTimeout(this.gateTimer);
      this.gateTimer = undefined;
      const wake = this.gateWake;
      this.gateWake = undefined;
      if (wake) wake();
      else if (this.blocked && this.state === 'ready') {
        this.log.debug('routing gates changed: the held statement tries again');
        this.blocked = false;
        this.pump();
      }
    }
    if (this.lease !== undefined && this.gatesConcernNative()) splice.recall(this.lease);
  };

  private armGateTimer(untilMs: number): void {
    clearTimeout(this.gateTimer);
    this.gateTimer = setTimeout(this.gatesChanged, Math.max(0, untilMs - Date.now()) + 1);
  }

  /** The gates' verdict on a statement or batch about to be routed (BatchSession). */
  admit(n: BatchNeeds): Admission {
    const g = this.host.gates();
    if (gatesOpen(g)) return 'go';
    const v = judgeStatement(g, n, { primary: this.primary!.conn.backendId, standby: this.standby?.conn.backendId }, Date.now());
    if (v.action === 'wait') {
      if (this.gateTimer === undefined) this.log.info({ reason: v.reason, until: new Date(v.untilMs).toISOString() }, 'statement waits for a routing gate');
      this.armGateTimer(v.untilMs);
      return 'wait';
    }
    if (this.gateTimer !== undefined) {
      clearTimeout(this.gateTimer);
      this.gateTimer = undefined;
    }
    if (v.action === 'refuse') {
      this.log.info({ reason: v.reason }, 'write refused');
      this.refusal = v.message;
      return 'refused';
    }
    if (v.action === 'avoidStandby') this.log.debug({ reason: v.reason }, 'read moved off its standby');
    return v.action;
  }

  /** Answers a refused write (BatchSession): the error and/or ReadyForQuery. */
  answerRefused(error: boolean, ready: boolean): boolean {
    if (this.primary!.fwdPending > 0 || (this.standby?.fwdPending ?? 0) > 0) return false;
    const out: Buffer[] = [];
    if (error) {
      out.push(codec.errorResponse(refusalError(this.refusal)));
      if (this.txn.inTxn && this.lastStatus !== TX.Failed) {
        // In a transaction block PostgreSQL would abort the block: so do its backends (the
        // standby's too: BEGIN opened one there).
        for (const leg of [this.primary, this.standby]) {
          if (!leg) continue;
          leg.out.push(ABORT_REFUSED);
          leg.expect(SWALLOW);
        }
        this.lastStatus = TX.Failed;
      }
    }
    if (ready) out.push(codec.readyForQuery(this.lastStatus));
    writeAll(this.sock, out);
    return true;
  }

  // ---- client → backends ---------------------------------------------------------------------

  private pump(): void {
    // While the session moves to a new primary, client input waits (the client sees a pause);
    // so it does once a backend has ended the session (its FATAL is in), until the connection
    // closes and the session moves or ends: nothing more is sent to a backend that is gone.
    if (this.pumping || this.state !== 'ready' || this.move !== undefined || this.primary?.ended !== undefined || this.standby?.ended !== undefined) return;
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

  canForwardOn(leg: Leg): boolean {
    return !this.otherForwarding(leg);
  }

  standbyReadable(): boolean {
    const sb = this.standby;
    if (!sb || this.txn.wrote || this.standbyDiverged || this.primaryOnly) return false;
    if (!this.host.standbyReadable(sb.conn.backendId)) return false;
    return this.causal === NO_NEED || this.causalAllows(sb.conn.backendId);
  }

  // ---- causal reads (causal.ts) ----------------------------------------------------------------

  /** A statement that may write (anything routed to the primary but transaction control and SET)
   * went to the primary: later reads wait for its commit (BatchSession). */
  causalWriteSent(): void {
    if (this.standby !== undefined && this.host.causalReads) this.causal = writeSent(this.causal);
  }

  /** May this read use the standby, as far as the session's committed writes go? */
  private causalAllows(standbyId: number): boolean {
    if (!this.host.causalReads) {
      this.causal = NO_NEED;
      return true;
    }
    const d = this.host.causalRead(this.causal, standbyId);
    if (d.reason !== this.causalReason) {
      this.causalReason = d.reason;
      if (this.host.log.isLevelEnabled('debug')) this.log.debug({ target: d.target, reason: d.reason, waitsFor: describeNeed(this.causal) }, 'causal read');
    }
    this.causal = d.need;
    if (d.target === 'standby') return true;
    // A fresh sample of the backend the decision waits on (none while the write still runs).
    if (d.reason === 'no primary WAL sample since the commit') this.host.causalWait(this.primary!.conn.backendId);
    else if (d.reason !== 'write not committed yet') this.host.causalWait(standbyId);
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
   * Applies `SET pgwatchdog.read_after_lsn`; returns the error for a bad one (BatchSession:
   * through the extended protocol the statement also reaches PostgreSQL, which keeps it as a
   * placeholder setting, and a bad value is only logged).
   */
  noteProxySetting(p: { name: string; value: string | null }): { code: string; message: string } | undefined {
    if (p.name !== 'read_after_lsn') return { code: '42704', message: `unrecognized configuration parameter "pgwatchdog.${p.name}" (pgwatchdog knows pgwatchdog.read_after_lsn)` };
    let lsn: bigint;
    try {
      lsn = parseReadAfterLsn(p.value ?? '');
    } catch (e) {
      this.log.info({ value: p.value }, (e as Error).message);
      return { code: '22023', message: (e as Error).message };
    }
    if (this.standby !== undefined && this.host.causalReads) this.causal = readAfterLsn(this.causal, lsn);
    return undefined;
  }

  route(sql: string): Route {
    const r = this.host.route(sql, true, this.standardConformingStrings());
    // (Noted at Parse: a statement that changes session state runs where it is parsed.)
    if (r.stateful || (r.txn !== undefined && this.record.pending.length > 0)) this.noteState(sql);
    return r;
  }

  /** The server's standard_conforming_strings as the primary last reported it (ParameterStatus). */
  private standardConformingStrings(): boolean {
    return this.primary?.conn.params.get('standard_conforming_strings') !== 'off';
  }

  countSelect(backendId: number): void {
    this.host.countSelect(backendId);
  }

  markPrimaryOnly(): void {
    this.primaryOnly = true;
  }

  /** Handles one client message; false = cannot proceed yet (ordering, or a gate), try again later. */
  private handle(msg: Buffer): boolean {
    const type = msg[0]!;
    switch (type) {
      case FE.Query:
        return this.simpleQuery(msg);
      case FE.Parse:
        return this.ext.parse(msg);
      case FE.Bind:
        return this.ext.bind(msg);
      case FE.Describe:
      case FE.Close:
        return this.ext.describeOrClose(msg);
      case FE.Execute:
        return this.ext.execute(msg);
      case FE.Flush:
        return this.ext.flush(msg, false);
      case FE.Sync:
        return this.ext.flush(msg, true);
      case FE.CopyData:
      case FE.CopyDone:
      case FE.CopyFail: {
        // COPY data goes to the leg in COPY IN; outside COPY the server ignores it.
        const leg = this.standby?.copyIn ? this.standby : this.primary!;
        leg.out.push(msg);
        if (type !== FE.CopyData) leg.copyIn = false;
        return true;
      }
      case FE.FunctionCall: {
        // Large objects and the like → the primary, as a write.
        const P = this.primary!;
        if (!gatesOpen(this.host.gates())) {
          const a = this.admit({ write: true, needsPrimary: true, wantsStandby: false, inTxn: this.txn.inTxn });
          if (a === 'wait') return false;
          if (a === 'refused') return this.answerRefused(true, true);
        }
        if (!this.canForwardOn(P)) return false;
        P.out.push(msg);
        P.expect(FORWARD);
        P.dirty = true;
        this.txn.onWrite();
        this.causalWriteSent();
        return true;
      }
      case FE.Terminate:
        this.close();
        return true;
      default:
        throw new ProtocolViolation(`unexpected message type "${String.fromCharCode(type)}" after startup`);
    }
  }

  private simpleQuery(msg: Buffer): boolean {
    const sql = msg.toString('utf8', 5, msg.length - 1);
    const r = this.host.route(sql, false, this.standardConformingStrings());
    const local = r.showPool === undefined ? undefined : this.host.showPool(r.showPool, this);
    if (local) {
      if (this.primary!.fwdPending > 0 || (this.standby?.fwdPending ?? 0) > 0) return false;
      this.sock.write(Buffer.concat([local, codec.readyForQuery(this.lastStatus)]));
      return true;
    }
    if (r.proxySetting) return this.answerProxySetting(r.proxySetting);
    const P = this.primary!;
    let S = this.standby;
    let admission: Admission = 'go';
    if (!gatesOpen(this.host.gates())) {
      admission = this.admit({ write: r.write, needsPrimary: r.target !== 'standby' || r.write, wantsStandby: r.target === 'standby' && S !== undefined, inTxn: this.txn.inTxn });
      if (admission === 'wait') return false;
      if (admission === 'refused') return this.answerRefused(true, true);
    }
    const dirty = r.stateful;
    if (r.target === 'both' && S) {
      if (!this.canForwardOn(P)) return false;
      const keep = this.keepable(P, this.txn.inTxn);
      P.out.push(msg);
      P.expect(FORWARD);
      if (keep) this.keepUnit(P, msg, this.record);
      S.out.push(msg);
      S.expect(SWALLOW);
      if (dirty) P.dirty = S.dirty = true;
    } else {
      const useStandby = admission === 'go' && r.target === 'standby' && !r.write && this.standbyReadable();
      const leg = useStandby ? S! : P;
      if (!this.canForwardOn(leg)) return false;
      const keep = this.keepable(leg, this.txn.inTxn);
      leg.out.push(msg);
      leg.expect(FORWARD);
      if (keep) this.keepUnit(leg, msg, this.record);
      if (r.read) this.host.countSelect(leg.conn.backendId);
      if (dirty) leg.dirty = true;
      // Not only writes: the proxy cannot see what an EXECUTE, a CALL or a function does.
      if (r.write || r.target === 'primary') this.causalWriteSent();
      S = undefined;
    }
    if (r.standbyUnusable) this.primaryOnly = true;
    if (dirty || (r.txn !== undefined && this.record.pending.length > 0)) this.noteState(sql);
    if (this.txn.onRoute(r) && S === undefined) this.endStandbyTransaction();
    return true;
  }

  // ---- a unit that never ran (never-ran.ts) ----------------------------------------------------

  /**
   * May the unit about to be sent on `leg` (a simple Query, or an extended batch at its Sync;
   * before its expectation is queued) be kept until its reply starts? Only a whole unit sent
   * while the session is idle with nothing owed on the leg: then a first reply proving it
   * never ran lets it go again after the move (BatchSession). `inTxn`: as the unit began.
   */
  keepable(leg: Leg, inTxn: boolean): boolean {
    const midBatch = this.nativeMidBatch;
    this.nativeMidBatch = false;
    return (
      !midBatch &&
      !inTxn &&
      this.lastStatus === TX.Idle &&
      leg.conn.txStatus === TX.Idle &&
      leg.queue.length === 0 &&
      leg.out.length === 0 &&
      !leg.copyIn &&
      leg.conn.scanner.atBoundary
    );
  }

  /** The unit just sent on `leg` is kept (keepable said so); `record`: the session's record before it (BatchSession). */
  keepUnit(leg: Leg, unit: Buffer | Buffer[], record: SessionRecord): void {
    leg.kept = unit;
    this.keptRecord = record;
  }

  get stateRecord(): SessionRecord {
    return this.record;
  }

  /**
   * The kept unit's first reply is the postmaster-exit FATAL (LegOwner): nothing of it ran.
   * Undone as if never sent — its expectation, what it added to the session's record and
   * transaction state, the named statements it parsed — and put back in front of the client's
   * input, which waits (pump) until the leg closes and the session moves (keeps); then it is
   * sent to the new primary, once. Only the last thing the client sent can go back so: with a
   * later request already taken in (a message held, a batch open) the unit fails as before.
   */
  replayUnit(leg: Leg, unit: Buffer | Buffer[]): boolean {
    if (this.state !== 'ready' || this.pending !== null || this.ext.open || this.host.failoverSessions !== 'keep') return false;
    const head = leg.queue.shift();
    if (head?.forward) leg.fwdPending--;
    this.record = this.keptRecord;
    this.txn.restore(false, false);
    const msgs = Array.isArray(unit) ? unit : [unit];
    this.ext.unparse(msgs);
    // A copy: the views' read buffer is reused once nothing keeps it.
    this.reader.unshift(Buffer.concat(msgs));
    this.replayFrom = { backend: leg.conn.backendId, native: false };
    return true;
  }

  /** A statement that may change session state is on its way (before its route moves the transaction state). */
  private noteState(sql: string): void {
    this.record = noteStatements(this.record, sql, { inTxn: this.txn.inTxn, failed: this.lastStatus === TX.Failed });
  }

  /**
   * A statement that ends the transaction went to the primary alone (PREPARE TRANSACTION, a
   * multi-statement query ending in COMMIT …): the standby leg, which BEGIN opened too, must
   * not stay inside a transaction block. Its ROLLBACK is answered to nobody (outside a block
   * it is a mere warning, also swallowed).
   */
  endStandbyTransaction(): void {
    const S = this.standby;
    if (S === undefined) return;
    S.out.push(ROLLBACK);
    S.expect(SWALLOW);
  }

  // ---- backend events (LegOwner) -------------------------------------------------------------

  onReady(leg: Leg, status: number, head: Expect | undefined): void {
    if (leg === this.primary) {
      this.txn.onPrimaryReady(status);
      // Idle with nothing more outstanding: every write sent so far has committed (or rolled back).
      if (!this.txn.inTxn && leg.queue.length === 0 && this.causal.pendingSince === Infinity) this.causal = committed(this.causal, monotonicMs());
    } else if (status === TX.Idle) this.standbyDiverged = false;
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
    // A session waiting to move tries once this read is handled (ReadyForQuery forwarded).
    if (this.moveWanted !== undefined && status === TX.Idle) queueMicrotask(this.tryMove);
  }

  onBackendErrorResponse(leg: Leg, fields: Record<string, string>, head: Expect | undefined): void {
    // The postmaster died (57P01 "…unexpected postmaster exit"), the server crashed (57P02) or
    // shuts down (57P03): every connection to it is about to end. (A plain 57P01 may be one
    // pg_terminate_backend: that says nothing of the server.)
    if (fields.C === '57P02' || fields.C === '57P03' || (fields.C === '57P01' && /postmaster/.test(fields.M ?? ''))) this.host.backendDying(leg.conn.backendId, fields.M ?? fields.C);
    if (head && !head.forward) {
      if (head.recreate) {
        this.log.warn({ backend: leg.conn.backendId, error: fields.M }, 'could not re-create the session state on the new primary; ending the session');
        this.fatal('57P01', `terminating connection because its session state could not be re-created on backend ${leg.conn.backendId} after a failover: ${fields.M ?? 'error'}`);
        return;
      }
      if (head.fatalOnError) {
        this.log.info({ backend: leg.conn.backendId, error: fields.M }, 'startup parameter refused by the backend');
        this.fatal(fields.C ?? '22023', fields.M ?? 'invalid startup parameter');
        return;
      }
      if (leg === this.standby) this.standbyDiverged = true;
      this.log.debug({ backend: leg.conn.backendId, error: fields.M }, 'statement answered to nobody failed on the backend');
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
    if (this.keeps(leg, false, ended?.forwarded === true ? undefined : (ended?.fields.M ?? err?.message ?? 'connection closed'))) return;
    if (ended) {
      this.log.info({ backend: id, role: leg.role, code: ended.fields.C, error: ended.fields.M }, 'backend ended the session; ending the client session with its error');
      if (ended.forwarded) this.close();
      else this.fatal(ended.fields.C ?? '08006', ended.fields.M ?? `backend ${id} ended the session`);
      return;
    }
    this.log.warn({ backend: id, role: leg.role, reason: err?.message ?? 'connection closed' }, 'backend connection lost; ending the session');
    this.fatal('08006', `connection to backend ${id} (${this.host.backendName(id)}) was lost`);
  }

  /** Ends the session because backend `id` failed over (or was detached); with failover_sessions `keep`, moves it if it can. */
  terminateForFailover(id: number): void {
    if (this.state === 'ready' && this.move === undefined) {
      this.unsplice();
      const leg = this.primary?.conn.backendId === id ? this.primary : this.standby?.conn.backendId === id ? this.standby : undefined;
      if (leg && this.keeps(leg, true, 'its backend left service')) return;
      if (this.state !== 'ready') return;
    }
    this.log.info({ backend: id }, 'ending session: its backend left service');
    this.fatal('57P01', `terminating connection because backend ${id} (${this.host.backendName(id)}) failed over`);
  }

  // ---- moving to a new backend connection (failover_sessions: keep; session-state.ts) ---------

  /**
   * Leg `leg` is lost (or its backend left service: `leftService`). With failover_sessions
   * `keep` a session that can move does: a lost standby leaves it on the primary, a lost
   * primary makes it wait for a primary to move to. True when the session carries on; false
   * when it must end as before (mode `end`, or the client already has the backend's FATAL).
   * A session that cannot move ends here with 57P01, and the log names what stopped it.
   */
  private keeps(leg: Leg, leftService: boolean, why: string | undefined): boolean {
    if (this.host.failoverSessions !== 'keep' || this.state !== 'ready' || why === undefined) return false;
    const id = leg.conn.backendId;
    const isPrimary = leg === this.primary;
    const live = { txStatus: this.txn.inTxn ? TX_IN_BLOCK : this.lastStatus, copy: leg.copyIn, inFlight: leg.queue.length > 0 || leg.out.length > 0 || this.ext.pinned || !leg.conn.scanner.atBoundary };
    // The standby holds none of the record's state (temp objects and the like live on the primary).
    const blocker = moveBlocker(isPrimary ? this.record : EMPTY_RECORD, live);
    if (blocker !== undefined) {
      this.log.info({ backend: id, role: leg.role, reason: why, blocker }, 'backend connection lost and the session cannot move: ending it');
      // The backend's own FATAL when it sent one (as with failover_sessions: end), else 57P01.
      const e = leg.ended?.fields;
      if (e) this.fatal(e.C ?? '57P01', e.M ?? `backend ${id} ended the session`);
      else this.fatal('57P01', `terminating connection because backend ${id} (${this.host.backendName(id)}) was lost and the session cannot move to another: ${blocker}`);
      return true;
    }
    this.dropLeg(leg);
    if (!isPrimary) {
      this.standby = undefined;
      this.log.info({ backend: id, reason: why }, 'load-balance standby lost between transactions: the session reads on the primary from now on');
      if (this.replayFrom?.backend === id) {
        this.log.info({ from: id, to: this.primary?.conn.backendId, native: false, reason: REPLAY_REASON }, 'sending the statement again');
        this.replayFrom = undefined;
      }
      // (Input waited while the lost leg's FATAL was in: see pump.)
      this.blocked = false;
      this.pump();
      return true;
    }
    this.primary = undefined;
    const now = Date.now();
    const code = leg.ended?.fields.C;
    this.move = {
      from: id,
      ended: leg.ended?.fields,
      since: now,
      deadline: now + this.host.moveWaitMs,
      // A crash (57P02), a shutdown (57P03) or a dead postmaster already says the server is going.
      backendMayServe: !leftService && code !== '57P02' && code !== '57P03' && !/postmaster/.test(why),
      connecting: false,
      timer: undefined,
    };
    this.log.info({ backend: id, reason: why, waitMs: this.host.moveWaitMs }, 'primary connection lost between transactions: the session waits for a primary to move to');
    this.tryMoveToPrimary();
    return true;
  }

  /** Gives up a leg's connection (it is dead, or its backend left service). */
  private dropLeg(leg: Leg): void {
    const c = leg.conn;
    c.onClose = undefined;
    c.afterRead = undefined;
    this.ext.forgetLeg(leg);
    this.host.pools.release(c, false, true);
  }

  /** The session waiting to move looks for a routable primary and connects to it. */
  private readonly tryMoveToPrimary = (): void => {
    const m = this.move;
    if (m === undefined || m.connecting || this.state !== 'ready') return;
    clearTimeout(m.timer);
    m.timer = undefined;
    const now = Date.now();
    if (now >= m.deadline) {
      this.log.warn({ backend: m.from, waitedMs: now - m.since }, 'no primary to move to in time: ending the session');
      this.move = undefined;
      this.fatal('57P01', `terminating connection because no primary took over from backend ${m.from} (${this.host.backendName(m.from)}) within ${this.host.moveWaitMs} ms`);
      return;
    }
    const target = this.host.pickBackends()?.primary;
    const v = judgeCheckout(this.host.gates(), target, now);
    if (target === undefined || v.action === 'wait') {
      // Routing moved away from the lost backend (or a failover holds it): it is failing.
      m.backendMayServe = false;
      m.timer = setTimeout(this.tryMoveToPrimary, Math.min(MOVE_RETRY_MS, Math.max(1, m.deadline - now)));
      return;
    }
    if (target !== m.from) m.backendMayServe = false;
    m.connecting = true;
    this.host.pools.acquire(target, this.user, this.database, this.startupParams.get('options') ?? '').then(
      (conn) => {
        m.connecting = false;
        if (this.state !== 'ready' || this.move !== m) {
          this.host.pools.release(conn, true, false);
          return;
        }
        if (target === m.from && m.backendMayServe) {
          // The server took a new connection at once: only this session's backend was ended.
          this.host.pools.release(conn, true, false);
          this.move = undefined;
          this.log.info({ backend: m.from, code: m.ended?.C, error: m.ended?.M }, 'backend ended the session while its server serves on; ending the client session with its error');
          this.fatal(m.ended?.C ?? '08006', m.ended?.M ?? `connection to backend ${m.from} (${this.host.backendName(m.from)}) was lost`);
          return;
        }
        this.moved(conn, m);
      },
      (err: Error) => {
        m.connecting = false;
        if (target === m.from) m.backendMayServe = false;
        if (this.move !== m) return;
        this.log.debug({ backend: target, reason: err.message }, 'could not connect to move the session yet; trying again');
        m.timer = setTimeout(this.tryMoveToPrimary, MOVE_RETRY_MS);
      },
    );
  };

  /** The new primary connection is in hand: re-create the session's state on it, then run what the client sent meanwhile. */
  private moved(conn: BackendConn, m: Move): void {
    this.move = undefined;
    const P = (this.primary = this.adopt(conn, 'primary'));
    P.dirty = true;
    const sets = startupSets(conn, this.startupParams);
    if (sets) {
      P.out.push(sets);
      P.expect(STARTUP_SET);
    }
    const again = replay(this.record);
    if (again !== undefined) {
      P.out.push(codec.query(again));
      P.expect(RECREATE);
    }
    const parses = this.ext.reparseAll(P);
    if (parses.length > 0) {
      P.out.push(...parses, SYNC);
      P.expect(RECREATE);
    }
    this.log.info(
      { from: m.from, to: conn.backendId, pid: conn.pid, pausedMs: Date.now() - m.since, settings: this.record.sets.size, prepared: this.record.prepared.size + parses.length, listens: this.record.listens.size },
      'session moved to a new primary connection with its state re-created',
    );
    if (this.replayFrom !== undefined) {
      this.log.info({ from: this.replayFrom.backend, to: conn.backendId, native: this.replayFrom.native, reason: REPLAY_REASON }, 'sending the statement again');
      this.replayFrom = undefined;
    }
    if (this.standby === undefined && this.host.nativeForwarding && this.sock instanceof TcpConn && conn.socket instanceof TcpConn) conn.afterRead = this.trySplice;
    this.blocked = false;
    this.flushAll();
    this.pump();
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

  // ---- online restart (src/takeover) ---------------------------------------------------------

  /**
   * The session at a safe point, for a successor process: ready, idle between transactions,
   * nothing queued, buffered, owed or being written on any connection. Its descriptors are
   * lent out (reading stops: what arrives now waits in the kernel for the successor). Then
   * the caller either hands it off (handedOff) or keeps it (resumeHere). A string says why it
   * cannot move yet.
   */
  exportState(): { state: SessionState; fds: number[] } | string {
    if (this.state !== 'ready') return `not ready (${this.state})`;
    if (this.tlsUsed) return 'a TLS session cannot move (its encryption state lives in this process)';
    if (this.move !== undefined) return 'it waits for a primary to move to';
    this.unsplice();
    const P = this.primary!;
    const S = this.standby;
    // PostgreSQL's own word (the last ReadyForQuery) decides; the predicted TxnState may lag
    // behind what native forwarding ran.
    if (this.lastStatus !== TX.Idle || P.conn.txStatus !== TX.Idle) return 'inside a transaction';
    if (!P.quiescent() || (S && !S.quiescent())) return 'a statement is running';
    if (this.reader.buffered > 0 || this.pending !== null || this.ext.open || this.blocked || this.backendFull || this.heldAsync.length > 0 || this.gateTimer !== undefined) return 'client input is being handled';
    const socks = [this.sock, P.conn.socket, ...(S ? [S.conn.socket] : [])];
    if (socks.some((c) => c.writableLength > 0)) return 'output is being written';
    if (!socks.every((c) => c instanceof TcpConn)) return 'not on lean TCP connections';
    const fds: number[] = [];
    for (const c of socks as TcpConn[]) {
      const fd = c.lend();
      if (fd < 0) {
        for (const x of (socks as TcpConn[]).slice(0, fds.length)) x.giveBack();
        return 'a write is in flight';
      }
      fds.push(fd);
    }
    const leg = (l: Leg, fd: number): BackendState => ({
      fd,
      backendId: l.conn.backendId,
      pid: l.conn.pid,
      secret: l.conn.secret,
      params: Object.fromEntries(l.conn.params),
      applied: Object.fromEntries(l.conn.applied),
      dirty: l.dirty,
      stale: [...l.stale],
    });
    return {
      fds,
      state: {
        id: this.id,
        clientFd: 0,
        user: this.user,
        database: this.database,
        startupParams: Object.fromEntries(this.startupParams),
        secret: this.secret,
        primary: leg(P, 1),
        standby: S ? leg(S, 2) : null,
        primaryOnly: this.primaryOnly,
        standbyDiverged: this.standbyDiverged,
        causal: needToWire(this.causal),
        answered: this.answered,
        statements: this.ext.exportStatements(),
        record: recordToWire(this.record),
      },
    };
  }

  /** Set while the session waits for a safe point to move to a successor process. */
  private moveWanted: ((e: { state: SessionState; fds: number[] }) => void) | undefined;

  /**
   * Online restart: hands the session to `cb` (exported) at its next safe point, now if it is
   * at one. Until then it stays on the JavaScript path, where safe points are seen.
   */
  moveAtSafePoint(cb: (e: { state: SessionState; fds: number[] }) => void): void {
    this.moveWanted = cb;
    this.tryMove();
  }

  private readonly tryMove = (): void => {
    const cb = this.moveWanted;
    if (cb === undefined) return;
    const e = this.exportState();
    if (typeof e === 'string') return;
    this.moveWanted = undefined;
    cb(e);
  };

  /** After exportState: the session stays here after all (the successor did not take it). */
  resumeHere(): void {
    (this.sock as TcpConn).giveBack();
    for (const l of [this.primary, this.standby]) (l?.conn.socket as TcpConn | undefined)?.giveBack();
    this.pump();
  }

  /** After exportState: the successor holds it. This process closes its descriptors and says nothing to anyone. */
  handedOff(): void {
    this.state = 'closed';
    for (const l of [this.primary, this.standby]) {
      if (!l) continue;
      l.conn.onClose = undefined;
      l.conn.afterRead = undefined;
      this.host.pools.handOff(l.conn);
    }
    this.primary = undefined;
    this.standby = undefined;
    this.sock.removeAllListeners('close');
    this.sock.removeAllListeners('error');
    this.sock.on('error', () => {});
    this.sock.destroy();
    this.host.unregisterSession(this);
  }

  /** A session moved in from the process this one took over from, on connections already logged in. */
  static adopt(host: SessionHost, sock: Conn, id: number, st: SessionState, pc: BackendConn, sc: BackendConn | undefined): Session {
    const s = new Session(host, sock, id, sock instanceof TcpConn, st);
    s.user = st.user;
    s.database = st.database;
    s.startupParams = new Map(Object.entries(st.startupParams));
    s.primary = s.adopt(pc, 'primary');
    if (sc) s.standby = s.adopt(sc, 'standby');
    for (const [leg, b] of [[s.primary, st.primary], [s.standby, st.standby]] as const) {
      if (!leg || !b) continue;
      leg.dirty = b.dirty;
      for (const n of b.stale) leg.stale.add(n);
    }
    s.ext.importStatements(st.statements);
    s.record = recordFromWire(st.record);
    s.primaryOnly = st.primaryOnly;
    s.standbyDiverged = st.standbyDiverged;
    s.causal = needFromWire(st.causal);
    s.answered = st.answered;
    s.secret = st.secret;
    s.reader.startupPhase = false;
    s.state = 'ready';
    if (sc === undefined && host.nativeForwarding && sock instanceof TcpConn && pc.socket instanceof TcpConn) pc.afterRead = s.trySplice;
    return s;
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
    clearTimeout(this.move?.timer);
    this.move = undefined;
    clearTimeout(this.gateTimer);
    this.gateTimer = undefined;
    const wake = this.gateWake;
    this.gateWake = undefined;
    wake?.();
    // Flush what is queued (a final ErrorResponse) and close; a client that never reads
    // what is queued gets two seconds.
    if (!this.sock.destroyed) {
      this.sock.destroySoon();
      if (this.sock.writableLength > 0) setTimeout(() => this.sock.destroy(), 2000).unref();
    }
    this.input.close(this.sock.destroyed);
    for (const leg of [this.primary, this.standby]) {
      if (!leg) continue;
      const c = leg.conn;
      c.onClose = undefined;
      c.afterRead = undefined;
      c.socket.resume();
      this.host.pools.release(c, leg.quiescent() && !this.ext.pinned, leg.dirty || leg.copyIn);
    }
    this.primary = undefined;
    this.standby = undefined;
    this.host.unregisterSession(this);
  }
}
