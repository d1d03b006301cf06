// Config reload (SIGHUP, `pgwatchdog reload`): which changed keys a running peer takes at once
// and which need a restart. Pure: two configs in, a plan out; applyLive writes the live changes
// into the running config object, which the parts read at use (the peer then tells the parts
// that cache a setting: health checks, backend weights, the log level).
import type { Config } from './schema.js';

export interface ConfigChange {
  /** Dotted key path, as in the configuration reference (`backends[1].weight`). */
  key: string;
  before: unknown;
  after: unknown;
}

export interface RestartChange extends ConfigChange {
  why: string;
}

export interface ReloadPlan {
  live: ConfigChange[];
  needsRestart: RestartChange[];
}

/** Every leaf that differs. Lists of plain values compare whole; a list of sections per item. */
export function diffConfig(before: unknown, after: unknown, key = ''): ConfigChange[] {
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(before) && isObj(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    return keys.flatMap((k) => diffConfig(before[k], after[k], key === '' ? k : `${key}.${k}`));
  }
  if (Array.isArray(before) && Array.isArray(after) && before.length === after.length && before.some(isObj)) {
    return before.flatMap((b, i) => diffConfig(b, after[i], `${key}[${i}]`));
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [{ key, before, after }];
}

// Keys a running peer applies at once: the parts read them at use, or are told (health checks,
// weights, log level). Patterns over the dotted key; [N] is any backend.
const LIVE: RegExp[] = [
  /^log\.level$/,
  /^health_check\./,
  /^backends\[\d+\]\.health_check(\.|$)/,
  /^backends\[\d+\]\.weight$/,
  /^proxy\.(load_balance|max_lag_bytes|max_clients|causal_reads)$/,
  /^proxy\.pool\.(max_per_backend|idle_timeout_ms|acquire_timeout_ms|reset_query)$/,
];
// With proxy workers each worker process holds its own copy of these (and its own logger), taken at start.
const IN_WORKERS = /^(proxy\.|backends\[\d+\]\.weight$|log\.level$)/;

function restartReason(key: string): string {
  if (/^backends(\[\d+\])?$/.test(key)) return 'backends added or removed: backend ids are positions in the list';
  if (/^backends\[\d+\]\./.test(key)) return 'a backend\'s address and identity are fixed while it is in service';
  if (/^proxy\.(host|port|tls|workers)/.test(key)) return 'the listener is opened at start';
  if (key.startsWith('proxy.')) return 'read when the proxy starts';
  if (key.startsWith('auth.')) return 'the users file and method are loaded at start';
  if (key.startsWith('admin.')) return 'the admin API listens from start';
  if (key.startsWith('failover.')) return 'the failover engine checks its commands and settings at start';
  if (key.startsWith('watchdog.')) return 'the watchdog cluster membership and Raft settings are fixed while it runs';
  return 'read at start';
}

export function planReload(current: Config, next: Config): ReloadPlan {
  const plan: ReloadPlan = { live: [], needsRestart: [] };
  const workers = current.proxy.workers > 1;
  for (const c of diffConfig(current, next)) {
    if (LIVE.some((re) => re.test(c.key)) && !(workers && IN_WORKERS.test(c.key))) plan.live.push(c);
    else plan.needsRestart.push({ ...c, why: workers && IN_WORKERS.test(c.key) ? 'each proxy worker took its copy at start (proxy.workers > 1)' : restartReason(c.key) });
  }
  return plan;
}

/** Writes the live changes into the running config, in place (the parts hold this object). */
export function applyLive(config: Config, plan: ReloadPlan): void {
  for (const c of plan.live) {
    const path = c.key.split(/\.|(?=\[)/).map((p) => (p.startsWith('[') ? Number(p.slice(1, -1)) : p));
    let node = config as unknown as Record<string | number, unknown>;
    for (const p of path.slice(0, -1)) {
      node[p] ??= {};
      node = node[p] as Record<string | number, unknown>;
    }
    const last = path.at(-1)!;
    if (c.after === undefined) delete node[last];
    else node[last] = c.after;
  }
}

/** A change as the log and the command show it: secrets hidden. */
export function describeChange(c: ConfigChange): { key: string; before: unknown; after: unknown } {
  const secret = /(password|token|auth_key)$/.test(c.key);
  return secret ? { key: c.key, before: '(hidden)', after: '(hidden)' } : { key: c.key, before: c.before, after: c.after };
}
