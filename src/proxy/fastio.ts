// Fast reads for accepted client sockets.
//
// Why: on the proxy's hot path every client request costs one read, and Node's stream read
// path (Readable.push → 'data' → listener, plus a fresh Buffer per read) is a measurable share
// of the proxy's user CPU per transaction (see scripts/bench-proxy.ts --peer-prof). Node's
// `onread` option (a user buffer and a callback, no stream machinery) is public only for
// sockets the program creates (net.connect, new net.Socket), not for sockets a net.Server
// accepts. So an accepted socket (listening with `pauseOnConnect`, so it has not started
// reading) is re-wrapped: its TCP handle is handed to a new net.Socket created with `onread`.
//
// This relies on Node internals, checked on Node v20.20 (lib/net.js):
//   - `socket._handle` is the libuv TCP wrap (readStart/readStop/useUserBuffer/getpeername);
//   - `new net.Socket({ handle, onread })` adopts that handle (options.handle, used by
//     node:cluster and child_process) and reads into the user buffer;
//   - `socket._server` is what Socket#_destroy decrements server._connections through, so
//     server.close() still waits for re-wrapped sockets.
// Everything is feature-detected; when anything is missing the caller keeps the accepted
// socket and the public 'data' path. TLS sockets never come here (the handle is wrapped by
// TLSWrap; the session keeps the public path whenever TLS is configured).
import net from 'node:net';

interface HandleLike {
  readStart: unknown;
  readStop: unknown;
  useUserBuffer: unknown;
  getpeername: unknown;
}

interface SocketInternals {
  _handle: HandleLike | null;
  _server: net.Server | null;
  server?: net.Server | null;
}

export interface OnRead {
  /** A buffer for the next read (may return the same one while nothing retains views of it). */
  buffer: () => Buffer;
  /** `n` bytes were read into `buf`. */
  callback: (n: number, buf: Buffer) => void;
}

function usableHandle(h: unknown): h is HandleLike {
  if (h === null || typeof h !== 'object') return false;
  const o = h as HandleLike;
  return typeof o.readStart === 'function' && typeof o.readStop === 'function' && typeof o.useUserBuffer === 'function' && typeof o.getpeername === 'function';
}

/**
 * A socket reading through `onread` in place of `accepted` (which must come from a server
 * created with `pauseOnConnect: true` and not be read from yet), or undefined when this Node
 * does not have the internals it needs (then use `accepted` as is, after `resume()`).
 */
export function rewrapWithOnread(accepted: net.Socket, onread: OnRead): net.Socket | undefined {
  const a = accepted as unknown as SocketInternals;
  if (!('_server' in a) || !usableHandle(a._handle) || accepted.readableFlowing === true) return undefined;
  const handle = a._handle;
  const server = a._server;
  // The accepted socket lets go of the handle first, so nothing it does later touches it.
  a._handle = null;
  const s = new net.Socket({ handle, onread: { buffer: onread.buffer, callback: (n: number, buf: Uint8Array) => onread.callback(n, buf as Buffer) } } as net.SocketConstructorOpts);
  const si = s as unknown as SocketInternals;
  if (si._handle !== handle) {
    // Not adopted (internals changed): give the handle back and use the public path.
    a._handle = handle;
    s.destroy();
    return undefined;
  }
  si._server = server;
  si.server = server;
  return s;
}
