// The takeover socket: messages and descriptors cross between two ends, in order, and a
// received descriptor is a live connection this process can adopt. The sending end runs in
// a child process so the descriptors really cross a process boundary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fdpass from '../../src/takeover/fdpass.js';
import { FdChannel, SocketChannel, expect as expectMsg } from '../../src/takeover/channel.js';
import { decode, encode, FrameDecoder } from '../../src/takeover/messages.js';

const skip = fdpass.available() ? false : `descriptor passing is not built: ${fdpass.unavailableReason()}`;

test('frames round-trip; a wrong version, a bad shape and an oversized frame are refused with the reason', () => {
  const d = new FrameDecoder();
  const f = encode({ type: 'hello', pid: 1, version: '0.1.0', fdpass: true });
  assert.deepEqual(d.push(f.subarray(0, 3)), []);
  const [m] = d.push(f.subarray(3));
  assert.equal(m!.type, 'hello');
  assert.throws(() => decode('{"v":2,"type":"hello"}'), /protocol version 2/);
  assert.throws(() => decode('{"v":1,"type":"hello","pid":"x"}'), /bad takeover message "hello": pid/);
  assert.throws(() => decode('{"v":1,"type":"nope"}'), /bad takeover message "nope"/);
  const big = Buffer.alloc(4);
  big.writeUInt32BE(0x7fffffff);
  assert.throws(() => new FrameDecoder().push(big), /frame of/);
});

test('session and idle-connection state is checked field by field, and a bad field is named', () => {
  const leg = { fd: 1, backendId: 0, pid: 42, secret: 7, params: { TimeZone: 'UTC' }, applied: {}, dirty: false, stale: ['s1'] };
  const session = { id: 3, clientFd: 0, user: 'u', database: 'd', startupParams: { user: 'u' }, secret: 9, primary: leg, standby: null, primaryOnly: false, standbyDiverged: false, causal: { own: '12', given: '0', pendingSince: 'running' as const }, answered: 2, statements: [{ name: 'p1', parse: 'AA==', primary: true, write: false, onPrimary: true, onStandby: false }] };
  const text = encode({ type: 'sessions', sessions: [session, { ...session, id: 4, standby: { ...leg, fd: 2 } }] }).subarray(4).toString();
  assert.equal(JSON.parse(text).paramSets.length, 1, 'the servers\' parameters go once per message');
  const ok = decode(text);
  assert.ok(ok.type === 'sessions');
  assert.deepEqual(ok.sessions.map((x) => [x.primary.params, x.standby?.params]), [[leg.params, undefined], [leg.params, leg.params]]);
  assert.throws(() => decode(text.replace('"paramSets":[', '"paramSets":[{"x":"1"},').replace(/"params":0/g, '"params":5')), /params: index 5 is not in paramSets/);
  const bad = (patch: object) => encode({ type: 'sessions', sessions: [{ ...session, ...patch }] } as never).subarray(4).toString();
  assert.throws(() => decode(bad({ primary: { ...leg, params: { TimeZone: 1 } } })), /sessions\.0\.primary\.params\.TimeZone: expected a string/);
  assert.throws(() => decode(bad({ standby: { ...leg, fd: -1 } })), /sessions\.0\.standby\.fd: expected an integer ≥ 0/);
  assert.throws(() => decode(bad({ causal: { own: 'x', given: '0', pendingSince: null } })), /sessions\.0\.causal\.own: expected decimal digits/);
  assert.throws(() => decode(bad({ statements: [{ name: 'p' }] })), /sessions\.0\.statements\.0\.parse: expected a string/);
  const conn = { ...leg, user: 'u', database: 'd', options: '' };
  const pool = decode(encode({ type: 'pool', conns: [conn] }).subarray(4).toString());
  assert.equal(pool.type === 'pool' && pool.conns[0]!.user, 'u');
  assert.throws(() => decode(encode({ type: 'pool', conns: [{ ...conn, options: undefined }] } as never).subarray(4).toString()), /conns\.0\.options: expected a string/);
});

test('descriptors sent by another process arrive with their message and carry live connections', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgwd-fdpass-'));
  const path = join(dir, 't.sock');
  // An echo server; the child connects to it 300 times and sends the connections over.
  const echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  const port = (echo.address() as net.AddressInfo).port;
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fdpass-sender.ts'), path, String(port), '300'], { stdio: ['ignore', 'inherit', 'inherit'] });
  try {
    // Wait for the child's socket.
    let ch: FdChannel | undefined;
    for (let i = 0; i < 200 && !ch; i++) {
      try {
        ch = FdChannel.connect(path, 'sender');
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.ok(ch, 'connected to the sender');
    ch.send({ type: 'send-listeners' });
    const m = await expectMsg(ch, 'sessions', 10_000);
    assert.equal(m.fdList.length, 300, 'all 300 descriptors arrived (two sendmsg calls)');
    assert.equal(m.sessions.length, 0);
    // The sender has closed its copies: each descriptor here is the only one, and live.
    for (const [i, fd] of m.fdList.entries()) {
      if (i % 60 !== 0) {
        fdpass.close(fd);
        continue;
      }
      const s = new net.Socket({ fd, readable: true, writable: true });
      s.write(`ping ${i}`);
      const [data] = (await once(s, 'data')) as [Buffer];
      assert.equal(data.toString(), `ping ${i}`);
      s.destroy();
    }
    const done = await expectMsg(ch, 'done', 5000);
    assert.equal(done.reason, 'sent');
    ch.close();
    await once(child, 'exit');
  } finally {
    child.kill();
    echo.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the receiving end reports a closed sender instead of waiting forever', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgwd-fdpass-'));
  const path = join(dir, 't.sock');
  const server = net.createServer((s) => {
    const ch = new SocketChannel(s, 'new process', true);
    ch.close();
  });
  await new Promise<void>((r) => server.listen(path, r));
  try {
    const ch = FdChannel.connect(path, 'old process');
    await assert.rejects(ch.next(5000), /the old process closed the connection/);
    ch.close();
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
