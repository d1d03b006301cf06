// The watchdog's links between peers: each peer listens on its own `watchdog.peers[]`
// host/port (WebSocket, or wss with `watchdog.tls`) and keeps one authenticated connection
// to every other peer. Of each pair the peer with the smaller name dials and the other
// accepts, so a pair has one connection; the dialer redials with backoff and jitter.
//
// Mutual authentication, before a connection carries anything else (the key never crosses
// the wire; both sides contribute a fresh nonce, so a recorded handshake is worthless on any
// other connection):
//   acceptor → dialer   challenge { peer: A, nonce: nA }
//   dialer   → acceptor hello     { peer: D, nonce: nD, mac: HMAC(key, "hello", D, A, nA, nD) }
//   acceptor → dialer   welcome   { peer: A, mac: HMAC(key, "welcome", A, D, nD, nA) }
// The labels make a welcome useless as a hello (no reflection), and each side checks the
// other's name is the one it expects.
//
// A dead connection (a host that hangs, a cable that is cut) is noticed by ws ping/pong:
// a link silent for four ping intervals is terminated and, on the dialing side, redialled.
// Bad input (garbage on the port, a failed handshake, a malformed or
// oversized message) is dropped and logged once per remote address and reason; the peer
// keeps serving. This module knows nothing of Raft: it moves Envelopes.
import { EventEmitter } from 'node:events';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { Logger } from '../log.js';
import { decodeEnvelope, decodeHandshake, encode, MAX_MESSAGE_BYTES, WIRE_VERSION, WireError, type Envelope } from './wire.js';

export interface PeerAddress {
  name: string;
  host: string;
  port: number;
}

export interface TransportTls {
  cert_file: string;
  key_file: string;
  ca_file?: string;
}

export interface TransportEvents {
  /** An authenticated peer message; `env.from` is the authenticated sender. */
  message: [env: Envelope];
  /** A link to `peer` is authenticated and usable. */
  up: [peer: string];
  /** The link to `peer` is gone. */
  down: [peer: string];
}

/** What the layers above (Raft runtime, gossip) use; the fault-injecting wrapper implements it too. */
export interface PeerTransport extends EventEmitter<TransportEvents> {
  readonly self: string;
  /** Sends to one peer; false when there is no usable link (the message is dropped: callers cope with loss). */
  send(to: string, env: Envelope): boolean;
  /** Peers with an authenticated link now. */
  connected(): string[];
  close(): Promise<void>;
}

export interface TransportOptions {
  self: string;
  /** Every peer of the cluster, this one included. */
  peers: PeerAddress[];
  authKey: string;
  tls?: TransportTls;
  logger: Logger;
  /** ws ping period; a link silent for four periods (two unanswered pings) is dropped (default 250). */
  pingIntervalMs?: number;
  /** A connection must finish the handshake within this (default 5000). */
  handshakeTimeoutMs?: number;
  /** Redial delays: full jitter over min(maxMs, minMs * 2^attempt) (defaults 100, 1000). A
   * peer that starts is linked only when the others redial it, so maxMs is how long it may
   * stay out of the tally after it listens; a refused dial a second is cheap. */
  backoff?: { minMs: number; maxMs: number };
}

/** Stop sending to a peer whose socket has this much unsent (it is not reading; Raft resends). */
const MAX_BUFFERED = 8 * 1024 * 1024;
/** Remember complaints about at most this many remote addresses (garbage from many sources must not grow memory). */
const MAX_COMPLAINT_ADDRS = 1024;

function mac(key: string, ...parts: string[]): string {
  return createHmac('sha256', key).update(['pgwatchdog-auth-v1', ...parts].join('\0')).digest('base64');
}

function sameMac(a: string, b: string): boolean {
  const x = Buffer.from(a, 'base64');
  const y = Buffer.from(b, 'base64');
  return x.length === y.length && timingSafeEqual(x, y);
}

const nonce = () => randomBytes(32).toString('base64');

interface Link {
  peer: string;
  ws: WebSocket;
  remote: string;
  alive: boolean;
  missed: number;
}

export class WsTransport extends EventEmitter<TransportEvents> implements PeerTransport {
  readonly self: string;
  private readonly opts: Required<Omit<TransportOptions, 'tls'>> & Pick<TransportOptions, 'tls'>;
  private readonly log: Logger;
  private readonly byName: Map<string, PeerAddress>;
  private readonly links = new Map<string, Link>();
  private readonly pending = new Set<WebSocket>();
  private readonly dialTimers = new Map<string, NodeJS.Timeout>();
  private readonly attempts = new Map<string, number>();
  private readonly complaints = new Map<string, Set<string>>();
  private server: http.Server | https.Server | undefined;
  private wss: WebSocketServer | undefined;
  private pinger: NodeJS.Timeout | undefined;
  private ca: Buffer | undefined;
  private closed = false;

