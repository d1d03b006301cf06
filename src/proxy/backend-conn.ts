// One authenticated connection from the proxy to a PostgreSQL backend. It logs in as the
// session's user (startup packet, then cleartext/md5/SCRAM as the server asks), records the
// server's ParameterStatus values and BackendKeyData, and then hands its byte stream to
// whoever owns it (a client session or the pool) through a swappable ScanSink.
import { BackendScanner, type ScanSink } from '../protocol/backend-scanner.js';
import * as codec from '../protocol/codec.js';
import { BE, TX } from '../protocol/messages.js';
import { md5Response } from '../protocol/md5.js';
import { ScramClient, type ScramPassThrough } from '../protocol/scram.js';
import { connect as tcpConnect, TcpConn, type Conn } from './tcp.js';

export interface BackendLogin {
  backendId: number;
  host: string;
  port: number;
  user: string;
  database: string;
  /** The startup `options` (e.g. "-c work_mem=64MB"); part of the pool key. */
  options: string;
  /** Plain password, or undefined. */
  password?: string;
  /** Stored md5 hash ('md5…'): enough for md5 logins. */
  md5?: string;
  /** SCRAM pass-through: the users file's secret and the ClientKey a client proved. */
  scram?: ScramPassThrough;
  connectTimeoutMs: number;
}

const WANT = new Uint8Array(256);
for (const t of [BE.ReadyForQuery, BE.ParameterStatus, BE.ErrorResponse, BE.BackendKeyData, BE.Authentication, BE.NotificationResponse, BE.CopyInResponse, BE.CopyOutResponse, BE.CopyBothResponse]) WANT[t] = 1;

export class BackendError extends Error {
  constructor(
    message: string,
    readonly backendId: number,
    readonly fields?: Record<string, string>,
  ) {
    super(message);
    this.name = 'BackendError';
  }
}

const noopOut = (): void => {};
const READ_BUFFER = 64 * 1024;
const SMALL_READ_BUFFER = 2048;

export class BackendConn {
  readonly scanner = new BackendScanner(WANT);
  pid = 0;
  secret = 0;
  readonly params = new Map<string, string>();
  /** Transaction status from the last ReadyForQuery: 'I', 'T' or 'E' as a byte. */
  txStatus: number = TX.Idle;
  sink: ScanSink;
  out: (b: Buffer) => void = noopOut;
  /** Called once when the socket closes or fails; `err` is set for failures. */
  onClose: ((err?: Error) => void) | undefined;
  closed = false;
  idleSince = 0;
  private statusCache: Buffer | undefined;

  /** Records a ParameterStatus value (invalidates the encoded block). */
  /** A ParameterStatus message's body (buf[s..e]): records the server's new value. */
  onParameterStatus(buf: Buffer, s: number, e: number): void {
    const k = codec.readCString(buf, s, e);
    const v = k && codec.readCString(buf, k[1], e);
    if (k && v) this.setParam(k[0], v[0]);
  }

  setParam(name: string, value: string): void {
    if (this.params.get(name) === value) return;
    this.params.set(name, value);
    this.statusCache = undefined;
  }

  /** The server's name for a parameter a client spelt in another case, if reported. */
  canonicalParam(name: string): string | undefined {
    if (this.params.has(name)) return name;
    const lower = name.toLowerCase();
    for (const k of this.params.keys()) if (k.toLowerCase() === lower) return k;
    return undefined;
  }

  /** Every ParameterStatus message for the current values, encoded once and reused per session. */
  statusBlock(): Buffer {
    return (this.statusCache ??= encodeParameterStatus(this.params));
  }

  /** Startup parameters a session SET on this connection (cleared by the reset query). */
  readonly applied = new Map<string, string>();
  /** The pool key (user, database, startup options): a pooled connection serves only sessions with the same key. */
  readonly key: string;

