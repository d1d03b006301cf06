// Lean TCP connections for the proxy's hot path, straight on libuv's TCP handles.
//
// Why: per forwarded message the proxy does one read and one write, and the user CPU that
// costs in Node is mostly stream machinery: net.Socket's Readable/Writable state, a WriteWrap
// plus an afterWrite tick per write, and two heavy Socket objects per accepted client (the
// accepted one and its onread re-wrap). pgbouncer spends ~2 µs of user CPU per transaction;
// through net.Socket the proxy spent 9–11 µs, and ~150 µs per client connection
// (`npm run bench:proxy` prints both). A TcpConn is an EventEmitter over the handle: reads land
// in a caller-owned buffer and go to one callback; a write is one `writeBuffer` that libuv
// usually completes on the spot (its request object is then never used, so it is reused).
//
// This uses Node internals, checked on Node v20.20: process.binding('tcp_wrap') (TCP,
// TCPConnectWrap) and ('stream_wrap') (WriteWrap, streamBaseState) — the same
// bindings lib/net.js is built on, in the allow-list of process.binding. When they are missing
// the proxy uses net.Socket, which has the same surface (`Conn`).
import { EventEmitter } from 'node:events';
import dns from 'node:dns';
import net from 'node:net';
import { getSystemErrorName } from 'node:util';

/** What the proxy needs of a connection; net.Socket and TcpConn both have it. */
export interface Conn {
  write(b: Uint8Array): boolean;
  end(): unknown;
  end(b: Uint8Array): unknown;
  destroy(): unknown;
  destroySoon(): void;
  pause(): unknown;
  resume(): unknown;
  isPaused(): boolean;
  setNoDelay(on?: boolean): unknown;
  readonly writableLength: number;
  readonly writableNeedDrain: boolean;
  readonly destroyed: boolean;
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
  on(event: 'error', fn: (err: Error) => void): unknown;
  on(event: 'close' | 'drain' | 'connect', fn: () => void): unknown;
  /** Only net.Socket without a reader emits it (the TLS and fallback paths). */
  on(event: 'data', fn: (chunk: Buffer) => void): unknown;
  removeListener(event: 'data', fn: (chunk: Buffer) => void): unknown;
  removeAllListeners(event: string): unknown;
  once(event: 'error', fn: (err: Error) => void): unknown;
  once(event: 'close' | 'drain' | 'connect', fn: () => void): unknown;
}

/** Where a connection's reads go: `buffer()` gives the buffer for the next read (the same one
 * again while nothing holds views of the last), `read(n, buf)` gets `n` bytes read into it. */
export interface Reader {
  buffer(): Buffer;
  read(n: number, buf: Buffer): void;
}

// ---- the bindings (internal; typed as far as used here) ------------------------------------------

interface Req {
  oncomplete: ((status: number) => void) | null;
  handle?: TcpHandle;
  /** Keeps the written bytes alive while libuv holds them. */
  buffer?: Uint8Array | Uint8Array[];
}
interface ConnectReq {
  oncomplete: ((status: number) => void) | null;
  address?: string;
  port?: number;
}
interface TcpHandle {
  onread: () => Uint8Array | undefined;
  readStart(): number;
  readStop(): number;
  useUserBuffer(b: Uint8Array): void;
  writeBuffer(req: Req, b: Uint8Array): number;
  writev(req: Req, chunks: Uint8Array[], allBuffers: boolean): number;
  close(cb?: () => void): void;
  setNoDelay(on: boolean): number;
  getpeername(out: { address?: string; port?: number }): number;
  readonly fd: number;
  connect(req: ConnectReq, address: string, port: number): number;
  connect6(req: ConnectReq, address: string, port: number): number;
  open(fd: number): number;
  readonly writeQueueSize: number;
}
interface Bindings {
  TCP: new (type: number) => TcpHandle;
  TCPConnectWrap: new () => ConnectReq;
  SOCKET: number;
  WriteWrap: new () => Req;
  state: Int32Array;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
}

