// failover.synchronous: auto, the runner: read the primary's synchronous_standby_names and
// which standbys stream, let decideSync (sync.ts, pure) say what to do, and do it. Clearing
// keeps writes from blocking when too few synchronous standbys stream; restoring puts the
// saved value back once they do again. The saved value survives restarts in the status file.
import type { Config, HealthCheckConfig } from '../config/index.js';
import { healthCheckFor } from '../config/index.js';
import type { Logger } from '../log.js';
import type { BackendRegistry } from '../backends/registry.js';
import { setSyncNames, syncState } from './pgops.js';
import { decideSync } from './sync.js';

export class SyncCheck {
  /** The value we cleared, to restore later; null when we cleared nothing. */
  savedNames: string | null = null;
  /** The last change, for the status. */
  last: string | null = null;

  constructor(
    private readonly config: Config,
    private readonly registry: BackendRegistry,
    private readonly logger: Logger,
    /** Called after a change, so the status file keeps the saved value. */
    private readonly onChange: () => void,
  ) {}

  /** One check; `why` names the event that prompted it (null: the periodic one). Never throws. */
  async run(why: string | null): Promise<void> {
    if (this.config.failover.synchronous !== 'auto') return;
    const p = this.registry.primary();
    if (!p) {
      this.logger.debug({ why }, 'synchronous replication check: nothing to do, there is no primary');
      return;
    }
    const t = { id: p.id, host: p.host, port: p.port };
    const hc: HealthCheckConfig = healthCheckFor(this.config, p.id);
    try {
      const s = await syncState(t, hc, hc.timeout_ms);
      if (s.names.trim() !== '' && this.savedNames !== null && s.names !== this.savedNames) this.savedNames = null; // the operator set a new value
      const d = decideSync(s.names, this.savedNames, s.streaming);
      if (d.action === 'clear') {
        await setSyncNames(t, hc, hc.timeout_ms, '');
        this.savedNames = d.saved;
        this.last = `${new Date().toISOString()} cleared "${d.saved}": ${d.reason}`;
        this.logger.warn({ backend: p.id, saved: d.saved, reason: d.reason, why }, 'synchronous replication turned off on the primary so writes stop blocking');
        this.onChange();
      } else if (d.action === 'restore') {
        await setSyncNames(t, hc, hc.timeout_ms, d.value);
        this.savedNames = null;
        this.last = `${new Date().toISOString()} restored "${d.value}": ${d.reason}`;
        this.logger.info({ backend: p.id, value: d.value, reason: d.reason, why }, 'synchronous replication restored on the primary');
        this.onChange();
      } else {
        this.logger.debug({ backend: p.id, reason: d.reason, why }, `synchronous replication check: nothing to do, ${d.reason}`);
      }
    } catch (err) {
      this.logger.warn({ backend: p.id, err: (err as Error).message }, 'synchronous replication check failed');
    }
  }
}
