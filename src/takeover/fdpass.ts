// Descriptor passing for the online restart: a thin typed face on native/fdpass.c (SCM_RIGHTS
// over a unix stream socket). The addon is optional, as the forwarding one is: without it
// `available()` is false and the takeover falls back to handing the listener over by
// rebinding it and draining the old process (old-side.ts).
import { createRequire } from 'node:module';

export interface Received {
  /** Bytes read (length 0: the other side closed). */
  data: Buffer;
  /** Descriptors that came with them, in order; they are this process's to close. */
  fds: number[];
  /** The kernel dropped descriptors (more than fit); the conversation cannot go on. */
  truncated: boolean;
}

interface Native {
  connect(path: string): number;
  send(fd: number, data: Buffer, fds: number[], waitMs: number): number;
  recv(fd: number, maxBytes: number, waitMs: number): Received | null;
  close(fd: number): void;
  dup(fd: number): number;
}

/** Most descriptors one send carries (Linux allows 253). */
export const MAX_FDS_PER_SEND = 250;

let native: Native | null | undefined;

function load(): Native | null {
  // PGWATCHDOG_FDPASS=off runs a takeover as a machine without the addon would (the fallback's tests).
  if (process.env.PGWATCHDOG_FDPASS === 'off') return null;
  const require = createRequire(import.meta.url);
  // src/takeover → repo root; dist/src/takeover → repo root.
  for (const rel of ['../../build/Release/fdpass.node', '../../../build/Release/fdpass.node']) {
    try {
      return require(rel) as Native;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw new Error(`loading descriptor passing (${rel}): ${(err as Error).message}`, { cause: err });
    }
  }
  return null;
}

function n(): Native {
  if (native === undefined) native = load();
  if (!native) throw new Error(process.env.PGWATCHDOG_FDPASS === 'off' ? 'descriptor passing is turned off (PGWATCHDOG_FDPASS=off)' : 'descriptor passing is not built (npm run build:native)');
  return native;
}

/** True when the addon is built and loads here. */
export function available(): boolean {
  try {
    return n() !== null;
  } catch {
    return false;
  }
}

/** Why it is not available (for the log), or undefined when it is. */
export function unavailableReason(): string | undefined {
  try {
    n();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** A non-blocking unix stream socket connected to `path`. */
export function connect(path: string): number {
  return n().connect(path);
}

/**
 * Sends all of `data`, with `fds` attached to its first byte, waiting up to `waitMs` for room
 * at each step. The descriptors stay open here: the receiver gets duplicates.
 */
export function sendAll(fd: number, data: Buffer, fds: number[], waitMs: number): void {
  if (fds.length > MAX_FDS_PER_SEND) throw new Error(`sending ${fds.length} descriptors at once (at most ${MAX_FDS_PER_SEND})`);
  let off = n().send(fd, data, fds, waitMs);
  while (off < data.length) off += n().send(fd, data.subarray(off), [], waitMs);
}

/** One read of up to `maxBytes`, waiting up to `waitMs` for input; null when none came. */
export function recv(fd: number, maxBytes: number, waitMs: number): Received | null {
  return n().recv(fd, maxBytes, waitMs);
}

export function close(fd: number): void {
  n().close(fd);
}

export function dup(fd: number): number {
  return n().dup(fd);
}
