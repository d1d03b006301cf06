// `pgwatchdog reload` against a stand-in admin API: it posts to /v1/reload with the token and
// prints what was applied and what needs a restart; a refused reload and a peer without the
// route get a clear answer and exit 1.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ReloadView } from '../../src/reload.js';
import { freePort } from '../support/pg.js';

const BIN = new URL('../../bin/pgwatchdog.js', import.meta.url).pathname;
let answer: { status: number; body: ReloadView | string } = { status: 404, body: 'not found' };
const seen: IncomingMessage[] = [];
const server = createServer((req, res) => {
  seen.push(req);
  res.writeHead(answer.status, { 'content-type': 'application/json' }).end(typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body));
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
after(() => server.close());

function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, PGWATCHDOG_TOKEN: 'sesame' } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code) => resolve({ code, out, err }));
  });
}

test('prints applied and restart-only changes', async () => {
  answer = {
    status: 200,
    body: {
      ok: true,
      file: '/etc/pgwatchdog/pgwatchdog.yaml',
      applied: [{ key: 'backends[1].weight', before: 1, after: 0 }],
      needsRestart: [{ key: 'proxy.port', before: 9999, after: 6432, why: 'the listener is opened at start' }],
    },
  };
  const r = await cli(['reload', '--admin', url]);
  assert.equal(r.code, 0, r.err);
  assert.equal(
    r.out,
    ['reloaded /etc/pgwatchdog/pgwatchdog.yaml', '  applied          backends[1].weight: 1 → 0', '  needs a restart  proxy.port: 9999 → 6432 (the listener is opened at start)', ''].join('\n'),
  );
  const req = seen.at(-1)!;
  assert.equal(req.method, 'POST');
  assert.equal(req.url, '/v1/reload');
  assert.equal(req.headers.authorization, 'Bearer sesame');
});

test('a refused reload: the problems, exit 1', async () => {
  answer = { status: 422, body: { ok: false, file: '/etc/x.yaml', problems: ['proxy: unknown key "colour"'] } };
  const r = await cli(['reload', '--admin', url]);
  assert.equal(r.code, 1);
  assert.equal(r.err, 'reload refused: /etc/x.yaml is invalid; nothing changed:\n  proxy: unknown key "colour"\n');
});

test('a peer without the route: says to send SIGHUP; no peer: says where it looked', async () => {
  answer = { status: 404, body: 'not found' };
  const r = await cli(['reload', '--admin', url]);
  assert.equal(r.code, 1);
  assert.match(r.err, /has no POST \/v1\/reload; send it SIGHUP instead \(systemctl reload pgwatchdog/);
  const nobody = `http://127.0.0.1:${await freePort()}`;
  const gone = await cli(['reload', '--admin', nobody]);
  assert.equal(gone.code, 1);
  assert.equal(gone.err, `pgwatchdog reload: cannot reach the admin API at ${nobody}: ECONNREFUSED\n`);
});
