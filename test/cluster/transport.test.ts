// The watchdog transport over real loopback sockets: authentication, bad input, dead links.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket, WebSocketServer } from 'ws';
import { WIRE_VERSION, type Envelope } from '../../src/cluster/wire.js';
import { FaultyTransport } from '../../src/cluster/fault-transport.js';
import type { PeerTransport } from '../../src/cluster/transport.js';
import { addresses, transport, until } from './helpers.js';

const closers: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c().catch(() => undefined);
});

function started<T extends { start(): Promise<unknown>; close(): Promise<void> }>(t: T): Promise<T> {
  closers.push(() => t.close());
  return t.start().then(() => t);
}

const hb = (from: string, to: string, tick: number): Envelope => ({ v: WIRE_VERSION, kind: 'raft', from, body: { type: 'heartbeat', from, to, term: 1, commit: 0, tick } });

function inbox(t: PeerTransport): Envelope[] {
  const got: Envelope[] = [];
  t.on('message', (e) => got.push(e));
  return got;
}

/** Waits for a message from `from` to `to` to arrive, resending (links may still be coming up). */
async function delivered(from: PeerTransport, to: PeerTransport, got: Envelope[], tick: number): Promise<void> {
  await until(() => {
    if (got.some((e) => e.kind === 'raft' && e.body.type === 'heartbeat' && e.body.tick === tick && e.from === from.self)) return true;
    from.send(to.self, hb(from.self, to.self, tick));
    return false;
  }, 5000, `${from.self} → ${to.self} delivery`);
}

function dropped(t: { captured: { lines: { msg: string; reason?: unknown; detail?: unknown }[] } }, reason: string) {
  return t.captured.lines.filter((l) => l.msg.startsWith('watchdog input dropped (logged once') && l.reason === reason);
}

