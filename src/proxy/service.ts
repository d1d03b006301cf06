// What the rest of a peer sees of the proxy, whichever way it runs: one process serving its
// own clients (index.ts, Proxy), or a supervisor whose node:cluster workers each run one
// (workers.ts, WorkerSupervisor). createProxy (index.ts) picks by proxy.workers.
import type { Logger } from '../log.js';
import type { Config } from '../config/index.js';
import type { BackendRegistry } from '../backends/registry.js';
import type { PoolStats } from './pool.js';
import type { WatchdogNode } from './show.js';
import type { ListenOn } from '../takeover/listen.js';

export interface ProxyOptions {
  config: Config;
  registry: BackendRegistry;
  logger: Logger;
  onBackendError?: ((backendId: number, err: Error) => void) | undefined;
  /** Causal reads: a session waits on a fresh WAL sample of this backend; the peer asks its
   * replication monitor for one soon (ReplicationMonitor.hurry, which coalesces calls). */
  onCausalWait?: ((backendId: number) => void) | undefined;
  /** The watchdog peers for SHOW WATCHDOG_NODES (the admin part fills them from the watchdog). */
  watchdogNodes?: () => WatchdogNode[];
}

export interface ProxyStats {
  /** `native`: sessions whose bytes native forwarding moves now (splice.ts). */
  clients: { active: number; idle: number; total: number; native: number };
  pools: PoolStats[];
  /** Statements routed as reads, per backend id (pgpool's select_cnt). */
  selectCounts: number[];
  workers: number;
}

export interface ProxyService {
  /** Sessions settled on one backend may be forwarded by native code (splice.ts). */
  readonly nativeForwarding: boolean;
  /** `from`: a listening socket handed over by the previous process (online restart). */
  listen(from?: ListenOn): Promise<{ host: string; port: number }>;
  /** Closes the idle pooled connections to these backends (the failover engine's request). */
  closeIdle(backendIds: number[]): void;
  stats(): ProxyStats;
  close(): Promise<void>;
}

/**
 * A Proxy running as one of several workers: what it needs of its siblings, through the
 * supervisor (workers.ts).
 */
export interface WorkerLink {
  /** This worker's index (0-based): it is in the top bits of every cancel key it gives out. */
  readonly index: number;
  /** Sends a cancel request for a session of worker `worker` to it. */
  relayCancel(worker: number, pid: number, secret: number): void;
  /** What the other workers last reported (≤ 1 s old): for SHOW POOL_NODES and max_clients. */
  readonly others: { selectCounts: number[]; clients: number };
}
