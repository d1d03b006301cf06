// The reload plan: which changed keys a running peer takes live, which need a restart and why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, type Config } from '../../src/config/index.js';
import { applyLive, describeChange, diffConfig, planReload } from '../../src/config/reload.js';

const base = {
  auth: { method: 'trust' },
  backends: [{ host: 'a' }, { host: 'b', weight: 2 }],
  health_check: { password: 'old' },
};
interface Tree {
  log?: unknown;
  proxy?: Record<string, unknown>;
  failover?: unknown;
  auth: Record<string, unknown>;
  health_check: Record<string, unknown>;
  backends: Record<string, unknown>[];
}
const cfg = (over: (t: Tree) => void = () => undefined): Config => {
  const t = structuredClone(base) as Tree;
  over(t);
  return parseConfig(t, '/etc/pgwatchdog/x.yaml', {});
};

test('nothing changed: an empty plan', () => {
  assert.deepEqual(planReload(cfg(), cfg()), { live: [], needsRestart: [] });
});

test('live keys: log level, health checks (global and per backend), weights, load balancing, lag, clients, pool', () => {
  const next = cfg((t) => {
    t.log = { level: 'debug' };
    t.health_check.period_ms = 250;
    t.backends[1]!.weight = 0;
    t.backends[0]!.health_check = { timeout_ms: 900 };
    t.proxy = { load_balance: false, max_lag_bytes: '1MB', max_clients: 5, pool: { max_per_backend: 7, reset_query: 'DISCARD ALL; SELECT 1' } };
  });
  const plan = planReload(cfg(), next);
  assert.deepEqual(plan.needsRestart, []);
  assert.deepEqual(
    plan.live.map((c) => c.key).sort(),
    ['backends[0].health_check', 'backends[1].weight', 'health_check.period_ms', 'log.level', 'proxy.load_balance', 'proxy.max_clients', 'proxy.max_lag_bytes', 'proxy.pool.max_per_backend', 'proxy.pool.reset_query'],
  );
  const running = cfg();
  const proxyObject = running.proxy;
  applyLive(running, plan);
  assert.deepEqual(running, next, 'applying the live plan yields the new config');
  assert.equal(running.proxy, proxyObject, 'in place: parts holding a section see the change');
});

test('restart keys are named with the reason; with workers the proxy keys need a restart too', () => {
  const plan = planReload(
    cfg(),
    cfg((t) => {
      t.proxy = { port: 6543 };
      t.backends.push({ host: 'c' });
      t.failover = { failover_command: 'x %d' };
      t.auth.users_file = 'u.txt';
    }),
  );
  assert.deepEqual(plan.live, []);
  const why = Object.fromEntries(plan.needsRestart.map((c) => [c.key, c.why]));
  assert.deepEqual(Object.keys(why).sort(), ['auth.users_file', 'backends', 'failover.failover_command', 'proxy.port']);
  assert.match(why.backends!, /added or removed/);
  assert.match(why['proxy.port']!, /listener/);

  const workers = (t: Tree) => {
    t.proxy = { workers: 2 };
  };
  const w = planReload(
    cfg(workers),
    cfg((t) => {
      t.proxy = { workers: 2, max_clients: 3 };
      t.backends[0]!.weight = 5;
      t.health_check.period_ms = 300;
    }),
  );
  assert.deepEqual(w.live.map((c) => c.key), ['health_check.period_ms']);
  assert.deepEqual(w.needsRestart.map((c) => [c.key, /proxy worker/.test(c.why)]), [
    ['proxy.max_clients', true],
    ['backends[0].weight', true],
  ]);
});

test('diff: per item in lists of sections, whole lists of values; secrets hidden when shown', () => {
  assert.deepEqual(diffConfig({ l: [1, 2] }, { l: [1, 3] }), [{ key: 'l', before: [1, 2], after: [1, 3] }]);
  assert.deepEqual(diffConfig({ l: [{ x: 1 }, { x: 2 }] }, { l: [{ x: 1 }, { x: 3 }] }), [{ key: 'l[1].x', before: 2, after: 3 }]);
  const [c] = diffConfig(
    cfg(),
    cfg((t) => {
      t.health_check.password = 'new';
    }),
  );
  assert.deepEqual(describeChange(c!), { key: 'health_check.password', before: '(hidden)', after: '(hidden)' });
});
