// The admin API's HTTP contract on an in-process server with a stand-in failover engine (no
// PostgreSQL): every bad request gets a 4xx JSON error naming the problem and the server
// keeps serving; the token is required and compared exactly; mutating calls go to the
// coordinator the WatchdogView names, and a call forwarded once is never forwarded again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { request } from 'node:http';
import { connect } from 'node:net';
import { BackendRegistry } from '../../src/backends/registry.js';
import { parseConfig } from '../../src/config/index.js';
import type { FailoverResult, FailoverStatus } from '../../src/failover/index.js';
import { silentLogger } from '../../src/log.js';
import type { FailoverPort } from '../../src/admin/actions.js';
import { AdminServer } from '../../src/admin/server.js';
import { singlePeerView, type CoordinatorRoute, type WatchdogView } from '../../src/admin/watchdog-view.js';
import { parsePrometheusText, sampleValue } from '../support/prom-text.js';
import { freePort } from '../support/pg.js';

/** The engine's public surface, answering at once: enough to see what the API asked of it. */
class FakeEngine extends EventEmitter<{ result: [FailoverResult]; closeIdle: [number[]] }> {
  calls: string[] = [];
  private seq = 0;
  private readonly history: FailoverResult[] = [];
  constructor(private readonly registry: BackendRegistry) {
    super();
  }
  private finish(kind: FailoverResult['kind'], id: number, ok: boolean, summary: string): Promise<FailoverResult> {
    const now = new Date().toISOString();
    const r: FailoverResult = {
      seq: ++this.seq, kind, ids: [id], reason: 'test', term: 0, switchover: false, ok, summary, oldPrimary: null, newPrimary: null, candidate: null,
      steps: [{ name: kind, backend: id, ok, ms: 1, detail: summary }], detectedAt: null, queuedAt: now, startedAt: now, newPrimaryAt: null, finishedAt: now, toNewPrimaryMs: null, durationMs: 1,
    };
    this.history.push(r);
    setImmediate(() => this.emit('result', r));
    return Promise.resolve(r);
  }
  attach(id: number) {
    this.calls.push(`attach ${id}`);
    this.registry.update(id, { status: 'up' }, 'attached by test');
    return this.finish('node_up', id, true, `backend(s) ${id} attached`);
  }
  detach(id: number) {
    this.calls.push(`detach ${id}`);
    this.registry.update(id, { status: 'down' }, 'detached by test');
    return this.finish('node_down', id, true, `backend(s) ${id} detached`);
  }
  promote(id: number, opts: { switchover?: boolean } = {}) {
    this.calls.push(`promote ${id}${opts.switchover ? ' switchover' : ''}`);
    return this.finish('promote', id, false, `backend ${id} is not an attached standby`);
  }
  status(): FailoverStatus {
    return { active: null, queue: [], history: [...this.history], noCandidate: null, primary: null, synchronous: { mode: 'off', savedStandbyNames: null, last: null } };
  }
}

async function startServer(opts: { token?: string; watchdog?: (self: WatchdogView) => WatchdogView } = {}) {
  const config = parseConfig({ auth: { method: 'trust' }, admin: { host: '127.0.0.1', port: await freePort(), ...(opts.token !== undefined ? { token: opts.token } : {}) }, backends: [{ host: 'db0' }, { host: 'db1' }] }, 'test');
  const registry = new BackendRegistry(config);
  registry.update(0, { status: 'up', role: 'primary' }, 'test');
  registry.update(1, { status: 'up', role: 'standby', lagBytes: 100 }, 'test');
  const engine = new FakeEngine(registry);
  const base = singlePeerView({ name: 'p1', host: '127.0.0.1', proxyPort: () => 9999 });
  const server = new AdminServer({
    config,
    registry,
    failover: engine as unknown as FailoverPort,
    proxyStats: () => ({ clients: { active: 1, idle: 2, total: 3, native: 0 }, pools: [], selectCounts: [5, 7], workers: 1 }),
    proxyListening: () => true,
    watchdog: opts.watchdog ? opts.watchdog(base) : base,
    logger: silentLogger,
    liveTickMs: 100,
  });
  const addr = await server.listen();
  return { server, engine, registry, url: `http://127.0.0.1:${addr.port}` };
}

async function call(url: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const r = await fetch(url, init);
  const text = await r.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { text };
  }
  return { status: r.status, body, headers: r.headers };
}

const auth = (t: string) => ({ authorization: `Bearer ${t}` });

