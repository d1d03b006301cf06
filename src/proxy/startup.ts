// How a client session starts: the startup handshake (SSLRequest → TLS or 'N', GSSENCRequest
// → 'N', CancelRequest, protocol version, the startup packet), client authentication, and the
// first checkout of backend connections (the primary and, with load balancing, a standby),
// with the SETs that give a pooled connection the client's startup parameters.
import net from 'node:net';
import tls from 'node:tls';
import * as codec from '../protocol/codec.js';
import { ProtocolViolation } from '../protocol/frame-reader.js';
import { FE } from '../protocol/messages.js';
import type { Logger } from '../log.js';
import type { BackendConn } from './backend-conn.js';
import { authenticateClient } from './client-auth.js';
import type { Pools } from './pool.js';
import type { UserSecret } from './userlist.js';

/** What the handshake needs of the proxy. */
export interface StartupHost {
  readonly authMethod: 'trust' | 'md5' | 'scram-sha-256';
  readonly users: ReadonlyMap<string, UserSecret> | undefined;
  readonly tlsContext: tls.SecureContext | undefined;
  cancel(pid: number, secret: number): void;
  tooManyClients(): boolean;
  /** A client proved this ClientKey for `user` (SCRAM): backend logins may use it. */
  rememberScramKey(user: string, clientKey: Buffer): void;
}

/** The client connection as the handshake drives it. */
export interface StartupIO {
  /** The next whole message from the client. */
  next(): Promise<Buffer>;
  write(b: Buffer): void;
  /** Bytes the client sent that no message has consumed yet. */
  readonly buffered: number;
  /** Answers 'S' and continues the session over TLS. */
  upgradeTls(ctx: tls.SecureContext): Promise<void>;
  /** The startup packet is in: from here on messages carry a type byte. */
  startupDone(): void;
}

export interface ClientStart {
  user: string;
  database: string;
  /** The startup packet's parameters (user, database, options, application_name …). */
  params: Map<string, string>;
}

/** The answer to SSLRequest/GSSENCRequest when the proxy does not encrypt. */
const NO = Buffer.from('N');
const YES = Buffer.from('S');

/** Startup-packet keys that are not server settings. */
export function isProtocolParam(k: string): boolean {
  return k === 'user' || k === 'database' || k === 'options' || k === 'replication' || k.startsWith('_pq_.');
}

/**
 * Runs the handshake up to an authenticated client. Resolves to undefined for a connection
 * that only carried a CancelRequest (handed to the host) or said nothing usable; rejects with
 * a ProtocolViolation, AuthFailed or socket error the caller reports to the client.
 */
export async function handshake(io: StartupIO, host: StartupHost): Promise<ClientStart | undefined> {
  let sslDone = false;
  let gssDone = false;
  let pkt: codec.StartupPacket;
  for (;;) {
    pkt = codec.parseStartupPacket(await io.next());
    if (pkt.kind === 'ssl') {
      if (sslDone) throw new ProtocolViolation('SSL request received twice');
      sslDone = true;
      if (host.tlsContext) {
        if (io.buffered > 0) throw new ProtocolViolation('received unencrypted data after SSL request');
        await io.upgradeTls(host.tlsContext);
      } else {
        io.write(NO);
      }
      continue;
    }
    if (pkt.kind === 'gssenc') {
      if (gssDone) throw new ProtocolViolation('GSSENC request received twice');
      gssDone = true;
      io.write(NO);
      continue;
    }
    break;
  }
  if (pkt.kind === 'cancel') {
    host.cancel(pkt.pid, pkt.secret);
    return undefined;
  }
  if (pkt.kind !== 'startup') return undefined;
  if (pkt.major !== 3) {
    throw new ProtocolViolation(`unsupported frontend protocol ${pkt.major}.${pkt.minor}: server supports 3.0 to 3.0`, '0A000');
  }
  const unrecognized = [...pkt.params.keys()].filter((k) => k.startsWith('_pq_.'));
  if (pkt.minor > 0 || unrecognized.length > 0) io.write(codec.negotiateProtocolVersion(0, unrecognized));
  const user = pkt.params.get('user');
  if (!user) throw new ProtocolViolation('no PostgreSQL user name specified in startup packet', '28000');
  if (pkt.params.has('replication') && pkt.params.get('replication') !== 'false' && pkt.params.get('replication') !== '0') {
    throw new ProtocolViolation('replication connections are not supported through pgwatchdog; connect to the primary directly', '0A000');
  }
  const start: ClientStart = { user, database: pkt.params.get('database') || user, params: pkt.params };
  if (host.tooManyClients()) throw new ProtocolViolation('sorry, too many clients already', '53300');
  io.startupDone();
  if (host.authMethod !== 'trust') {
    const clientKey = await authenticateClient(host.authMethod, user, host.users, {
      send: (b) => io.write(b),
      recvPassword: async () => {
        const m = await io.next();
        if (m[0] !== FE.Password) throw new ProtocolViolation(`expected password response, got message type ${m[0]}`);
        return m.subarray(5);
      },
    });
    if (clientKey) host.rememberScramKey(user, clientKey);
  }
  return start;
}

