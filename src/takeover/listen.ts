// Where a server listens: on its configured address, or on a listening socket handed over by
// the process it takes over from (its descriptor). Shared by the proxy and the admin API.
import type net from 'node:net';

/** A listening socket handed over by the previous process, or an address to bind. */
export type ListenOn = { fd: number } | { host: string; port: number; backlog?: number; retryInUseMs?: number };

/** Listens; with `retryInUseMs`, an address still in use (the old process closing it) is retried that long. */
export async function listenOn(server: net.Server, on: ListenOn): Promise<void> {
  const deadline = 'fd' in on ? 0 : Date.now() + (on.retryInUseMs ?? 0);
  for (;;) {
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        const done = (): void => {
          server.off('error', reject);
          resolve();
        };
        if ('fd' in on) server.listen({ fd: on.fd }, done);
        else server.listen({ host: on.host, port: on.port, backlog: on.backlog ?? 511 }, done);
      });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || Date.now() >= deadline) throw err;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

/** The descriptor of a listening server (to hand over), or undefined (not listening, or no such handle). */
export function listenerFd(server: net.Server | undefined): number | undefined {
  const fd = (server as unknown as { _handle?: { fd?: number } } | undefined)?._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}