test('bad requests get a 4xx JSON error naming the problem, and the server keeps serving', async () => {
  const { server, engine, url } = await startServer({ token: 's3cret' });
  try {
    const cases: [string, RequestInit, number, RegExp][] = [
      ['/nope', {}, 404, /no such endpoint: \/nope/],
      ['/v1/status', { method: 'POST', headers: auth('s3cret') }, 405, /POST is not allowed on \/v1\/status/],
      ['/v1/backends/7', {}, 404, /no backend 7: configured backends are 0\.\.1/],
      ['/v1/backends/x', {}, 400, /backend id must be a non-negative integer, got "x"/],
      ['/v1/backends/7/detach', { method: 'POST', headers: auth('s3cret') }, 404, /no backend 7/],
      ['/v1/backends/-1/attach', { method: 'POST', headers: auth('s3cret') }, 400, /non-negative integer/],
      ['/v1/backends/1/detach', { method: 'POST', headers: auth('s3cret'), body: '{bad' }, 400, /request body is not valid JSON/],
      ['/v1/backends/1/detach', { method: 'POST', headers: auth('s3cret'), body: '[1]' }, 400, /must be a JSON object, got an array/],
      ['/v1/backends/1/promote', { method: 'POST', headers: auth('s3cret'), body: '{"switchover":"yes"}' }, 400, /"switchover" must be a boolean/],
      ['/v1/backends/1/promote', { method: 'POST', headers: auth('s3cret'), body: '{"force":true}' }, 400, /unknown key in request body: "force" \(allowed: switchover\)/],
      ['/v1/backends/1/promote?switchover=maybe', { method: 'POST', headers: auth('s3cret') }, 400, /switchover must be true or false, got "maybe"/],
      ['/v1/backends/1/attach?now=1', { method: 'POST', headers: auth('s3cret') }, 400, /unknown query parameter now/],
      ['/v1/coordinator/transfer', { method: 'POST', headers: auth('s3cret') }, 400, /missing \?to=PEER/],
      ['/v1/coordinator/transfer?to=zz', { method: 'POST', headers: auth('s3cret') }, 404, /no peer named "zz": peers are p1/],
      ['/v1/failovers?limit=0', {}, 400, /limit must be a positive integer/],
      ['/replica?lag=lots', {}, 400, /lag must be a number of bytes/],
      ['/v1/backends/%E0%A4%A', {}, 400, /malformed URL/],
      ['/static/../../etc/passwd', {}, 404, /no such endpoint/],
      ['/static/secret.txt', {}, 404, /no such dashboard asset/],
      ['/v1/backends/1/detach', { method: 'POST', headers: auth('s3cret'), body: 'x'.repeat(70_000) }, 413, /larger than 65536 bytes/],
    ];
    for (const [path, init, status, msg] of cases) {
      const r = await call(url + path, init);
      assert.equal(r.status, status, `${init.method ?? 'GET'} ${path}: ${JSON.stringify(r.body)}`);
      assert.match(String(r.body.error), msg, `${path}`);
      assert.match(r.headers.get('content-type') ?? '', /application\/json/);
    }
    assert.deepEqual(engine.calls, [], 'no bad request reached the engine');
    // A malformed HTTP request line on a raw socket.
    const raw = await new Promise<string>((resolve) => {
      const s = connect(Number(new URL(url).port), '127.0.0.1', () => s.write('NONSENSE\r\n\r\n'));
      let out = '';
      s.on('data', (d) => (out += d.toString()));
      s.on('close', () => resolve(out));
    });
    assert.match(raw, /^HTTP\/1\.1 400/);
    const live = await call(`${url}/liveness`);
    assert.equal(live.status, 200, 'still serving after all that');
  } finally {
    await server.close();
  }
});