  constructor(opts: TransportOptions) {
    super();
    this.opts = { pingIntervalMs: 250, handshakeTimeoutMs: 5000, backoff: { minMs: 100, maxMs: 1000 }, ...opts };
    this.self = opts.self;
    this.log = opts.logger;
    this.byName = new Map(opts.peers.map((p) => [p.name, p]));
    if (!this.byName.has(opts.self)) throw new Error(`transport: ${opts.self} is not one of the peers (${opts.peers.map((p) => p.name).join(', ')})`);
    if (!opts.authKey) throw new Error('transport: watchdog.auth_key is required with two or more peers');
  }

  /** Listens on this peer's address and starts dialling; resolves once listening. */
  async start(): Promise<AddressInfo> {
    const me = this.byName.get(this.self)!;
    const tls = this.opts.tls;
    if (tls?.ca_file) this.ca = readFileSync(tls.ca_file);
    const server = (this.server = tls ? https.createServer({ cert: readFileSync(tls.cert_file), key: readFileSync(tls.key_file) }) : http.createServer());
    // Anything that is not a WebSocket upgrade gets a 426 and nothing else.
    server.on('request', (req, res) => {
      this.complain(req.socket.remoteAddress, 'not a WebSocket upgrade', `${req.method} ${req.url}`);
      res.writeHead(426, { connection: 'close' }).end();
    });
    server.on('clientError', (err, socket) => {
      this.complain((socket as import('node:net').Socket).remoteAddress, 'garbage on the watchdog port', (err as Error).message);
      socket.destroy();
    });
    server.on('tlsClientError', (err, socket) => this.complain(socket.remoteAddress, 'TLS handshake failed', err.message));
    // A little over the message limit so that an oversized message is read and refused by
    // wire.ts with a reason instead of killing the connection.
    this.wss = new WebSocketServer({ server, maxPayload: MAX_MESSAGE_BYTES + 1024, autoPong: false });
    this.wss.on('connection', (ws, req) => this.accept(ws, req.socket.remoteAddress ?? 'unknown'));
    this.wss.on('error', (err) => this.log.error({ err }, 'watchdog listener error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`watchdog: cannot listen on ${me.host}:${me.port}: ${err.message}`)));
      server.listen(me.port, me.host, () => resolve());
    });
    server.on('error', (err) => this.log.error({ err }, 'watchdog listener error'));
    this.pinger = setInterval(() => this.pingAll(), this.opts.pingIntervalMs);
    this.pinger.unref();
    for (const p of this.byName.values()) if (p.name > this.self) this.dial(p);
    const addr = server.address() as AddressInfo;
    this.log.info({ host: addr.address, port: addr.port, tls: tls !== undefined, dials: [...this.byName.keys()].filter((n) => n > this.self) }, 'watchdog transport listening');
    return addr;
  }

  send(to: string, env: Envelope): boolean {
    const l = this.links.get(to);
    if (!l || l.ws.readyState !== WebSocket.OPEN || l.ws.bufferedAmount > MAX_BUFFERED) return false;
    let text: string;
    try {
      text = encode(env);
    } catch (err) {
      this.log.error({ err, to, kind: env.kind }, 'watchdog message not sent');
      return false;
    }
    l.ws.send(text);
    return true;
  }

  connected(): string[] {
    return [...this.links.keys()];
  }

  /**
   * Fault injection only (fault-transport.ts): links to peers for which `muted` is true carry
   * nothing either way, pings and pongs included, as in a partition that loses packets; so
   * both sides drop them after four silent ping periods, as they would a real one.
   */
  mute(muted: (peer: string) => boolean): void {
    this.muted = muted;
  }

