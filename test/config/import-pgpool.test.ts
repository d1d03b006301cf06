// import-pgpool-conf: pgpool-II 4.x configurations become pgwatchdog configurations that
// check-config accepts, and every setting the file sets is carried over or listed with a reason.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importPgpoolConf, parsePgpoolConf, PgpoolConfError, type ImportResult } from '../../src/config/import-pgpool.js';
import { ConfigError, parseConfig } from '../../src/config/index.js';

const FIXTURES = new URL('../fixtures/pgpool/', import.meta.url).pathname;
const BIN = new URL('../../bin/pgwatchdog.js', import.meta.url).pathname;
/** The samples Debian's pgpool2 package ships (apt-get install pgpool2; .ci/run installs it). */
const DEBIAN_SAMPLES = ['/usr/share/doc/pgpool2/examples/pgpool.conf.sample', '/etc/pgpool2/pgpool.conf'].filter((f) => existsSync(f));
const UNKNOWN = 'not a pgpool-II 4.x setting this converter knows';
const dir = mkdtempSync(join(tmpdir(), 'pgwd-import-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function convert(file: string, text = readFileSync(file, 'utf8')): ImportResult {
  return importPgpoolConf(text, file);
}

/** Every setting of the file is carried over or skipped with a reason, never both, never neither. */
function assertAccounted(text: string, r: ImportResult): void {
  const keys = [...parsePgpoolConf(text).keys()];
  const skipped = r.skipped.map((s) => s.key);
  assert.deepEqual([...r.carried, ...skipped].sort(), [...keys].sort(), 'each setting carried or skipped exactly once');
  for (const s of r.skipped) assert.ok(s.why.length > 0, `${s.key} has a reason`);
}

describe('pgpool.conf syntax', () => {
  it('reads quoted values with escapes, bare values, comments, = optional, last one wins', () => {
    const m = parsePgpoolConf(["a = 'it''s # not a comment' # comment", 'B 5', "c='x\\'y'", '   # only a comment', '', 'a = 2'].join('\n'));
    assert.deepEqual([...m].map(([k, v]) => [k, v.value]), [
      ['b', '5'],
      ['c', "x'y"],
      ['a', '2'],
    ]);
  });

  it('refuses what it cannot read, naming the line', () => {
    assert.throws(() => parsePgpoolConf("ok = 1\nbad = 'open"), (e: Error) => e instanceof PgpoolConfError && /line 2: unterminated/.test(e.message));
    assert.throws(() => parsePgpoolConf('x = 1 2'), /line 1: unexpected "2"/);
    assert.throws(() => parsePgpoolConf('= 3'), /line 1: cannot parse/);
  });
});

describe('a pgpool-II 4.2+ watchdog cluster (fixture)', () => {
  const file = join(FIXTURES, 'pgpool-4.2-watchdog.conf');
  const text = readFileSync(file, 'utf8');
  const r = convert(file, text);
  const t = r.tree as Record<string, Record<string, unknown>>;

  it('carries backends with weights, flags, names and per-node health checks', () => {
    assert.deepEqual(t.backends, [
      { host: 'db1.example.net', name: 'db1', port: 5432, weight: 0, data_dir: '/var/lib/postgresql/15/main' },
      { host: 'db2.example.net', name: 'db2', port: 5433, weight: 2.5, data_dir: '/var/lib/postgresql/15/main', failover: 'disallow', health_check: { period_ms: 10_000 } },
    ]);
  });

  it('carries health checks in milliseconds and the commands with their placeholders', () => {
    assert.deepEqual(t.health_check, { period_ms: 5000, timeout_ms: 20_000, connect_timeout_ms: 10_000, max_retries: 3, retry_delay_ms: 1000, user: 'pgpool', password: "it's secret", database: 'postgres' });
    assert.deepEqual(t.failover, {
      failover_command: '/etc/pgpool2/failover.sh %d %h %p %D %m %H %M %P %r %R %N %S',
      follow_primary_command: '/etc/pgpool2/follow_primary.sh %d %h %p %D %m %H %M %P %r %R',
      failback_command: 'logger "node %d is back at 100%%"',
      promote: 'command',
      failover_on_backend_error: false,
      detach_false_primary: true,
      auto_failback: true,
    });
  });

  it('carries the proxy: listen address, pools, load balancing, lag, write functions, TLS paths made absolute', () => {
    assert.deepEqual(t.proxy, {
      host: '0.0.0.0',
      port: 9999,
      max_clients: 64,
      pool: { max_per_backend: 64, idle_timeout_ms: 600_000, reset_query: 'DISCARD ALL' },
      load_balance: true,
      max_lag_bytes: 10_000_000,
      write_functions: ['nextval', 'setval', 'my_writer'],
      tls: { cert_file: join(FIXTURES, 'server.crt'), key_file: '/etc/pgpool2/server.key' },
    });
    assert.deepEqual(t.log, { level: 'debug' });
    assert.ok(r.notes.some((n) => n.includes('^lock_.*')), 'the regex write function is named in a note');
  });

  it('carries the watchdog: peers from hostnameN/wd_portN, consensus, trusted servers, the VIP and its commands', () => {
    const wd = t.watchdog as Record<string, unknown>;
    assert.deepEqual(wd.peers, [
      { name: 'pgpool1.example.net', host: 'pgpool1.example.net', port: 9000 },
      { name: 'pgpool2.example.net', host: 'pgpool2.example.net', port: 9000 },
      { name: 'pgpool3.example.net', host: 'pgpool3.example.net', port: 9001 },
    ]);
    assert.equal(wd.auth_key, 'wd-secret');
    assert.equal(wd.require_consensus, true);
    assert.equal(wd.failover_when_quorum_exists, true);
    assert.deepEqual(wd.trusted_servers, ['10.0.0.1', '10.0.0.2']);
    assert.deepEqual(wd.vip, {
      address: '10.0.0.100',
      interface: 'eth1',
      escalation_command: '/etc/pgpool2/escalation.sh && /usr/bin/sudo /sbin/ip addr add %V/24 dev eth1 label eth1:0 && { /usr/sbin/arping -U %V -w 1 -I eth1 || true; }',
      de_escalation_command: '/usr/bin/sudo /sbin/ip addr del %V/24 dev eth1',
    });
  });

  it('lists every setting it did not carry, with the reason', () => {
    assertAccounted(text, r);
    const why = Object.fromEntries(r.skipped.map((s) => [s.key, s.why]));
    assert.match(why.wd_priority!, /watchdog\.peers\[\]\.priority/);
    assert.match(why.pgpool_port2!, /proxy\.port/);
    assert.match(why.heartbeat_hostname0!, /Raft/);
    assert.match(why.enable_consensus_with_half_votes!, /majority/);
    assert.match(why.recovery_user!, /online recovery/);
    assert.match(why.max_pool!, /pool/);
    assert.equal(why.made_up_setting, UNKNOWN);
  });

  it('passes check-config', () => {
    parseConfig(r.tree, join(dir, 'x.yaml'), {});
  });
});

describe('a pgpool-II 4.1 node (fixture): master_slave_mode, wd_hostname, other_pgpool_hostnameN', () => {
  const file = join(FIXTURES, 'pgpool-4.1-watchdog.conf');
  const text = readFileSync(file, 'utf8');
  const r = convert(file, text);
  const t = r.tree as Record<string, Record<string, unknown>>;

  it('finds this node (with its wd_priority) and the others, keeps backends in order and refuses an unknown placeholder', () => {
    assert.deepEqual(t.watchdog, {
      name: 'node-a',
      peers: [
        { name: 'node-a', host: 'node-a', port: 9000, priority: 3 },
        { name: 'node-b', host: 'node-b', port: 9000 },
        { name: 'node-c', host: 'node-c', port: 9000 },
      ],
    });
    assert.deepEqual(t.backends, [
      { host: '127.0.0.1', port: 5432, weight: 1, failover: 'disallow' },
      { host: '127.0.0.1', port: 5434 },
    ]);
    assert.ok(r.notes.some((n) => /backend 2 becomes backend 1/.test(n)));
    assert.ok(r.notes.some((n) => /ALWAYS_MASTER/.test(n)));
    assert.deepEqual(t.failover, { follow_primary_command: '/bin/follow.sh %d %m' });
    assert.match(r.skipped.find((s) => s.key === 'failover_command')!.why, /"%x" has no counterpart/);
    assert.deepEqual(t.proxy, { host: '127.0.0.1', port: 5433 });
    assertAccounted(text, r);
    parseConfig(r.tree, join(dir, 'x.yaml'), {});
  });
});

describe("Debian's pgpool2 samples", () => {
  const reason = DEBIAN_SAMPLES.length === 0 ? 'pgpool2 is not installed (apt-get install pgpool2; .ci/run installs it)' : false;

  for (const sample of DEBIAN_SAMPLES.length > 0 ? DEBIAN_SAMPLES : ['(none)']) {
    it(`${sample} as shipped: every setting known, and the missing backends named`, { skip: reason }, () => {
      const text = readFileSync(sample, 'utf8');
      const r = convert(sample, text);
      assertAccounted(text, r);
      assert.deepEqual(r.skipped.filter((s) => s.why === UNKNOWN), []);
      // The shipped sample defines no backend (backend_hostname0 is commented out).
      assert.throws(() => parseConfig(r.tree, sample, {}), (e: Error) => e instanceof ConfigError && e.problems.some((p) => /^backends: at least one backend/.test(p)));
    });

    it(`${sample} with every documented example line switched on: check-config accepts the result`, { skip: reason }, () => {
      // The sample documents each setting as a commented-out "#name = value" line: switching
      // them all on converts every setting pgpool documents.
      const text = readFileSync(sample, 'utf8').replace(/^#([a-z_0-9]+\s*=)/gm, '$1');
      const r = convert(sample, text);
      assertAccounted(text, r);
      assert.deepEqual(r.skipped.filter((s) => s.why === UNKNOWN), [], 'the converter knows every setting the sample documents');
      const cfg = parseConfig(r.tree, sample, {});
      assert.deepEqual(
        cfg.backends.map((b) => [b.name, b.host, b.port, b.data_dir]),
        [
          ['server0', 'host1', 5432, '/data'],
          ['server1', 'host2', 5433, '/data1'],
        ],
      );
      assert.match(r.skipped.find((s) => s.key === 'health_check_period')!.why, /turns pgpool's health check off/);
      assert.equal(cfg.proxy.port, 5433);
      assert.equal(cfg.log.level, 'warn');
    });
  }
});

describe('pgwatchdog import-pgpool-conf (the command)', () => {
  function cli(args: string[]) {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  }

  it('writes a file check-config accepts and lists what it left behind', () => {
    const out = join(dir, 'converted.yaml');
    const r = cli(['import-pgpool-conf', join(FIXTURES, 'pgpool-4.2-watchdog.conf'), '-o', out]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /2 backends, 3 watchdog peers; \d+ settings carried over → /);
    assert.match(r.err, /not carried over \(13\):\n {2}pcp_port = '9898': PCP is replaced/);
    const yaml = readFileSync(out, 'utf8');
    assert.match(yaml, /^# Not carried over from .* \(13\):$/m, 'the file lists them too');
    assert.match(yaml, /^# {3}wd_priority = '2': /m);
    writeFileSync(join(dir, 'userlist.txt'), '"u" "p"\n');
    const check = cli(['check-config', '-c', out]);
    assert.equal(check.code, 0, check.err);

    const again = cli(['import-pgpool-conf', join(FIXTURES, 'pgpool-4.2-watchdog.conf'), '-o', out]);
    assert.equal(again.code, 1, 'an existing file is not overwritten');
    assert.match(again.err, /exists; not overwritten \(add --force/);
  });

  it('hides secrets in what it echoes, and says why a result is not usable yet', () => {
    const conf = join(dir, 'nobackend.conf');
    writeFileSync(conf, "sr_check_password = 'hunter2'\n");
    const r = cli(['import-pgpool-conf', conf]);
    assert.equal(r.code, 1);
    assert.doesNotMatch(r.out + r.err, /hunter2/);
    assert.match(r.err, /sr_check_password = \(hidden\)/);
    assert.match(r.err, /does not pass check-config yet:\n {2}backends: at least one backend is required/);
  });

  it('names the file and line it cannot read', () => {
    const conf = join(dir, 'broken.conf');
    writeFileSync(conf, "port = 1\nlisten_addresses = 'x\n");
    const r = cli(['import-pgpool-conf', conf]);
    assert.equal(r.code, 1);
    assert.equal(r.err.trim(), `${conf}: line 2: unterminated quoted value for listen_addresses`);
    assert.equal(cli(['import-pgpool-conf', join(dir, 'absent.conf')]).code, 1);
  });
});