  private constructor(
    readonly socket: Conn,
    readonly login: BackendLogin,
    sink: ScanSink,
  ) {
    this.sink = sink;
    this.key = poolKey(login.user, login.database, login.options);
    socket.on('error', (err) => this.fail(new BackendError(`backend ${login.backendId} (${login.host}:${login.port}): ${err.message}`, login.backendId)));
    socket.on('close', () => this.fail());
  }

  // Reads land in one reused buffer (see tcp.ts), bypassing the stream machinery and a
  // Buffer allocation per read. Forwarded views of it may still sit in the client socket's
  // write queue, so the buffer is replaced whenever the owner says it may be retained.
  // It starts small (from Node's shared pool) and becomes 64 KiB the first time a read fills
  // it: a connection that sits idle in the pool, or that an online restart adopts with a
  // thousand others, then holds no 64 KiB of its own (each one an ArrayBuffer of its own that
  // V8 counts towards its next full collection).
  private rbuf: Buffer | undefined;
  private readSize = SMALL_READ_BUFFER;
  /** Set by the owner: called after each read has been scanned. */
  afterRead: (() => void) | undefined = undefined;
  /** Set by the owner: true when views of the last read may still be referenced. */
  retains: () => boolean = () => false;

  readonly nextReadBuffer = (): Buffer => {
    if (this.rbuf === undefined || this.rbuf.length < this.readSize || this.retains()) this.rbuf = Buffer.allocUnsafe(this.readSize);
    return this.rbuf;
  };

