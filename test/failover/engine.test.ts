// The engine's queue and decisions that need no server: validation, ordering, close_idle,
// a standby's failure (detach + failover_command), refusals. Paths that promote or follow
// are exercised against real servers in test/integration/failover-*.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/index.js';
import { BackendRegistry } from '../../src/backends/registry.js';
import { HealthChecker } from '../../src/backends/health.js';
import { FailoverEngine, RegistryDecisions, type Decision, type Decisions } from '../../src/failover/index.js';
import { silentLogger } from '../../src/log.js';

function setup(failover: object = {}, backends: object[] = [{}, {}, {}], decisions?: (registry: BackendRegistry) => Decisions) {
  const config = parseConfig(
    {
      auth: { method: 'trust' },
      // Ports nothing listens on: these tests must not need a server.
      backends: backends.map((b, i) => ({ host: '127.0.0.1', port: 1 + i, ...b })),
      failover,
    },
    'test',
  );
  const registry = new BackendRegistry(config);
  const health = new HealthChecker({ config, registry, logger: silentLogger });
  // autoRequest false (as under a watchdog): only explicit requests, no timer.
  const engine = new FailoverEngine({ config, registry, logger: silentLogger, health, autoRequest: false, decisions: decisions?.(registry) });
  registry.update(0, { status: 'up', role: 'primary' }, 'test');
  registry.update(1, { status: 'up', role: 'standby' }, 'test');
  registry.update(2, { status: 'up', role: 'standby' }, 'test');
  return { config, registry, engine };
}

test('a command template with an unknown placeholder is refused when the engine is built', () => {
  assert.throws(() => setup({ failover_command: 'x.sh %d %q' }), /failover\.failover_command: unknown placeholder "%q"/);
  assert.throws(() => setup({ follow_primary_command: 'x.sh 100%' }), /failover\.follow_primary_command: a lone "%"/);
});

test('an unknown backend id is refused before anything is queued', async () => {
  const { engine } = setup();
  await assert.rejects(engine.request({ kind: 'node_down', ids: [9], reason: 't' }), RangeError);
  await assert.rejects(engine.request({ kind: 'node_down', ids: [], reason: 't' }), /no backend ids/);
  assert.equal(engine.status().queue.length, 0);
  assert.equal(engine.status().history.length, 0);
});