/**
 * Wraps a client's net.Socket in TLS after answering 'S'. The caller moves its listeners to
 * the returned socket before awaiting `secure`.
 */
export function startTls(raw: net.Socket, ctx: tls.SecureContext): { socket: tls.TLSSocket; secure: Promise<void> } {
  raw.write(YES);
  const t = new tls.TLSSocket(raw, { isServer: true, secureContext: ctx });
  const secure = new Promise<void>((resolve, reject) => {
    t.once('secure', () => resolve());
    t.once('error', reject);
    t.once('close', () => reject(new Error('client closed during TLS handshake')));
  });
  return { socket: t, secure };
}

/** The backends a session starts on. */
export interface BackendPick {
  primary: number;
  /** The load-balance standby, or undefined for "the primary only". */
  standby: number | undefined;
}

export interface Checkout {
  primary: BackendConn;
  standby: BackendConn | undefined;
}

/** Both connections from the pool's idle lists, without a round of promises; undefined when either is missing. */
export function takePooled(pools: Pools, pick: BackendPick, c: ClientStart): Checkout | undefined {
  const options = c.params.get('options') ?? '';
  const pc = pools.take(pick.primary, c.user, c.database, options);
  if (!pc) return undefined;
  if (pick.standby === undefined) return { primary: pc, standby: undefined };
  const sc = pools.take(pick.standby, c.user, c.database, options);
  if (!sc) {
    pools.release(pc, true, false);
    return undefined;
  }
  return { primary: pc, standby: sc };
}

/**
 * Acquires both connections (connecting new ones as needed). A standby that fails costs the
 * session its load balancing, not its start. Resolves undefined when the client left meanwhile.
 */
export async function acquire(pools: Pools, pick: BackendPick, c: ClientStart, stillWanted: () => boolean, log: Logger): Promise<Checkout | undefined> {
  const options = c.params.get('options') ?? '';
  const [pc, sc] = await Promise.allSettled([
    pools.acquire(pick.primary, c.user, c.database, options),
    pick.standby === undefined ? Promise.resolve(undefined) : pools.acquire(pick.standby, c.user, c.database, options),
  ]);
  if (!stillWanted() || pc.status === 'rejected') {
    if (pc.status === 'fulfilled') pools.release(pc.value, true, false);
    if (sc.status === 'fulfilled' && sc.value) pools.release(sc.value, true, false);
    if (pc.status === 'rejected') throw pc.reason;
    return undefined;
  }
  if (sc.status === 'fulfilled') return { primary: pc.value, standby: sc.value };
  log.warn({ backend: pick.standby, reason: (sc.reason as Error).message }, 'load-balance standby unavailable; session uses the primary only');
  return { primary: pc.value, standby: undefined };
}

/**
 * The SETs (and RESETs) that give connection `c` the client's startup parameters: what it
 * already has is skipped, and what an earlier session on it asked for and this one did not
 * goes back. Records the result in `c.applied`. One Query, or undefined when none is needed.
 */
export function startupSets(c: BackendConn, params: ReadonlyMap<string, string>): Buffer | undefined {
  const sets: string[] = [];
  const wanted = new Map<string, string>();
  for (const [k, v] of params) {
    if (isProtocolParam(k)) continue;
    wanted.set(k, v);
    const canon = c.applied.has(k) ? undefined : c.canonicalParam(k);
    const have = c.applied.get(k) ?? (canon === undefined ? undefined : c.params.get(canon));
    if (have === v) continue;
    sets.push(`SET "${k.replace(/"/g, '""')}" TO '${v.replace(/'/g, "''")}'`);
    c.applied.set(k, v);
  }
  for (const k of [...c.applied.keys()]) {
    if (wanted.has(k)) continue;
    sets.push(`RESET "${k.replace(/"/g, '""')}"`);
    c.applied.delete(k);
  }
  return sets.length === 0 ? undefined : codec.query(sets.join('; '));
}

/**
 * The ParameterStatus values the client is told at start: the primary connection's, with what
 * the client asked for (its SETs are on the way). Usually they agree already and the
 * connection's encoded block is reused as is (undefined here).
 */
export function statusOverlay(conn: BackendConn, params: ReadonlyMap<string, string>): Map<string, string> | undefined {
  let overlay: Map<string, string> | undefined;
  for (const [k, v] of params) {
    if (isProtocolParam(k)) continue;
    const canon = conn.canonicalParam(k);
    if (canon !== undefined && conn.params.get(canon) !== v) (overlay ??= new Map(conn.params)).set(canon, v);
  }
  return overlay;
}
