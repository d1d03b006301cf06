// Ports for the servers tests start (PostgreSQL, a peer's proxy, admin and watchdog listeners).
//
// A port found free with listen(0) is released before its server binds it, and in between it can
// be taken: by another test (test files run as parallel processes, and other checkouts' suites run
// on the same machine), or by any outgoing connection, since listen(0) and connect() draw from the
// same ephemeral range. The server then fails with "Address already in use".
//
// So a port is drawn below the kernel's ephemeral range (net.ipv4.ip_local_port_range), where no
// outgoing connection or listen(0) ever lands, and reserved for the life of the process that drew
// it by a listener held on its guard port (port + SPAN): a process drawing a port whose guard is
// held looks for another. The kernel frees the guard when the process ends, however it ends (kill
// -9 included), so no reservation goes stale. Only something outside this scheme binding the very
// port can still take it; PostgreSQL's first start retries on a fresh port for that (pg.ts).
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';

const HOST = '127.0.0.1';
/** The lowest port drawn: above the registered ports services commonly use. */
const FIRST = 10_000;
const ATTEMPTS = 500;

/** The first port of the kernel's ephemeral range (Linux default 32768). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

const LOW = ephemeralLow();
/** Ports are drawn from [FIRST, FIRST + SPAN), their guards from [FIRST + SPAN, FIRST + 2 SPAN) ⊂ [FIRST, LOW). */
const SPAN = Math.floor((LOW - FIRST) / 2);

/** Guards held by this process, by the port they reserve; held until the process ends. */
const guards = new Map<number, Server>();

/** Listens on `port`; resolves to the server, or undefined when the port is taken. */
function listen(port: number): Promise<Server | undefined> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(undefined) : reject(err)));
    srv.listen(port, HOST, () => resolve(srv));
  });
}

const close = (srv: Server) => new Promise<void>((resolve) => srv.close(() => resolve()));

/** What listen(0) hands out: for a machine whose ephemeral range leaves no room below it. */
async function kernelPort(): Promise<number> {
  const srv = await listen(0);
  const addr = srv?.address();
  if (!srv || typeof addr !== 'object' || !addr) throw new Error(`no free port on ${HOST}`);
  await close(srv);
  return addr.port;
}

/**
 * A TCP port free on 127.0.0.1, outside the ephemeral range, and reserved for this process: no
 * other process using this module gets it while this one lives, and no call here returns it twice.
 */
export async function freePort(): Promise<number> {
  if (SPAN < 1000) return kernelPort();
  for (let i = 0; i < ATTEMPTS; i++) {
    const port = FIRST + Math.floor(Math.random() * SPAN);
    if (guards.has(port)) continue;
    const guard = await listen(port + SPAN);
    // Reserved by another process or by a concurrent call of this one (the kernel lets one
    // listener have a port, within a process too), or the guard port is in use: draw again.
    if (!guard) continue;
    guards.set(port, guard);
    const probe = await listen(port);
    if (probe) {
      await close(probe);
      return port;
    }
    // In use by something outside this scheme: keep the guard, so the port is not drawn again.
  }
  throw new Error(`no free port on ${HOST} in ${FIRST}-${FIRST + SPAN - 1} after ${ATTEMPTS} draws (${guards.size} reserved by this process)`);
}

/** The range freePort draws from, for tests of this module. */
export const PORT_RANGE = { first: FIRST, end: FIRST + SPAN, ephemeralLow: LOW } as const;