test('mutating calls need the token: none 401, wrong 401 (also a prefix of it), right one runs; no token configured 403', async () => {
  const { server, engine, url } = await startServer({ token: 's3cret' });
  try {
    const none = await call(`${url}/v1/backends/1/detach`, { method: 'POST' });
    assert.equal(none.status, 401);
    assert.match(String(none.body.error), /needs the admin token/);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
    for (const t of ['wrong', 's3cre', 's3cret2', '']) {
      const r = await call(`${url}/v1/backends/1/detach`, { method: 'POST', headers: auth(t) });
      assert.equal(r.status, 401, `token ${JSON.stringify(t)}`);
    }
    const basic = await call(`${url}/v1/backends/1/detach`, { method: 'POST', headers: { authorization: 'Basic czNjcmV0' } });
    assert.equal(basic.status, 401);
    assert.deepEqual(engine.calls, []);
    const ok = await call(`${url}/v1/backends/1/detach`, { method: 'POST', headers: auth('s3cret') });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal((ok.body.failover as { result: string }).result, 'backend(s) 1 detached');
    const failed = await call(`${url}/v1/backends/1/promote?switchover=true`, { method: 'POST', headers: auth('s3cret') });
    assert.equal(failed.status, 409, 'a failed action is a 409 with its result');
    assert.match(String(failed.body.error), /not an attached standby/);
    assert.deepEqual(engine.calls, ['detach 1', 'promote 1 switchover']);
    // GETs need no token.
    assert.equal((await call(`${url}/v1/status`)).status, 200);
  } finally {
    await server.close();
  }
  const open = await startServer();
  try {
    const r = await call(`${open.url}/v1/backends/1/detach`, { method: 'POST', headers: auth('anything') });
    assert.equal(r.status, 403);
    assert.match(String(r.body.error), /admin\.token is not set/);
    assert.deepEqual(open.engine.calls, []);
  } finally {
    await open.server.close();
  }
});

