// The running peer's parts as the takeover sees them (old-side.ts's Giver): kept here so that
// peer.ts only wires, and so that what a restart stops, in which order, reads in one place.
import type { Proxy } from '../proxy/index.js';
import type { ProxyService } from '../proxy/service.js';
import type { Giver } from './old-side.js';

export interface GivingPeer {
  readonly proxy: ProxyService;
  readonly cluster: { stop(): Promise<void>; lastContactAt(): number | null } | undefined;
  readonly failover: { stop(): Promise<void> };
  readonly admin: { listenerFd(): number | undefined; close(): Promise<void> };
  readonly proxyAddress: { host: string; port: number } | undefined;
  readonly adminAddress: { host: string; port: number } | undefined;
}

/** The single-process proxy (proxy.workers: 1), the only kind whose sessions can move. */
function single(p: ProxyService): Proxy | undefined {
  return 'takeSessions' in p ? (p as Proxy) : undefined;
}

export function giver(peer: GivingPeer): Giver {
  return {
    refusal: () => {
      if (!single(peer.proxy)) return 'proxy.workers > 1: an online restart moves a single-process proxy only (restart this peer with a plain stop and start)';
      if (!peer.proxyAddress) return 'this peer is not serving yet';
      return undefined;
    },
    releaseWatchdog: async () => {
      // Watchdog.stop() is the planned stop: VIP dropped, leadership handed over, Raft
      // storage closed. The failover engine stops with it so that two engines never run.
      const had = peer.cluster !== undefined;
      // Read before the stop, which may take a moment (a leadership transfer): the successor
      // counts its grace from it (vip.ts isolation).
      const contactAt = peer.cluster?.lastContactAt() ?? null;
      await peer.cluster?.stop();
      await peer.failover.stop();
      return {
        reason: had ? 'watchdog stopped (VIP dropped and leadership handed over if held; Raft storage closed); failover engine stopped' : 'no watchdog (single peer); failover engine stopped',
        contactAt,
      };
    },
    listeners: () => {
      const p = single(peer.proxy)!;
      const pa = peer.proxyAddress!;
      const aa = peer.adminAddress;
      return { proxy: { fd: p.listenerFd(), host: pa.host, port: pa.port }, admin: aa ? { fd: peer.admin.listenerFd(), host: aa.host, port: aa.port } : undefined };
    },
    stopAccepting: async () => {
      await single(peer.proxy)!.stopAccepting();
      await peer.admin.close();
    },
    takeSessions: (max) => single(peer.proxy)!.takeSessions(max),
    takeIdleConns: (max) => single(peer.proxy)!.takeIdleConns(max),
    sessionCount: () => single(peer.proxy)!.sessionCount(),
    endSessions: (message) => single(peer.proxy)!.endSessions(message),
  };
}
