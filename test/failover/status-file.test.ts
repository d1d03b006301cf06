import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readStatusFile, writeStatusFile } from '../../src/failover/status-file.js';
import { parseConninfo, rewriteConninfo } from '../../src/failover/pgops.js';

const backends = [
  { host: 'h', port: 1 },
  { host: 'h', port: 2 },
  { host: 'h', port: 3 },
];

test('status file: round trip, matched by host:port, all-down ignored, pgpool text format', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgwd-status-'));
  try {
    const p = join(dir, 'status.json');
    assert.equal(readStatusFile(p, backends).kind, 'missing');
    writeStatusFile(p, {
      version: 1,
      savedAt: 'now',
      backends: [
        { id: 0, host: 'h', port: 1, status: 'up' },
        { id: 1, host: 'h', port: 2, status: 'down', detachedBy: 'admin' },
        { id: 2, host: 'h', port: 3, status: 'up' },
      ],
      savedSyncStandbyNames: 'FIRST 1 (a)',
    });
    const r = readStatusFile(p, backends);
    assert.equal(r.kind, 'ok');
    assert.equal(r.kind === 'ok' && r.content.backends[1]!.status, 'down');
    assert.equal(r.kind === 'ok' && r.content.savedSyncStandbyNames, 'FIRST 1 (a)');
    // config reordered: the down node keeps its state under its new id
    const r2 = readStatusFile(p, [backends[1]!, backends[0]!, backends[2]!]);
    assert.equal(r2.kind === 'ok' && r2.content.backends.find((e) => e.status === 'down')!.id, 0);

    writeFileSync(p, 'down\ndown\ndown\n');
    const all = readStatusFile(p, backends);
    assert.equal(all.kind, 'ignored');
    assert.match(all.kind === 'ignored' ? all.reason : '', /every backend is down/);
    writeFileSync(p, 'up\ndown\nup\n');
    const txt = readStatusFile(p, backends);
    assert.deepEqual(txt.kind === 'ok' && txt.content.backends.map((e) => e.status), ['up', 'down', 'up']);
    writeFileSync(p, 'garbage');
    assert.equal(readStatusFile(p, backends).kind, 'ignored');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('primary_conninfo rewrite keeps application_name and other keys', () => {
  const old = "user=postgres password='se cr\\'et' channel_binding=prefer host=127.0.0.1 port=5432 application_name=standby2 sslmode=prefer";
  assert.deepEqual(parseConninfo(old).find(([k]) => k === 'password'), ['password', "se cr'et"]);
  const next = rewriteConninfo(old, { host: '127.0.0.1', port: 6000, user: 'repl' });
  const m = Object.fromEntries(parseConninfo(next));
  assert.equal(m.host, '127.0.0.1');
  assert.equal(m.port, '6000');
  assert.equal(m.user, 'repl');
  assert.equal(m.password, "se cr'et");
  assert.equal(m.application_name, 'standby2');
  assert.equal(m.sslmode, 'prefer');
  // idempotent: rewriting again gives the same string
  assert.equal(rewriteConninfo(next, { host: '127.0.0.1', port: 6000, user: 'repl' }), next);
});