function loadBindings(): Bindings | undefined {
  try {
    const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
    const tcp = binding('tcp_wrap');
    const stream = binding('stream_wrap');
    const b = {
      TCP: tcp.TCP,
      TCPConnectWrap: tcp.TCPConnectWrap,
      SOCKET: (tcp.constants as { SOCKET?: unknown } | undefined)?.SOCKET,
      WriteWrap: stream.WriteWrap,
      state: stream.streamBaseState,
      kReadBytesOrError: stream.kReadBytesOrError,
      kLastWriteWasAsync: stream.kLastWriteWasAsync,
    };
    const fns = [b.TCP, b.TCPConnectWrap, b.WriteWrap];
    if (fns.some((f) => typeof f !== 'function') || !(b.state instanceof Int32Array) || typeof b.SOCKET !== 'number') return undefined;
    if (typeof b.kReadBytesOrError !== 'number' || typeof b.kLastWriteWasAsync !== 'number') return undefined;
    const proto = (b.TCP as { prototype: Record<string, unknown> }).prototype;
    for (const m of ['readStart', 'readStop', 'useUserBuffer', 'writeBuffer', 'writev', 'close', 'setNoDelay', 'getpeername', 'connect', 'connect6']) {
      if (typeof proto[m] !== 'function') return undefined;
    }
    return b as unknown as Bindings;
  } catch {
    return undefined;
  }
}

/** The handle API TcpConn is built on; undefined on a Node without it. */
const B = loadBindings();

const UV_EOF = -4095;
const HIGH_WATER = 64 * 1024;

/** "ECONNRESET" for a libuv error code (a negative errno). */
export function systemErrorName(code: number): string {
  try {
    return getSystemErrorName(code);
  } catch {
    return `errno ${code}`;
  }
}

function errnoError(code: number, syscall: string, where?: string): Error {
  const name = systemErrorName(code);
  return Object.assign(new Error(`${syscall} ${name}${where ? ` ${where}` : ''}`), { code: name, errno: code, syscall });
}

/** A server handle as net.Server keeps it (a TCP handle, or node:cluster's round-robin stand-in). */
interface ServerHandle {
  onconnection: (err: number, client?: TcpHandle) => void;
  setNoDelay?: (on: boolean) => number;
}

/**
 * Makes a listening net.Server hand its new connections to `onConnection` as TcpConns, instead
 * of making a net.Socket for each (the server keeps doing the binding, node:cluster sharing and
 * closing). Connections come with TCP_NODELAY on. False when not possible here; then the
 * server's 'connection' events stay as they are.
 */
export function takeOverAccept(server: net.Server, onConnection: (c: TcpConn) => void, onError: (err: Error) => void): boolean {
  const h = (server as unknown as { _handle?: ServerHandle | null })._handle;
  if (!B || !h || typeof h.onconnection !== 'function') return false;
  // Linux copies TCP_NODELAY from a listening socket to the sockets it accepts: set once there,
  // it saves a system call per connection. node:cluster's stand-in handle (workers) has no
  // setNoDelay: then each connection gets it.
  const inherited = typeof h.setNoDelay === 'function' && process.platform === 'linux' && h.setNoDelay(true) === 0;
  h.onconnection = (err, client) => {
    if (err !== 0 || !client) {
      onError(errnoError(err, 'accept'));
      return;
    }
    const c = new TcpConn(client as TcpHandle, true);
    if (!inherited) c.setNoDelay(true);
    onConnection(c);
  };
  return true;
}

/**
 * A connected TCP socket handed over by another process (online restart, src/takeover), as a
 * Conn this process owns. Reads start when a reader is given (start()).
 */
export function fromDescriptor(fd: number): Conn {
  if (!B) return new net.Socket({ fd, readable: true, writable: true });
  const h = new B.TCP(B.SOCKET);
  const err = h.open(fd);
  if (err !== 0) throw errnoError(err, 'open', `descriptor ${fd}`);
  return new TcpConn(h, true);
}

/** Connects to host:port (a name is looked up first). Reads start once connected. */
export function connect(host: string, port: number, reader: Reader): Conn {
  if (!B) {
    const callback = (n: number, buf: Uint8Array): boolean => {
      reader.read(n, buf as Buffer);
      return true;
    };
    return net.connect({ host, port, onread: { buffer: () => reader.buffer(), callback } });
  }
  const c = new TcpConn(new B.TCP(B.SOCKET), false);
  c.reader = reader;
  const family = net.isIP(host);
  if (family !== 0) c.connectTo(host, family, port);
  else {
    dns.lookup(host, (err, address, fam) => {
      if (err) c.fail(Object.assign(new Error(`getaddrinfo ${(err as NodeJS.ErrnoException).code ?? 'failed'} ${host}`), { code: (err as NodeJS.ErrnoException).code }));
      else c.connectTo(address, fam, port);
    });
  }
  return c;
}

