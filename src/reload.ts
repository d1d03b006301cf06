// Reloading a running peer's configuration (SIGHUP, `pgwatchdog reload`): read and validate the
// file, take the keys that can change live, name the ones that need a restart. An invalid file
// changes nothing. Client sessions are never touched: live keys are read by the parts at use.
import { ConfigError, loadConfig, type Config } from './config/index.js';
import { applyLive, describeChange, planReload, type ConfigChange, type RestartChange } from './config/reload.js';
import { setLogLevel, type Logger } from './log.js';
import type { HealthChecker } from './backends/health.js';
import type { BackendRegistry } from './backends/registry.js';

export type ReloadOutcome =
  | { ok: true; file: string; applied: ConfigChange[]; needsRestart: RestartChange[] }
  | { ok: false; file: string; problems: string[] };

export interface Reloadable {
  readonly config: Config;
  readonly log: Logger;
  readonly health: HealthChecker;
  readonly registry: BackendRegistry;
}

export interface ConfigSource {
  file: string;
  /** `start --name`, which overrides watchdog.name in the file. */
  name?: string;
}

export function reloadConfig(peer: Reloadable, source: ConfigSource): ReloadOutcome {
  const { file } = source;
  let next: Config;
  try {
    next = loadConfig(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    peer.log.error({ file, problems: err.problems }, 'reload refused: the configuration file is invalid; nothing changed');
    return { ok: false, file, problems: err.problems };
  }
  if (source.name !== undefined) next.watchdog.name = source.name;
  const plan = planReload(peer.config, next);
  applyLive(peer.config, plan);
  // The parts that keep a copy of a setting are told.
  peer.health.reconfigure(peer.config);
  for (const c of plan.live) {
    const w = /^backends\[(\d+)\]\.weight$/.exec(c.key);
    if (w) peer.registry.setWeight(Number(w[1]), c.after as number);
  }
  if (plan.live.some((c) => c.key === 'log.level') && !setLogLevel(peer.log, peer.config.log.level)) {
    peer.log.warn('log.level changed in the file, but PGWATCHDOG_LOG_LEVEL is set and wins');
  }
  for (const c of plan.needsRestart) peer.log.warn({ ...describeChange(c), why: c.why }, `reload: ${c.key} changed but needs a restart to take effect`);
  peer.log.info(
    { file, applied: plan.live.map(describeChange), needsRestart: plan.needsRestart.map((c) => c.key) },
    plan.live.length + plan.needsRestart.length === 0 ? 'configuration reloaded: nothing changed' : 'configuration reloaded',
  );
  return { ok: true, file, applied: plan.live, needsRestart: plan.needsRestart };
}

/** The outcome as the admin API answers `POST /v1/reload` and `pgwatchdog reload` prints it: secrets hidden. */
export type ReloadView =
  | { ok: true; file: string; applied: { key: string; before: unknown; after: unknown }[]; needsRestart: { key: string; before: unknown; after: unknown; why: string }[] }
  | { ok: false; file: string; problems: string[] };

export function reloadView(o: ReloadOutcome): ReloadView {
  if (!o.ok) return o;
  return { ok: true, file: o.file, applied: o.applied.map(describeChange), needsRestart: o.needsRestart.map((c) => ({ ...describeChange(c), why: c.why })) };
}
