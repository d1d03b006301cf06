// Native forwarding ("splice"): a session settled on one backend connection lends both
// descriptors to a forwarding thread in C (native/splice.c), which moves bytes as pgbouncer
// does, without JavaScript per message, and gives the session back at a message boundary
// when JavaScript must act (Terminate, SHOW POOL_…, a bad message, a closed connection).
// The addon is built by `npm install` (node-gyp, binding.gyp); without it every session
// stays on the JavaScript path, which does the same work, only slower.
import { createRequire } from 'node:module';

/** Why a session came back (native/splice.c's R_* values). */
export const REASON = {
  terminate: 1,
  localQuery: 2,
  frontendMessage: 3,
  clientGone: 4,
  backendGone: 5,
  backendProtocol: 6,
  /** JavaScript asked for it back (recall) and the client began a new message. */
  recalled: 7,
  /** The backend sent a FATAL nobody asked for (shutdown, postmaster gone): it is the first of fromBackend, unforwarded. */
  backendAsync: 8,
  /**
   * The first reply to the client's last unit (sent while idle) was the postmaster-exit FATAL
   * (never-ran.ts): the server never read the unit. fromClient holds the unit from its first
   * byte, fromBackend starts with the FATAL, both unforwarded; `outstanding` leaves the unit out.
   */
  backendReplay: 9,
} as const;

export interface GiveBack {
  reason: number;
  /** errno of a failed read/write (positive, as C has it), or 0. */
  errno: number;
  /** ReadyForQuery messages the backend still owes. */
  outstanding: number;
  /** Transaction status byte of the last ReadyForQuery. */
  status: number;
  /** Both directions were forwarded up to a message boundary. */
  boundary: boolean;
  /** Bytes read from the client and not forwarded, from a message boundary. */
  fromClient: Buffer;
  /** Bytes read from the backend and not forwarded, from a message boundary. */
  fromBackend: Buffer;
  /** A FATAL (or PANIC) ErrorResponse from the backend was forwarded to the client. */
  fatalForwarded: boolean;
  /** The client stopped inside an extended batch, part of which was forwarded natively. */
  batchOpen: boolean;
}

export interface SpliceOwner {
  onGiveBack(g: GiveBack): void;
}

interface Native {
  init(cb: (key: number, reason: number, errno: number, outstanding: number, status: number, boundary: boolean, fromClient: Buffer, fromBackend: Buffer, fatalForwarded: boolean, batchOpen: boolean) => void): void;
  attach(key: number, clientFd: number, backendFd: number, counter: number, status: number): number;
  kill(handle: number): Killed | null;
  recall(handle: number): void;
  selects(counter: number): number;
  live(): number;
  inputWaiting(fd: number): boolean;
  watchCalls(names: string[], prefixes: string[]): void;
}

const owners = new Map<number, SpliceOwner>();
/** Give-backs so far in this process, indexed by reason (REASON). */
const gaveBack: number[] = [];
let nextKey = 1;
let native: Native | null | undefined;
/** select_cnt counters in native/splice.c (MAX_COUNTERS): each proxy takes a range. */
const MAX_COUNTERS = 4096;
let nextCounter = 0;

function load(): Native | null {
  const require = createRequire(import.meta.url);
  // src/proxy → repo root; dist/src/proxy → repo root.
  for (const rel of ['../../build/Release/splice.node', '../../../build/Release/splice.node']) {
    try {
      const n = require(rel) as Native;
      n.init((key, reason, errno, outstanding, status, boundary, fromClient, fromBackend, fatalForwarded, batchOpen) => {
        gaveBack[reason] = (gaveBack[reason] ?? 0) + 1;
        const owner = owners.get(key);
        owners.delete(key);
        owner?.onGiveBack({ reason, errno, outstanding, status, boundary, fromClient, fromBackend, fatalForwarded, batchOpen });
      });
      return n;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw new Error(`loading native forwarding (${rel}): ${(err as Error).message}`, { cause: err });
    }
  }
  return null;
}

/** True when native forwarding is built and loads here. */
export function available(): boolean {
  if (native === undefined) native = load();
  return native !== null;
}

/** Where forwarding stood when JavaScript took a session back (kill). */
export interface Killed {
  /** ReadyForQuery messages the backend still owes. */
  outstanding: number;
  /** Both directions were forwarded up to a message boundary, with nothing left unforwarded. */
  boundary: boolean;
  /** Transaction status byte of the last ReadyForQuery. */
  status: number;
}

export interface Lease {
  readonly key: number;
  readonly handle: number;
}

/** A range of `n` select_cnt counters for one proxy (one per backend), or -1 when none is left. */
export function counters(n: number): number {
  if (nextCounter + n > MAX_COUNTERS) return -1;
  const base = nextCounter;
  nextCounter += n;
  return base;
}

/**
 * Function names (lower case, unqualified) and name prefixes whose calls make a statement more
 * than a read (classify.ts callsThatMatter): native forwarding sends statements that call one
 * to JavaScript, and counts other reads with calls itself. Every proxy adds its own; until the
 * first does, every call goes to JavaScript.
 */
export function watchCalls(calls: { names: string[]; prefixes: string[] }): void {
  if (available()) native!.watchCalls(calls.names, calls.prefixes);
}

/**
 * Lends two descriptors to the forwarding thread; the owner hears back through onGiveBack.
 * SELECTs forwarded are counted on `counter` (from counters(), or -1). `status` is the
 * transaction status of the backend's last ReadyForQuery ('I', 'T' or 'E' as a byte): the
 * thread carries it on, so a give-back reports what PostgreSQL last said even when no
 * ReadyForQuery passed natively.
 */
export function attach(owner: SpliceOwner, clientFd: number, backendFd: number, counter: number, status: number): Lease {
  if (!available()) throw new Error('native forwarding is not built (npm run build:native)');
  const key = nextKey++;
  const handle = native!.attach(key, clientFd, backendFd, counter, status);
  owners.set(key, owner);
  return { key, handle };
}

/**
 * Takes the descriptors back now. Returns the forwarding state, or null when the session was
 * already on its way back (its give-back will find no owner and is dropped).
 */
export function kill(lease: Lease): Killed | null {
  owners.delete(lease.key);
  return native!.kill(lease.handle);
}

/**
 * Asks for the session back at the client's next message boundary (before that message is
 * forwarded), with reason `recalled`: the clean hand-over for a session JavaScript must now
 * see statement by statement (routing gates), without cutting anything in flight.
 */
export function recall(lease: Lease): void {
  native!.recall(lease.handle);
}

/** SELECT/WITH statements forwarded natively and counted on `counter` (pgpool's select_cnt). */
export function selects(counter: number): number {
  return native && counter >= 0 ? native.selects(counter) : 0;
}

/**
 * Sessions given back to JavaScript for `reason` (REASON) so far in this process: each costs a
 * hand-over both ways, so statements that native forwarding settles itself should not show here.
 */
export function givenBack(reason: number): number {
  return gaveBack[reason] ?? 0;
}

/** Sessions forwarded natively now. */
export function live(): number {
  return native ? native.live() : 0;
}

/**
 * True when descriptor `fd` has input waiting, or its peer closed (poll(2), no wait); false
 * when it has none — or when the addon is not built, which cannot tell.
 */
export function inputWaiting(fd: number): boolean {
  if (native === undefined) native = load();
  return native !== null && native.inputWaiting(fd);
}