/** Writes `chunks` in order, as one system call when the connection can (a TcpConn's writev). */
export function writeAll(c: Conn, chunks: Uint8Array[]): boolean {
  if (c instanceof TcpConn) return c.writev(chunks);
  const s = c as net.Socket;
  s.cork();
  let ok = true;
  for (const b of chunks) ok = s.write(b) && ok;
  s.uncork();
  return ok;
}

export class TcpConn extends EventEmitter implements Conn {
  reader: Reader | undefined;
  destroyed = false;
  private rbuf: Buffer | undefined;
  private reading = false;
  private paused = false;
  private connected: boolean;
  private pendingConnect: Uint8Array[] | undefined;
  private ending = false;
  private needDrain = false;
  /** Requests in libuv's hands (writes that did not complete at once). */
  private inflight = 0;
  /** A write request not yet given to libuv: a write that completes at once never uses it. */
  private spareReq: Req | undefined;
  private peer: { address?: string; port?: number } | undefined;
  /** Lent to native forwarding (lend()): libuv neither reads nor writes it meanwhile. */
  private lent = false;

  constructor(
    private readonly handle: TcpHandle,
    connected: boolean,
  ) {
    super();
    this.connected = connected;
    handle.onread = () => this.onread();
  }

  // ---- reading ------------------------------------------------------------------------------

  /** Starts reading (called once the reader is set; for accepted connections by the owner). */
  start(reader?: Reader): void {
    if (reader) this.reader = reader;
    if (!this.connected || this.destroyed || this.reading || this.paused || this.lent || !this.reader) return;
    if (!this.rbuf) {
      this.rbuf = this.reader.buffer();
      this.handle.useUserBuffer(this.rbuf);
    }
    const err = this.handle.readStart();
    if (err !== 0) this.fail(errnoError(err, 'read'));
    else this.reading = true;
  }

  private onread(): Uint8Array | undefined {
    const n = B!.state[B!.kReadBytesOrError]!;
    if (n > 0) {
      if (this.destroyed) return undefined;
      const buf = this.rbuf!;
      this.reader!.read(n, buf);
      if (this.destroyed) return undefined;
      const next = this.reader!.buffer();
      if (next === buf) return undefined;
      this.rbuf = next;
      return next;
    }
    if (n === 0) return undefined;
    if (n === UV_EOF) this.destroy();
    else this.fail(errnoError(n, 'read'));
    return undefined;
  }

  /** The socket's file descriptor, or -1 (not connected, closed). */
  get descriptor(): number {
    const fd = this.destroyed ? -1 : this.handle.fd;
    return typeof fd === 'number' ? fd : -1;
  }

  /**
   * Lends the descriptor to native forwarding (splice.ts): reading stops, and the caller
   * promises not to write until giveBack(). -1 when it cannot be lent: not connected, closed,
   * or a write still in libuv's hands.
   */
  lend(): number {
    if (!this.connected || this.destroyed || this.ending || this.inflight > 0 || this.lent) return -1;
    const fd = this.handle.fd;
    if (typeof fd !== 'number' || fd < 0) return -1;
    if (this.reading) {
      this.reading = false;
      this.handle.readStop();
    }
    this.lent = true;
    return fd;
  }

  /** The descriptor is back from native forwarding: reading resumes unless paused. */
  giveBack(): void {
    if (!this.lent) return;
    this.lent = false;
    this.start();
  }

  pause(): this {
    this.paused = true;
    if (this.reading && !this.destroyed) {
      this.reading = false;
      this.handle.readStop();
    }
    return this;
  }

  resume(): this {
    this.paused = false;
    this.start();
    return this;
  }

  isPaused(): boolean {
    return this.paused;
  }

  // ---- writing ------------------------------------------------------------------------------

  write(b: Uint8Array): boolean {
    if (this.destroyed || this.ending) return false;
    if (!this.connected) {
      (this.pendingConnect ??= []).push(b);
      return true;
    }
    const req = this.spareReq ?? this.newReq();
    const err = this.handle.writeBuffer(req, b);
    return this.afterWrite(req, b, err);
  }

  /** Writes several buffers with one system call where possible. */
  writev(chunks: Uint8Array[]): boolean {
    if (chunks.length === 1) return this.write(chunks[0]!);
    if (this.destroyed || this.ending) return false;
    if (!this.connected) {
      (this.pendingConnect ??= []).push(...chunks);
      return true;
    }
    const req = this.spareReq ?? this.newReq();
    const err = this.handle.writev(req, chunks, true);
    return this.afterWrite(req, chunks, err);
  }