  private muted: (peer: string) => boolean = () => false;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pinger);
    for (const t of this.dialTimers.values()) clearTimeout(t);
    this.dialTimers.clear();
    for (const ws of this.pending) ws.terminate();
    for (const l of this.links.values()) l.ws.close(1001, 'peer shutting down');
    this.links.clear();
    if (this.wss) await new Promise<void>((r) => this.wss!.close(() => r()));
    if (this.server) {
      this.server.closeAllConnections?.();
      await new Promise<void>((r) => this.server!.close(() => r()));
    }
  }

  // ---- accepting side --------------------------------------------------------------------

  private accept(ws: WebSocket, remote: string): void {
    if (this.closed) return void ws.terminate();
    this.pending.add(ws);
    const nA = nonce();
    const refuse = (reason: string, detail?: string) => {
      this.complain(remote, reason, detail);
      ws.close(1008, reason);
      setTimeout(() => ws.terminate(), 1000).unref();
    };
    const timer = setTimeout(() => refuse('handshake timed out'), this.opts.handshakeTimeoutMs);
    ws.on('close', () => {
      clearTimeout(timer);
      this.pending.delete(ws);
    });
    ws.on('error', (err) => this.complain(remote, 'socket error', err.message));
    ws.send(encode({ v: WIRE_VERSION, kind: 'challenge', peer: this.self, nonce: nA }));
    ws.once('message', (data: RawData) => {
      clearTimeout(timer);
      let hello;
      try {
        hello = decodeHandshake(asBuffer(data), 'hello');
      } catch (err) {
        return refuse(err instanceof WireError ? err.reason : 'malformed hello', (err as Error).message);
      }
      if (!this.byName.has(hello.peer) || hello.peer === this.self) return refuse('unknown peer', `"${hello.peer}" is not one of watchdog.peers`);
      if (!sameMac(hello.mac, mac(this.opts.authKey, 'hello', hello.peer, this.self, nA, hello.nonce))) {
        return refuse('authentication failed', `peer "${hello.peer}": wrong auth_key, or a replayed or forged handshake`);
      }
      ws.send(encode({ v: WIRE_VERSION, kind: 'welcome', peer: this.self, mac: mac(this.opts.authKey, 'welcome', this.self, hello.peer, hello.nonce, nA) }));
      this.pending.delete(ws);
      this.adopt(hello.peer, ws, remote);
    });
  }

  // ---- dialling side ---------------------------------------------------------------------

  private dial(p: PeerAddress): void {
    if (this.closed) return;
    const scheme = this.opts.tls ? 'wss' : 'ws';
    const remote = `${p.host}:${p.port}`;
    const ws = new WebSocket(`${scheme}://${p.host.includes(':') ? `[${p.host}]` : p.host}:${p.port}/`, {
      maxPayload: MAX_MESSAGE_BYTES + 1024,
      autoPong: false, // answered in adopt(), unless the peer is muted
      handshakeTimeout: this.opts.handshakeTimeoutMs,
      ...(this.ca ? { ca: this.ca } : {}),
    });
    this.pending.add(ws);
    let adopted = false;
    const nD = nonce();
    const fail = (reason: string, detail?: string) => {
      this.complain(remote, reason, detail);
      ws.terminate();
    };
    const timer = setTimeout(() => fail('handshake timed out'), this.opts.handshakeTimeoutMs);
    ws.on('error', (err) => {
      // Refused connections are the normal state of a peer that is down: debug, not a complaint.
      this.log.debug({ peer: p.name, remote, err: err.message }, 'watchdog dial failed');
    });
    ws.on('close', () => {
      clearTimeout(timer);
      this.pending.delete(ws);
      if (!adopted) this.redial(p);
    });
    let step: 'challenge' | 'welcome' = 'challenge';
    let nA = '';
    const onHandshake = (data: RawData) => {
      try {
        if (step === 'challenge') {
          const c = decodeHandshake(asBuffer(data), 'challenge');
          if (c.peer !== p.name) return fail('unexpected peer', `dialled "${p.name}" at ${remote}, it says it is "${c.peer}"`);
          nA = c.nonce;
          step = 'welcome';
          ws.send(encode({ v: WIRE_VERSION, kind: 'hello', peer: this.self, nonce: nD, mac: mac(this.opts.authKey, 'hello', this.self, p.name, nA, nD) }));
          return;
        }
        const w = decodeHandshake(asBuffer(data), 'welcome');
        if (w.peer !== p.name || !sameMac(w.mac, mac(this.opts.authKey, 'welcome', p.name, this.self, nD, nA))) {
          return fail('authentication failed', `peer "${p.name}": wrong auth_key, or a replayed or forged welcome`);
        }
      } catch (err) {
        return fail(err instanceof WireError ? err.reason : 'bad handshake', (err as Error).message);
      }
      clearTimeout(timer);
      ws.off('message', onHandshake);
      this.pending.delete(ws);
      adopted = true;
      this.attempts.delete(p.name);
      ws.on('close', () => this.redial(p));
      this.adopt(p.name, ws, remote);
    };
    ws.on('message', onHandshake);
  }

  private redial(p: PeerAddress): void {
    if (this.closed || this.dialTimers.has(p.name)) return;
    const n = this.attempts.get(p.name) ?? 0;
    this.attempts.set(p.name, n + 1);
    const { minMs, maxMs } = this.opts.backoff;
    // Full jitter: peers that lost each other at once do not redial in lockstep.
    const delay = minMs + Math.random() * Math.min(maxMs - minMs, minMs * 2 ** n);
    const t = setTimeout(() => {
      this.dialTimers.delete(p.name);
      this.dial(p);
    }, delay);
    t.unref();
    this.dialTimers.set(p.name, t);
  }

  // ---- authenticated links ---------------------------------------------------------------

  private adopt(peer: string, ws: WebSocket, remote: string): void {
    const old = this.links.get(peer);
    if (old) {
      // The peer came back before we noticed the old link die: the new one wins.
      this.links.delete(peer);
      old.ws.terminate();
      this.emit('down', peer);
    }
    const link: Link = { peer, ws, remote, alive: true, missed: 0 };
    this.links.set(peer, link);
    // A ping from the other side proves it alive as well as a pong does: on a quiet link one
    // side's pings then keep both sides from pinging.
    ws.on('pong', () => {
      if (!this.muted(peer)) link.alive = true;
    });
    ws.on('ping', (data: Buffer) => {
      if (this.muted(peer)) return;
      link.alive = true;
      if (ws.readyState === WebSocket.OPEN) ws.pong(data);
    });
    ws.on('message', (data: RawData) => {
      if (this.muted(peer)) return;
      link.alive = true;
      let env: Envelope;
      try {
        env = decodeEnvelope(asBuffer(data));
      } catch (err) {
        return this.complain(remote, err instanceof WireError ? err.reason : 'bad message', `from peer "${peer}": ${(err as Error).message}`);
      }
      if (env.from !== peer || (env.kind === 'raft' && (env.body.from !== peer || env.body.to !== this.self))) {
        return this.complain(remote, 'misaddressed message', `link of "${peer}" carried a ${env.kind} from "${env.from}"`);
      }
      this.emit('message', env);
    });
    ws.on('close', () => {
      if (this.links.get(peer) === link) {
        this.links.delete(peer);
        this.log.info({ peer, remote }, 'watchdog link down');
        this.emit('down', peer);
      }
    });
    this.log.info({ peer, remote }, 'watchdog link up');
    this.emit('up', peer);
  }

  /**
   * Every period: a link that carried anything since the last round is alive and costs
   * nothing more (Raft heartbeats and gossip are traffic enough). One silent period is let
   * pass (a leader's heartbeats come every 300 ms, so a 250 ms period often sees none, and a
   * ping then would be wasted); from the second silent period on the link is pinged, and it
   * is dropped after four silent periods, as before: the pings only make sure a live but
   * quiet peer (two followers exchange nothing but gossip) has something to answer in time.
   */
  private pingAll(): void {
    for (const l of this.links.values()) {
      if (l.alive) {
        l.alive = false;
        l.missed = 0;
        continue;
      }
      if (++l.missed > 3) {
        this.log.warn({ peer: l.peer, remote: l.remote, silentMs: 4 * this.opts.pingIntervalMs }, 'watchdog link silent: dropping it');
        l.ws.terminate();
        continue;
      }
      if (l.missed >= 2 && l.ws.readyState === WebSocket.OPEN) l.ws.ping();
    }
  }

  /** Logs bad input once per remote address and reason (later ones at debug). */
  private complain(addr: string | undefined, reason: string, detail?: string): void {
    const key = addr ?? 'unknown';
    let seen = this.complaints.get(key);
    if (!seen) {
      if (this.complaints.size >= MAX_COMPLAINT_ADDRS) this.complaints.delete(this.complaints.keys().next().value!);
      this.complaints.set(key, (seen = new Set()));
    }
    if (seen.has(reason)) {
      this.log.debug({ remote: key, reason, detail }, 'watchdog input dropped');
      return;
    }
    seen.add(reason);
    this.log.warn({ remote: key, reason, detail }, 'watchdog input dropped (logged once per address and reason)');
  }
}

function asBuffer(data: RawData): Buffer {
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
}