test('a mutating call on a non-coordinator is forwarded to the coordinator and answered with its result; never forwarded twice', async () => {
  const coord = await startServer({ token: 's3cret' });
  let route: CoordinatorRoute = { kind: 'forward', peer: 'p0', url: coord.url };
  const follower = await startServer({ token: 's3cret', watchdog: (base) => ({ ...base, coordinatorAdmin: () => route }) });
  try {
    const r = await call(`${follower.url}/v1/backends/1/detach`, { method: 'POST', headers: auth('s3cret') });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.headers.get('x-pgwatchdog-answered-by'), 'p0');
    assert.deepEqual(coord.engine.calls, ['detach 1'], 'the coordinator ran it');
    assert.deepEqual(follower.engine.calls, [], 'the follower did not');
    assert.equal(coord.registry.get(1).status, 'down');

    // Progress streams through the forward too.
    const text = await (await fetch(`${follower.url}/v1/backends/1/attach`, { method: 'POST', headers: { ...auth('s3cret'), accept: 'text/event-stream' } })).text();
    assert.match(text, /event: progress\ndata: \{"type":"queued"/);
    assert.match(text, /event: result\ndata: \{"ok":true/);

    // The coordinator's own errors come back as they are.
    const bad = await call(`${follower.url}/v1/backends/9/attach`, { method: 'POST', headers: auth('s3cret') });
    assert.equal(bad.status, 404);
    assert.match(String(bad.body.error), /no backend 9/);

    // A call already forwarded once is refused rather than forwarded again.
    const loop = await call(`${follower.url}/v1/backends/1/detach`, { method: 'POST', headers: { ...auth('s3cret'), 'x-pgwatchdog-forwarded-by': 'p2' } });
    assert.equal(loop.status, 503);
    assert.match(String(loop.body.error), /forwarded by p2, but this peer \(p1\) is not the coordinator either/);

    // No coordinator known: 503 with the reason; the token is still checked first.
    route = { kind: 'none', reason: 'election in progress' };
    const none = await call(`${follower.url}/v1/backends/1/detach`, { method: 'POST', headers: auth('s3cret') });
    assert.equal(none.status, 503);
    assert.match(String(none.body.error), /no coordinator to run this: election in progress/);
    assert.equal((await call(`${follower.url}/v1/backends/1/detach`, { method: 'POST' })).status, 401);

    // A coordinator that does not answer: 502 naming it.
    route = { kind: 'forward', peer: 'p9', url: 'http://127.0.0.1:9' };
    const gone = await call(`${follower.url}/v1/backends/1/detach`, { method: 'POST', headers: auth('s3cret') });
    assert.equal(gone.status, 502);
    assert.match(String(gone.body.error), /could not forward to the coordinator p9/);
    assert.deepEqual(coord.engine.calls, ['detach 1', 'attach 1'], 'only the valid calls reached the coordinator');
  } finally {
    await follower.server.close();
    await coord.server.close();
  }
});

test('/metrics parses as strict Prometheus text and counts failovers; the live feed pushes a change without being asked', async () => {
  const { server, url, registry } = await startServer({ token: 's3cret' });
  try {
    const events: string[] = [];
    const ac = new AbortController();
    const res = await fetch(`${url}/v1/events`, { signal: ac.signal });
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    const nextStatus = async (pred: (s: { status: { backends: { status: string }[] } }) => boolean) => {
      for (;;) {
        const i = buf.indexOf('\n\n');
        if (i >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = /^data: (.*)$/m.exec(frame)?.[1];
          if (frame.startsWith('event: status') && data) {
            events.push(data);
            const s = JSON.parse(data) as { status: { backends: { status: string }[] } };
            if (pred(s)) return s;
          }
          continue;
        }
        const { value, done } = await reader.read();
        if (done) throw new Error('stream ended');
        buf += decoder.decode(value, { stream: true });
      }
    };
    await nextStatus((s) => s.status.backends[1]!.status === 'up');
    registry.update(1, { status: 'quarantine' }, 'seen down by this peer alone');
    const t0 = Date.now();
    await nextStatus((s) => s.status.backends[1]!.status === 'quarantine');
    assert.ok(Date.now() - t0 < 2000, 'the change arrived within the tick');
    ac.abort();

    await call(`${url}/v1/backends/0/detach`, { method: 'POST', headers: auth('s3cret') });
    await call(`${url}/v1/backends/1/promote`, { method: 'POST', headers: auth('s3cret') });
    await new Promise((r) => setTimeout(r, 20)); // the 'result' events are emitted on the next turn
    const m = await fetch(`${url}/metrics`);
    assert.match(m.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const fams = parsePrometheusText(await m.text());
    assert.equal(sampleValue(fams, 'pgwatchdog_backend_up', { backend: '0' }), 0);
    assert.equal(sampleValue(fams, 'pgwatchdog_backend_status', { backend: '1', status: 'quarantine' }), 1);
    assert.equal(sampleValue(fams, 'pgwatchdog_quarantines_total', { backend: '1' }), 1);
    assert.equal(sampleValue(fams, 'pgwatchdog_backend_replication_lag_bytes', { backend: '1' }), 100);
    assert.equal(sampleValue(fams, 'pgwatchdog_backend_reads_routed_total', { backend: '1' }), 7);
    assert.equal(sampleValue(fams, 'pgwatchdog_client_sessions', { state: 'idle' }), 2);
    assert.equal(sampleValue(fams, 'pgwatchdog_failovers_total', { kind: 'node_down', result: 'ok' }), 1);
    assert.equal(sampleValue(fams, 'pgwatchdog_failovers_total', { kind: 'promote', result: 'failed' }), 1);
    assert.equal(sampleValue(fams, 'pgwatchdog_failover_duration_seconds_count', { kind: 'promote' }), 1);
    assert.equal(fams.get('pgwatchdog_failover_duration_seconds')?.type, 'histogram');
    assert.equal(sampleValue(fams, 'pgwatchdog_raft_term'), 0, 'a standalone peer: term 0');
    assert.equal(sampleValue(fams, 'pgwatchdog_coordinator'), 1);
    assert.equal(sampleValue(fams, 'pgwatchdog_watchdog_peer_state', { peer: 'p1', state: 'standalone' }), 1);
    assert.equal(fams.get('pgwatchdog_vip_holder')?.samples.length, 0, 'no VIP holder alone');
    for (const f of fams.values()) if (f.name.startsWith('pgwatchdog_')) assert.ok(f.help && f.help.length > 10, `${f.name} has HELP`);
  } finally {
    await server.close();
  }
});

test('the strict Prometheus parser refuses what Prometheus refuses', () => {
  const bad = [
    'x{a="1"} 1\nx{a="1"} 2\n',
    '# TYPE x gauge\nx 1\n# HELP x late\n',
    'x{a="\\q"} 1\n',
    'x{1a="b"} 1\n',
    'x one\n',
    '# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx{a="b"} 2\n',
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 1\n',
    'x 1',
  ];
  for (const t of bad) assert.throws(() => parsePrometheusText(t), Error, JSON.stringify(t));
  const ok = parsePrometheusText('# HELP x an x\n# TYPE x counter\nx{a="q\\"uote"} 1.5e3\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n');
  assert.equal(sampleValue(ok, 'x', { a: 'q"uote' }), 1500);
});

test('HEAD works on the checks; unknown methods are 405 with Allow', async () => {
  const { server, url } = await startServer();
  try {
    const h = await fetch(`${url}/health`, { method: 'HEAD' });
    assert.equal(h.status, 200);
    const put = await new Promise<{ status: number; allow: string | undefined }>((resolve, reject) => {
      const r = request(`${url}/v1/status`, { method: 'PUT' }, (res) => {
        res.resume();
        resolve({ status: res.statusCode!, allow: res.headers.allow });
      });
      r.on('error', reject);
      r.end();
    });
    assert.deepEqual(put, { status: 405, allow: 'GET, HEAD' });
  } finally {
    await server.close();
  }
});