test('a standby failure detaches it, keeps the primary, runs failover_command with %T; requests run in order', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgwd-engine-'));
  try {
    const rec = join(dir, 'rec');
    const { engine, registry } = setup({ failover_command: `echo %d %m %P %T >> ${rec}` });
    const closed: number[][] = [];
    engine.on('closeIdle', (ids) => closed.push(ids));
    const order: number[] = [];
    const a = engine.request({ kind: 'node_down', ids: [2], reason: 'test: standby 2 failed', term: 7 }).then((r) => (order.push(r.seq), r));
    const b = engine.request({ kind: 'close_idle', ids: [], reason: 'test' }).then((r) => (order.push(r.seq), r));
    assert.equal(engine.status().queue.length + (engine.status().active ? 1 : 0), 2);
    const [ra, rb] = await Promise.all([a, b]);
    assert.deepEqual(order, [ra.seq, rb.seq]);
    assert.equal(ra.ok, true, JSON.stringify(ra.steps));
    assert.equal(ra.newPrimary, 0);
    assert.equal(registry.get(2).status, 'down');
    assert.equal(registry.primary()?.id, 0);
    assert.equal(readFileSync(rec, 'utf8'), '2 0 0 7\n');
    assert.equal(rb.ok, true);
    assert.deepEqual(closed, [[]]);
    // Idempotent: the same request again changes nothing and runs no promotion.
    const again = await engine.request({ kind: 'node_down', ids: [2], reason: 'test: again' });
    assert.match(again.steps[0]!.detail, /already down/);
    assert.equal(engine.status().history.length, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('promote refuses a failover: disallow backend and a backend that is not an attached standby', async () => {
  const { engine, registry } = setup({}, [{}, { failover: 'disallow' }, {}]);
  const r1 = await engine.promote(1);
  assert.equal(r1.ok, false);
  assert.match(r1.summary, /failover: disallow/);
  const r0 = await engine.promote(0);
  assert.equal(r0.ok, false);
  assert.match(r0.summary, /not an attached standby/);
  assert.equal(registry.primary()?.id, 0, 'nothing changed');
});

test('the primary fails and no standby answers: no promotion, the reason is in the status', async () => {
  const { engine, registry } = setup();
  const r = await engine.request({ kind: 'node_down', ids: [0], reason: 'test: primary failed' });
  assert.equal(r.ok, false);
  assert.equal(r.newPrimary, null);
  assert.equal(registry.get(0).status, 'down');
  const nc = engine.status().noCandidate!;
  assert.deepEqual(nc.failed, [0]);
  assert.match(nc.summary, /no standby qualifies for promotion: node 1 health check is down; node 2 health check is down/);
});

/** A sink as the watchdog's will be: seq and term from the cluster, and it may refuse. */
class RecordingDecisions implements Decisions {
  readonly recorded: Decision[] = [];
  refuseFrom = Infinity;
  private seq = 40;
  constructor(private readonly inner: RegistryDecisions) {}
  async record(d: Decision): Promise<void> {
    if (this.recorded.length >= this.refuseFrom) throw new Error('not the leader any more (term 9)');
    this.recorded.push(d);
    await this.inner.record(d);
  }
  nextSeq(): number {
    return ++this.seq;
  }
  term(): number {
    return 8;
  }
}

test('every state change goes through the Decisions sink, with the sink\'s seq and term; a refusal abandons the request and runs no command', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgwd-engine-'));
  try {
    const rec = join(dir, 'rec');
    let sink!: RecordingDecisions;
    const { engine, registry } = setup({ failover_command: `echo %d %T >> ${rec}` }, [{}, {}, {}], (r) => (sink = new RecordingDecisions(new RegistryDecisions(r))));
    const r = await engine.request({ kind: 'node_down', ids: [2], reason: 'test: standby 2 failed' });
    assert.equal(r.seq, 41);
    assert.equal(r.term, 8);
    assert.equal(r.ok, true, r.summary);
    assert.deepEqual(
      sink.recorded.map((d) => d.type),
      ['failoverStarted', 'backend', 'failoverStep', 'failoverStep', 'failoverFinished'],
    );
    assert.deepEqual(sink.recorded[0], { type: 'failoverStarted', seq: 41, kind: 'node_down', ids: [2], term: 8, reason: 'test: standby 2 failed', replaces: null });
    assert.deepEqual(sink.recorded[1], { type: 'backend', id: 2, status: 'down', detachedBy: 'failover', reason: 'test: standby 2 failed' });
    // The command is a recorded step: begun before it runs, done with its outcome after.
    assert.deepEqual(sink.recorded[2], { type: 'failoverStep', seq: 41, step: 'failover_command', backend: 2, phase: 'begun' });
    assert.deepEqual(sink.recorded[3], { type: 'failoverStep', seq: 41, step: 'failover_command', backend: 2, phase: 'done', ok: true, result: 'exit 0' });
    assert.equal(readFileSync(rec, 'utf8'), '2 8\n');

    // The sink refuses the detach (leadership lost): abandoned, no command, no end record.
    sink.refuseFrom = sink.recorded.length + 1;
    const a = await engine.request({ kind: 'node_down', ids: [1], reason: 'test: standby 1 failed' });
    assert.equal(a.ok, false);
    assert.match(a.summary, /^abandoned: the decision could not be recorded \(backend 1: test: standby 1 failed\): not the leader any more \(term 9\)/);
    assert.equal(registry.get(1).status, 'up', 'nothing written');
    assert.equal(readFileSync(rec, 'utf8'), '2 8\n', 'no command ran');
    assert.deepEqual(sink.recorded.at(-1)?.type, 'failoverStarted');

    // Nothing to record for a refused request.
    sink.refuseFrom = Infinity;
    const n = sink.recorded.length;
    const p = await engine.promote(0);
    assert.match(p.summary, /promote refused: backend 0 is not an attached standby/);
    assert.equal(sink.recorded.length, n);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a resumed request goes by its record: a command recorded done is skipped; one cut off whose effect cannot be seen runs again with the new term', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgwd-engine-'));
  try {
    const rec = join(dir, 'rec');
    let sink!: RecordingDecisions;
    const { engine } = setup({ failover_command: `echo %d %T >> ${rec}` }, [{}, {}, {}], (r) => (sink = new RecordingDecisions(new RegistryDecisions(r))));
    const step = { step: 'failover_command' as const, backend: 2, ok: null, result: '', peer: 'a', term: 4, runs: 1 };
    // Recorded done by the earlier run: not run again, nothing new recorded for it.
    const done = await engine.request({ kind: 'node_down', ids: [2], reason: 'resumed', term: 9, resume: { seq: 5, replaces: null, steps: [{ ...step, phase: 'done', ok: true, result: 'exit 0' }] } });
    assert.equal(done.ok, true, done.summary);
    assert.match(done.steps.find((s) => s.name === 'failover_command')!.detail, /resume: failover_command for backend 2: recorded done by a in term 4 \(ok: exit 0\); not run again/);
    assert.equal(sink.recorded.filter((d) => d.type === 'failoverStep').length, 0);
    assert.throws(() => readFileSync(rec, 'utf8'), /ENOENT/, 'the command did not run');
    // Begun, no end recorded, and no server shows its effect (none answers here): run again, %T the new term.
    const again = await engine.request({ kind: 'node_down', ids: [2], reason: 'resumed', term: 10, resume: { seq: 6, replaces: null, steps: [{ ...step, phase: 'begun' }] } });
    assert.equal(again.ok, true, again.summary);
    assert.equal(readFileSync(rec, 'utf8'), '2 10\n');
    assert.deepEqual(
      sink.recorded.filter((d) => d.type === 'failoverStep').map((d) => d.type === 'failoverStep' && [d.step, d.backend, d.phase]),
      [
        ['failover_command', 2, 'begun'],
        ['failover_command', 2, 'done'],
      ],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