  private newReq(): Req {
    const req = new B!.WriteWrap();
    req.handle = this.handle;
    req.oncomplete = null;
    return req;
  }

  private afterWrite(req: Req, data: Uint8Array | Uint8Array[], err: number): boolean {
    if (err !== 0) {
      this.fail(errnoError(err, 'write', this.where()));
      return false;
    }
    if (B!.state[B!.kLastWriteWasAsync] === 0) {
      this.spareReq = req;
      return true;
    }
    // libuv queued the rest: it owns this request (and reads `data`) until it completes.
    this.spareReq = undefined;
    req.buffer = data;
    req.oncomplete = (status) => this.writeDone(req, status);
    this.inflight++;
    if (this.handle.writeQueueSize >= HIGH_WATER) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  private writeDone(req: Req, status: number): void {
    req.buffer = undefined;
    this.inflight--;
    if (this.destroyed) return;
    if (status < 0) {
      this.fail(errnoError(status, 'write', this.where()));
      return;
    }
    if (this.inflight === 0) {
      if (this.ending) this.destroy();
      else if (this.needDrain) {
        this.needDrain = false;
        this.emit('drain');
      }
    }
  }

  get writableLength(): number {
    return this.destroyed || this.inflight === 0 ? 0 : this.handle.writeQueueSize;
  }

  get writableNeedDrain(): boolean {
    return this.needDrain;
  }

  setNoDelay(on = true): this {
    if (!this.destroyed) this.handle.setNoDelay(on);
    return this;
  }

  // ---- connecting ----------------------------------------------------------------------------

  /** @internal (connect()) */
  connectTo(address: string, family: number, port: number): void {
    if (this.destroyed) return;
    const req = new B!.TCPConnectWrap();
    req.address = address;
    req.port = port;
    req.oncomplete = (status) => {
      if (this.destroyed) return;
      if (status !== 0) {
        this.fail(errnoError(status, 'connect', `${address}:${port}`));
        return;
      }
      this.connected = true;
      const queued = this.pendingConnect;
      this.pendingConnect = undefined;
      this.emit('connect');
      if (queued && !this.destroyed) this.writev(queued);
      this.start();
    };
    const err = family === 6 ? this.handle.connect6(req, address, port) : this.handle.connect(req, address, port);
    if (err !== 0) this.fail(errnoError(err, 'connect', `${address}:${port}`));
  }

  // ---- ending --------------------------------------------------------------------------------

  /**
   * Writes `b` (if given), then closes once libuv has handed everything to the kernel. (No
   * shutdown(2) first: the kernel sends what it holds before its FIN either way, and net's
   * shutdown-then-close sends a RST for unread input just the same.)
   */
  end(b?: Uint8Array): this {
    if (this.destroyed || this.ending) return this;
    if (b) this.write(b);
    if (this.destroyed) return this;
    this.ending = true;
    if (!this.connected || this.inflight === 0) this.destroy();
    return this;
  }

  destroySoon(): void {
    this.end();
  }

  /** Closes the connection now; 'close' follows (asynchronously, as with net.Socket). */
  destroy(): this {
    this.close(undefined);
    return this;
  }

  /** @internal Ends the connection with an error: 'error' (when listened to), then 'close'. */
  fail(err: Error): void {
    if (!this.destroyed) this.peerInfo(); // for the owner's log line about it
    this.close(err);
  }

  private close(err: Error | undefined): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.reading = false;
    // (handle.onread stays: the handle's setter accepts only a function, and after close()
    // libuv makes no more read callbacks.)
    this.handle.close(() => {
      if (err && this.listenerCount('error') > 0) this.emit('error', err);
      this.emit('close');
    });
    this.rbuf = undefined;
  }

  // ---- peer ----------------------------------------------------------------------------------

  private peerInfo(): { address?: string; port?: number } {
    if (!this.peer) {
      const out: { address?: string; port?: number } = {};
      if (!this.destroyed && this.handle.getpeername(out) !== 0) return {};
      this.peer = out;
    }
    return this.peer;
  }

  get remoteAddress(): string | undefined {
    return this.peerInfo().address;
  }

  get remotePort(): number | undefined {
    return this.peerInfo().port;
  }

  private where(): string {
    const p = this.peerInfo();
    return p.address ? `${p.address}:${p.port}` : '';
  }
}