  readonly onRead = (n: number, buf: Buffer): void => {
    if (n === buf.length) this.readSize = READ_BUFFER;
    try {
      this.scanner.feed(buf.subarray(0, n), this.sink, this.out);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    const after = this.afterRead;
    if (after !== undefined) after();
  };

  get backendId(): number {
    return this.login.backendId;
  }

  private fail(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
    const cb = this.onClose;
    this.onClose = undefined;
    cb?.(err);
  }

  write(b: Buffer): boolean {
    return this.socket.write(b);
  }

  /** Ends the connection politely (Terminate) and forgets it. */
  terminate(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose = undefined;
    this.socket.end(codec.terminate());
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose = undefined;
    this.socket.destroy();
  }

  /**
   * A logged-in connection handed over by another process with its session (online restart,
   * src/takeover): what that process knew of it comes along. Reads start at once.
   */
  static adopt(socket: Conn, login: BackendLogin, known: { pid: number; secret: number; params: Record<string, string>; applied: Record<string, string> }): BackendConn {
    const conn = new BackendConn(socket, login, { onHeader: () => false, onMessage: () => {} });
    conn.pid = known.pid;
    conn.secret = known.secret;
    for (const [k, v] of Object.entries(known.params)) conn.setParam(k, v);
    for (const [k, v] of Object.entries(known.applied)) conn.applied.set(k, v);
    if (socket instanceof TcpConn) socket.start({ buffer: conn.nextReadBuffer, read: conn.onRead });
    else socket.on('data', (b: Buffer) => conn.onRead(b.length, b));
    return conn;
  }

  /** Connects and logs in; rejects with a BackendError carrying the server's error fields. */
  static connect(login: BackendLogin): Promise<BackendConn> {
    return new Promise((resolve, reject) => {
      const where = `backend ${login.backendId} (${login.host}:${login.port})`;
      // The reader needs the connection's callbacks before the connection exists: bound below.
      const target: { conn?: BackendConn } = {};
      const socket = tcpConnect(login.host, login.port, {
        buffer: () => target.conn?.nextReadBuffer() ?? Buffer.allocUnsafe(READ_BUFFER),
        read: (n, buf) => target.conn?.onRead(n, buf),
      });
      let settled = false;
      const done = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          conn.destroy();
          socket.destroy();
          reject(err);
        } else {
          conn.onClose = undefined;
          resolve(conn);
        }
      };
      const timer = setTimeout(() => done(new BackendError(`${where}: connect and login timed out after ${login.connectTimeoutMs} ms`, login.backendId)), login.connectTimeoutMs);
      let scram: ScramClient | undefined;
      const sink: ScanSink = {
        onHeader: () => false,
        onMessage: (type, buf, s, e) => {
          if (settled) return;
          try {
            if (type === BE.Authentication) {
              const code = buf.readInt32BE(s);
              if (code === 0) return;
              if (code === 3) {
                if (login.password === undefined) throw new BackendError(`${where} asks for a password for user "${login.user}" and the users file has no plain password for it`, login.backendId);
                socket.write(codec.passwordMessage(login.password));
              } else if (code === 5) {
                const secret = login.password ?? login.md5;
                if (secret === undefined) throw new BackendError(`${where} asks for an md5 password for user "${login.user}" and the users file has neither a password nor an md5 hash for it`, login.backendId);
                socket.write(codec.passwordMessage(md5Response(login.user, secret, Buffer.from(buf.subarray(s + 4, s + 8)))));
              } else if (code === 10) {
                const mechs = buf.toString('utf8', s + 4, e).split('\0').filter(Boolean);
                if (!mechs.includes('SCRAM-SHA-256')) throw new BackendError(`${where} offers SASL mechanisms ${mechs.join(', ')}, none supported`, login.backendId);
                const credential = login.password ?? login.scram;
                if (credential === undefined) {
                  throw new BackendError(
                    `${where} asks for SCRAM authentication for user "${login.user}" and the users file has no plain password for it (with only a SCRAM secret, a client must first log in with SCRAM so the proxy learns its key)`,
                    login.backendId,
                  );
                }
                scram = new ScramClient(login.user, credential);
                socket.write(codec.saslInitialResponse('SCRAM-SHA-256', scram.first()));
              } else if (code === 11) {
                if (!scram) throw new BackendError(`${where}: SASLContinue without SASL`, login.backendId);
                socket.write(codec.saslResponse(scram.final(buf.toString('utf8', s + 4, e))));
              } else if (code === 12) {
                if (!scram || !scram.verify(buf.toString('utf8', s + 4, e))) throw new BackendError(`${where}: the server's SCRAM signature is wrong (not the server we expected)`, login.backendId);
              } else {
                throw new BackendError(`${where} asks for authentication method ${code}, not supported (use trust, password, md5 or scram-sha-256)`, login.backendId);
              }
            } else if (type === BE.ParameterStatus) {
              conn.onParameterStatus(buf, s, e);
            } else if (type === BE.BackendKeyData) {
              conn.pid = buf.readInt32BE(s);
              conn.secret = buf.readInt32BE(s + 4);
            } else if (type === BE.ReadyForQuery) {
              conn.txStatus = buf[s]!;
              done();
            } else if (type === BE.ErrorResponse) {
              const f = codec.parseErrorFields(buf.subarray(s, e));
              done(new BackendError(`${where} refused login of user "${login.user}" to database "${login.database}": ${f.M ?? 'error'}`, login.backendId, f));
            }
          } catch (err) {
            done(err instanceof BackendError ? err : new BackendError(`${where}: ${(err as Error).message}`, login.backendId));
          }
        },
      };
      const conn: BackendConn = new BackendConn(socket, login, sink);
      target.conn = conn;
      conn.onClose = (err) => done(err ?? new BackendError(`${where} closed the connection during login`, login.backendId));
      socket.once('connect', () => {
        socket.setNoDelay(true);
        const params: Record<string, string> = { user: login.user, database: login.database };
        if (login.options) params.options = login.options;
        socket.write(codec.startupMessage(params));
      });
    });
  }
}

export function encodeParameterStatus(params: ReadonlyMap<string, string>): Buffer {
  const w = new codec.Writer(512);
  for (const [k, v] of params) w.begin('S').cstr(k).cstr(v).end();
  return Buffer.from(w.done());
}

export function poolKey(user: string, database: string, options: string): string {
  return `${user}\0${database}\0${options}`;
}