describe('watchdog transport', () => {
  it('connects every pair once, both ways, and delivers messages', async () => {
    const peers = await addresses(['a', 'b', 'c']);
    const [a, b, c] = await Promise.all(peers.map((p) => started(transport(p.name, peers))));
    await until(() => [a, b, c].every((t) => t.connected().length === 2), 5000, 'full mesh');
    const [ga, gb, gc] = [inbox(a), inbox(b), inbox(c)];
    await delivered(a, b, gb, 1);
    await delivered(b, a, ga, 2);
    await delivered(c, a, ga, 3);
    await delivered(a, c, gc, 4);
    await delivered(b, c, gc, 5);
  });

  it('refuses a peer with the wrong auth_key, and logs it once per address', async () => {
    const peers = await addresses(['a', 'b']);
    const b = await started(transport('b', peers));
    const a = await started(transport('a', peers, { authKey: 'wrong' }));
    await until(() => dropped(b, 'authentication failed').length === 1, 5000, 'refusal logged');
    await new Promise((r) => setTimeout(r, 500)); // a redials a few times meanwhile
    assert.deepEqual(b.connected(), []);
    assert.deepEqual(a.connected(), []);
    assert.equal(dropped(b, 'authentication failed').length, 1, 'logged once, not per attempt');
    assert.match(String(dropped(b, 'authentication failed')[0]!.detail), /peer "a": wrong auth_key/);
  });

  it('refuses a replayed handshake', async () => {
    const peers = await addresses(['a', 'b']);
    // A fake "b" records the hello that the real "a" sends it.
    const fake = new WebSocketServer({ host: '127.0.0.1', port: peers[1]!.port });
    closers.push(() => new Promise<void>((r) => fake.close(() => r())));
    const recorded = new Promise<string>((resolve) =>
      fake.on('connection', (ws) => {
        ws.send(JSON.stringify({ v: 1, kind: 'challenge', peer: 'b', nonce: Buffer.alloc(32, 7).toString('base64') }));
        ws.once('message', (d) => {
          resolve(d.toString());
          ws.terminate();
        });
      }),
    );
    const a = await started(transport('a', peers));
    const hello = await recorded;
    await a.close();
    await new Promise<void>((r) => fake.close(() => r()));
    // The real "b" on the same port: the recorded hello is replayed to it.
    const b = await started(transport('b', peers));
    const ws = new WebSocket(`ws://127.0.0.1:${peers[1]!.port}/`);
    closers.push(async () => ws.terminate());
    const msgs: string[] = [];
    ws.on('message', (d) => {
      msgs.push(d.toString());
      if (msgs.length === 1) ws.send(hello);
    });
    const code = await new Promise<number>((r) => ws.on('close', (c) => r(c)));
    assert.equal(code, 1008);
    assert.equal(msgs.length, 1, 'no welcome for a replayed hello');
    assert.deepEqual(b.connected(), []);
    assert.equal(dropped(b, 'authentication failed').length, 1);
  });

  it('garbage, strangers and oversized messages do not disturb the links', async () => {
    const peers = await addresses(['a', 'b']);
    const [a, b] = await Promise.all(peers.map((p) => started(transport(p.name, peers))));
    await until(() => a.connected().length === 1 && b.connected().length === 1);
    let downs = 0;
    a.on('down', () => downs++);
    b.on('down', () => downs++);
    const port = peers[1]!.port;
    // raw bytes, twice (logged once)
    for (let i = 0; i < 2; i++) {
      await new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => s.end(Buffer.from([0, 1, 2, 255, 13, 10, 13, 10, 7, 7])));
        s.on('close', () => resolve());
        s.on('error', () => resolve());
      });
    }
    // a plain HTTP request
    const res = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(res.status, 426);
    // an unauthenticated WebSocket that sends a peer message instead of a hello
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    ws.on('open', () => ws.send(JSON.stringify(hb('a', 'b', 1))));
    await new Promise((r) => ws.on('close', r));
    // a silent WebSocket that never says hello is dropped after the handshake timeout
    const silent = new WebSocket(`ws://127.0.0.1:${port}/`);
    closers.push(async () => silent.terminate());
    // an authenticated peer sending garbage and an oversized message: dropped, link kept
    const gb = inbox(b);
    const linkOfA = (a as unknown as { links: Map<string, { ws: WebSocket }> }).links.get('b')!.ws;
    linkOfA.send('{"v":1,"kind":"raft","from":"a","body":{"type":"nope"}}');
    linkOfA.send('x'.repeat(1024 * 1024 + 10));
    linkOfA.send(JSON.stringify(hb('c', 'b', 9)));
    await delivered(a, b, gb, 42);
    assert.equal(gb.filter((e) => e.kind === 'raft' && e.body.type === 'heartbeat' && e.body.tick === 9).length, 0);
    assert.equal(downs, 0, 'the a–b link stayed up');
    for (const r of ['garbage on the watchdog port', 'not a WebSocket upgrade', 'malformed hello', 'malformed message', 'oversized', 'misaddressed message']) {
      assert.equal(dropped(b, r).length, 1, `${r} logged once`);
    }
  });

  it('notices a frozen peer within a few ping intervals, and reconnects when it thaws', async () => {
    const peers = await addresses(['a', 'b']);
    const relayPort = (await addresses(['r']))[0]!.port;
    // a reaches b through a relay that can freeze (sockets open, nothing passes: a hung host)
    let frozen = false;
    const relay = net.createServer((c) => {
      const up = net.connect(peers[1]!.port, '127.0.0.1');
      c.on('data', (d) => !frozen && up.write(d));
      up.on('data', (d) => !frozen && c.write(d));
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
      c.on('close', () => up.destroy());
      up.on('close', () => c.destroy());
    });
    await new Promise<void>((r) => relay.listen(relayPort, '127.0.0.1', r));
    closers.push(() => new Promise((r) => relay.close(r)));
    const viaRelay = peers.map((p) => (p.name === 'b' ? { ...p, port: relayPort } : p));
    const b = await started(transport('b', peers));
    const a = await started(transport('a', viaRelay));
    await until(() => a.connected().length === 1 && b.connected().length === 1);
    frozen = true;
    const t0 = Date.now();
    await until(() => a.connected().length === 0 && b.connected().length === 0, 2000, 'both sides drop the frozen link');
    assert.ok(Date.now() - t0 < 1000, `noticed after ${Date.now() - t0} ms with 100 ms pings`);
    frozen = false;
    await until(() => a.connected().length === 1 && b.connected().length === 1, 5000, 'reconnect');
  });

  it('the fault-injecting wrapper cuts a peer off both ways', async () => {
    const peers = await addresses(['a', 'b', 'c']);
    const raw = await Promise.all(peers.map((p) => started(transport(p.name, peers))));
    await until(() => raw.every((t) => t.connected().length === 2));
    const [a, b, c] = raw.map((t) => new FaultyTransport(t));
    const [ga, gb, gc] = [inbox(a!), inbox(b!), inbox(c!)];
    a!.cut('all');
    assert.deepEqual(a!.connected(), []);
    assert.equal(a!.send('b', hb('a', 'b', 1)), false);
    raw[1]!.send('a', hb('b', 'a', 2));
    await delivered(b!, c!, gc, 3);
    assert.equal(ga.length, 0);
    a!.heal();
    await delivered(a!, b!, gb, 4);
    await delivered(b!, a!, ga, 5);
  });

  it('speaks wss with a CA file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgwd-tls-'));
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const peers = await addresses(['a', 'b']);
    const tls = { cert_file: cert, key_file: key, ca_file: cert };
    const [a, b] = await Promise.all(peers.map((p) => started(transport(p.name, peers, { tls }))));
    const gb = inbox(b);
    await delivered(a, b, gb, 1);
    // a dialer that does not trust the certificate never gets a link
    const other = join(dir, 'other.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k2.pem'), '-out', other, '-days', '1', '-subj', '/CN=x'], { stdio: 'ignore' });
    const peers2 = await addresses(['a', 'b']);
    writeFileSync(join(dir, 'unused'), '');
    const b2 = await started(transport('b', peers2, { tls }));
    const a2 = await started(transport('a', peers2, { tls: { ...tls, ca_file: other } }));
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(a2.connected(), []);
    assert.deepEqual(b2.connected(), []);
  });
});
