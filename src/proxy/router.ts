// The session's view of statement classification (classify.ts): a small cache in front of
// it, because pooled applications send the same statement texts again and again, and the
// `read` bit that SHOW POOL_NODES counts as select_cnt.
import { classify } from './classify.js';

export interface Route {
  target: 'standby' | 'primary' | 'both';
  /** From here to the end of the transaction everything goes to the primary. */
  write: boolean;
  txn?: 'begin' | 'end';
  /** A read-only statement (counted per backend as pgpool's select_cnt). */
  read: boolean;
  /**
   * The statement may leave session state on its connection, so the pool must run the reset
   * query after the session: everything but plain reads and transaction control. (classify
   * sends set_config to both legs and advisory locks, large objects and dblink to the primary,
   * so none of them is a plain read.)
   */
  stateful: boolean;
  /** The statement leaves state that exists on the primary only (temp objects, serializable
   * default): the session's later reads must stay on the primary. */
  standbyUnusable?: true;
  /** `SHOW POOL_…`/`SHOW WATCHDOG_…`: the command's name (classify.ts), answered by the proxy if it knows it. */
  showPool?: string;
  /** `SET pgwatchdog.…` alone (classify.ts): answered by the proxy, never sent to PostgreSQL. */
  proxySetting?: { name: string; value: string | null };
}

const CACHE_MAX = 4096;
const CACHE_MAX_SQL = 2048;

export class Router {
  private readonly cache = new Map<string, Route>();

  constructor(private readonly writeFunctions: readonly string[]) {}

  /**
   * `cacheable`: statement texts that recur (Parse of prepared statements) are cached; simple
   * queries usually carry literals that differ every time, where a cache would only churn.
   */
  route(sql: string, cacheable = true, standardConformingStrings = true): Route {
    // A session with standard_conforming_strings off (rare) reads backslashes in '…' as escapes:
    // classified apart, never cached, so it cannot poison the shared cache.
    if (!standardConformingStrings) return this.classify(sql, false);
    if (!cacheable) return this.classify(sql);
    const hit = this.cache.get(sql);
    if (hit) return hit;
    const r = this.classify(sql);
    if (sql.length <= CACHE_MAX_SQL) {
      if (this.cache.size >= CACHE_MAX) this.cache.clear();
      this.cache.set(sql, r);
    }
    return r;
  }

  private classify(sql: string, standardConformingStrings = true): Route {
    const c = classify(sql, { writeFunctions: this.writeFunctions, standardConformingStrings });
    // SQL-level PREPARE/EXECUTE/DEALLOCATE must all meet the same backend: keep them on the primary.
    const target = c.prepared !== undefined && c.target === 'standby' ? 'primary' : c.target;
    const read = target === 'standby' && !c.write;
    const stateful = !read && !(target === 'both' && c.txn !== undefined);
    const r: Route = { target, write: c.write, read, stateful };
    if (c.txn) r.txn = c.txn;
    if (c.standbyUnusable) r.standbyUnusable = true;
    if (c.showPool !== undefined) r.showPool = c.showPool;
    if (c.proxySetting !== undefined) r.proxySetting = c.proxySetting;
    return r;
  }
}
