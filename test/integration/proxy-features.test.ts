// Session features through the proxy against real servers: COPY in and out of 100 MB,
// LISTEN/NOTIFY, cancel of a running pg_sleep, sessions ended with 57P01 when their backend
// leaves service (others keep working), a clear error when a pool is exhausted, and the
// startup-phase protocol (GSSENC, NegotiateProtocolVersion, oversized packets).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import pg from 'pg';
import { createCluster, type PgCluster, pgBin, run, freePort } from '../support/pg.js';
import { startProxy, libpqEnv, serverPort, backendKey, cancelThroughProxy, type ProxyFixture } from '../support/proxy.js';
import * as codec from '../../src/protocol/codec.js';

/** Reads from a raw socket until `n` bytes or close. */
function readSome(sock: net.Socket, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    const done = () => resolve(Buffer.concat(parts));
    sock.on('data', (d: Buffer) => parts.push(d));
    sock.once('close', done);
    setTimeout(done, timeoutMs);
  });
}

describe('proxy session features', () => {
  let cluster: PgCluster;
  let fx: ProxyFixture;

  before(async () => {
    cluster = await createCluster({ standbys: 2 });
    await cluster.primary.sql('CREATE TABLE big (id int, payload text)');
    await cluster.waitReplicated();
    fx = await startProxy(cluster);
  });
  after(async () => {
    await fx?.stop();
    await cluster?.teardown();
  });

  it('COPY FROM STDIN and COPY TO STDOUT of 100 MB with psql', async () => {
    const file = join(cluster.dir, 'big.tsv');
    const ws = createWriteStream(file);
    const line = (i: number) => `${i}\t${'x'.repeat(90)}${String(i).padStart(9, '0')}\n`;
    const rows = 1_000_000; // ~106 MB
    let chunk = '';
    for (let i = 0; i < rows; i++) {
      chunk += line(i);
      if (chunk.length > 1 << 20) {
        if (!ws.write(chunk)) await once(ws, 'drain');
        chunk = '';
      }
    }
    ws.end(chunk);
    await once(ws, 'finish');
    const env = libpqEnv(fx);
    await run(pgBin('psql'), ['-X', '-v', 'ON_ERROR_STOP=1', '-c', `\\copy big FROM '${file}'`], { asPostgres: false, env });
    const [cnt] = await cluster.primary.sql<{ n: string; b: string }>('SELECT count(*) AS n, sum(length(payload))::text AS b FROM big');
    assert.equal(cnt!.n, String(rows));
    assert.equal(cnt!.b, String(rows * 99));
    const out = join(cluster.dir, 'out.tsv');
    await cluster.waitReplicated();
    await run(pgBin('psql'), ['-X', '-v', 'ON_ERROR_STOP=1', '-c', `\\copy (SELECT * FROM big ORDER BY id) TO '${out}'`], { asPostgres: false, env });
    const { createHash } = await import('node:crypto');
    const { readFileSync } = await import('node:fs');
    const digest = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
    assert.equal(digest(out), digest(file), 'COPY TO STDOUT returns exactly what COPY FROM loaded');
  });

  it('delivers NOTIFY to a LISTENing client, with the backend pid the client was given', async () => {
    const listener = await fx.connect();
    const sender = await fx.connect();
    try {
      await listener.query('LISTEN chan');
      const got = new Promise<pg.Notification>((resolve) => listener.once('notification', resolve));
      await sender.query("NOTIFY chan, 'hello'");
      const n = await got;
      assert.equal(n.channel, 'chan');
      assert.equal(n.payload, 'hello');
      // The pid in BackendKeyData is the session's primary backend pid.
      const pid = (await sender.query<{ p: number }>('SELECT pg_backend_pid() AS p FROM pg_class LIMIT 1 FOR UPDATE')).rows[0]!.p;
      assert.equal(n.processId, pid);
      // Notifications sent by the listener itself arrive too, between its own results.
      const self = new Promise<pg.Notification>((resolve) => listener.once('notification', resolve));
      await listener.query("SELECT pg_notify('chan', 'self')");
      assert.equal((await self).payload, 'self');
    } finally {
      await listener.end();
      await sender.end();
    }
  });

  it('cancels a running pg_sleep(30) on the backend that runs it', async () => {
    for (const sql of ['SELECT pg_sleep(30)', 'SELECT pg_sleep(30) FROM pg_class LIMIT 1 FOR UPDATE']) {
      const c = await fx.connect();
      try {
        assert.equal(await cancelThroughProxy(fx, c, sql), '57014', `${sql}: expected query_canceled within 10 s`);
        assert.equal((await c.query('SELECT 1 AS x')).rows[0].x, 1, 'session usable after cancel');
      } finally {
        await c.end();
      }
    }
  });

  it('failover_sessions keep: sessions whose load-balance standby leaves service read on the primary, with no error', async () => {
    const fx2 = await startProxy(cluster);
    const clients: { c: pg.Client; port: number; errors: Error[] }[] = [];
    try {
      const victim = cluster.standbys[0]!.port;
      for (let i = 0; i < 12; i++) {
        const c = await fx2.connect();
        const entry: (typeof clients)[number] = { c, port: await serverPort(c), errors: [] };
        c.on('error', (e) => entry.errors.push(e));
        clients.push(entry);
      }
      assert.ok(clients.some((e) => e.port === victim), 'sessions on the standby');
      fx2.registry.update(1, { status: 'down' }, 'test: standby1 failed');
      await new Promise((r) => setTimeout(r, 200));
      for (const e of clients) {
        assert.deepEqual(e.errors, []);
        assert.equal(await serverPort(e.c), e.port === victim ? cluster.primary.port : e.port);
      }
    } finally {
      for (const e of clients) await e.c.end().catch(() => {});
      fx2.registry.update(1, { status: 'up' }, 'test: standby1 back');
      await fx2.stop();
    }
  });

  it('failover_sessions end: ends sessions on a backend that leaves service with 57P01; others keep working', async () => {
    const fx2 = await startProxy(cluster, { proxy: { failover_sessions: 'end' } });
    const clients: { c: pg.Client; port: number; err?: { code?: string; message: string } }[] = [];
    try {
      const victim = cluster.standbys[0]!.port;
      for (let i = 0; i < 12; i++) {
        const c = await fx2.connect();
        const entry: (typeof clients)[number] = { c, port: await serverPort(c) };
        c.on('error', (e) => (entry.err ??= e as { code?: string; message: string }));
        clients.push(entry);
      }
      assert.ok(clients.some((e) => e.port === victim) && clients.some((e) => e.port !== victim), 'sessions on both standbys');
      fx2.registry.update(1, { status: 'down' }, 'test: standby1 failed');
      await new Promise((r) => setTimeout(r, 200));
      for (const e of clients) {
        if (e.port === victim) {
          assert.equal(e.err?.code, '57P01');
          assert.match(e.err!.message, /backend 1 \(standby1\) failed over/);
        } else {
          assert.equal(await serverPort(e.c), e.port);
        }
      }
      // New sessions avoid the downed standby.
      for (let i = 0; i < 5; i++) {
        const c = await fx2.connect();
        assert.notEqual(await serverPort(c), victim);
        await c.end();
      }
    } finally {
      for (const e of clients) await e.c.end().catch(() => {});
      await fx2.stop();
    }
  });

  it('fails with a clear error when the pool stays exhausted', async () => {
    const fx3 = await startProxy(cluster, { proxy: { load_balance: false, pool: { max_per_backend: 1, acquire_timeout_ms: 300 } } });
    const c1 = await fx3.connect();
    try {
      const c2 = new pg.Client(fx3.client());
      const err = await c2.connect().then(
        () => null,
        (e: { code?: string; message: string }) => e,
      );
      assert.equal(err?.code, '53300');
      assert.match(err!.message, /pool of backend 0 is exhausted.*max_per_backend/);
      await c1.end();
      // Freed: the next client gets the connection back from the pool.
      const c3 = await fx3.connect();
      assert.equal((await c3.query('SELECT 1 AS x')).rows[0].x, 1);
      await c3.end();
    } finally {
      await c1.end().catch(() => {});
      await fx3.stop();
    }
  });

  it('sends no reads to a standby over max_lag_bytes', async () => {
    const c = await fx.connect();
    try {
      const sb = await serverPort(c);
      const id = cluster.nodes.findIndex((n) => n.port === sb);
      fx.registry.update(id, { lagBytes: fx.config.proxy.max_lag_bytes + 1 }, 'test: lagging');
      assert.equal(await serverPort(c), cluster.primary.port, 'the lagging standby gets no more reads');
      fx.registry.update(id, { lagBytes: 0 }, 'test: caught up');
      assert.equal(await serverPort(c), sb);
    } finally {
      await c.end();
    }
  });

  it('reports a refused backend connection and serves the session from the primary', async () => {
    const dead = await freePort();
    const errors: number[] = [];
    const fx4 = await startProxy(cluster, { extraBackends: [{ host: '127.0.0.1', port: dead, weight: 1000 }], onBackendError: (id) => errors.push(id) });
    try {
      const c = await fx4.connect();
      assert.equal(await serverPort(c), cluster.primary.port);
      await c.end();
      assert.deepEqual(errors, [3], 'onBackendError named the refused backend');
    } finally {
      await fx4.stop();
    }
  });

  it('closes pooled connections idle longer than idle_timeout_ms', async () => {
    const fx5 = await startProxy(cluster, { proxy: { pool: { idle_timeout_ms: 200 } } });
    try {
      const c = await fx5.connect();
      await c.query('SELECT 1');
      await c.end();
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(fx5.proxy.stats().pools.some((p) => p.idle > 0), 'connections pooled after the session');
      await new Promise((r) => setTimeout(r, 700));
      assert.deepEqual(
        fx5.proxy.stats().pools.map((p) => p.total),
        [0, 0, 0],
      );
    } finally {
      await fx5.stop();
    }
  });

  it('closeIdle closes idle pooled connections to a backend and leaves those in use', async () => {
    const fx6 = await startProxy(cluster);
    const pids = async (): Promise<number[]> =>
      (await cluster.primary.sql<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")).map((r) => Number(r.pid));
    try {
      const busy = await fx6.connect();
      const done = await fx6.connect();
      const busyPid = backendKey(busy).processID;
      const idlePid = backendKey(done).processID;
      assert.notEqual(busyPid, idlePid);
      await done.query('SELECT 1');
      await done.end();
      await new Promise((r) => setTimeout(r, 100));
      assert.ok((await pids()).includes(idlePid), 'the finished session left its primary connection pooled');
      fx6.proxy.closeIdle([0]);
      const deadline = Date.now() + 3000;
      while ((await pids()).includes(idlePid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const after = await pids();
      assert.ok(!after.includes(idlePid), 'the idle pooled connection is gone from pg_stat_activity');
      assert.ok(after.includes(busyPid), 'the connection in use stays');
      assert.equal((await busy.query('SELECT 1 AS one')).rows[0].one, 1);
      await busy.end();
    } finally {
      await fx6.stop();
    }
  });

  it('forwards an extended-protocol batch at Flush, before any Sync', async () => {
    const s = net.connect({ host: fx.host, port: fx.port });
    await once(s, 'connect');
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => (buf = Buffer.concat([buf, d])));
    const waitFor = async (needle: Buffer) => {
      for (let i = 0; i < 200 && !buf.includes(needle); i++) await new Promise((r) => setTimeout(r, 10));
      return buf.includes(needle);
    };
    s.write(codec.startupMessage({ user: 'postgres', database: 'postgres' }));
    assert.ok(await waitFor(Buffer.from('Z\0\0\0\x05I')));
    buf = Buffer.alloc(0);
    const msg = (t: string, body: Buffer) => {
      const b = Buffer.alloc(5 + body.length);
      b[0] = t.charCodeAt(0);
      b.writeInt32BE(4 + body.length, 1);
      body.copy(b, 5);
      return b;
    };
    s.write(
      Buffer.concat([
        msg('P', Buffer.from('\0SELECT 4242::text\0\0\0', 'latin1')),
        msg('B', Buffer.from('\0\0\0\0\0\0\0\0', 'latin1')),
        msg('E', Buffer.from('\0\0\0\0\0', 'latin1')),
        msg('H', Buffer.alloc(0)),
      ]),
    );
    assert.ok(await waitFor(Buffer.from('4242')), 'the row arrives after Flush, without Sync');
    assert.ok(!buf.includes(Buffer.from('Z\0\0\0\x05')), 'no ReadyForQuery before Sync');
    s.write(msg('S', Buffer.alloc(0)));
    assert.ok(await waitFor(Buffer.from('Z\0\0\0\x05I')), 'ReadyForQuery after Sync');
    s.destroy();
  });

  it('startup protocol: GSSENC gets N, newer minor gets NegotiateProtocolVersion, oversized packet an error', async () => {
    // GSSENCRequest then SSLRequest (no TLS configured): 'N' twice, then a normal startup.
    const s = net.connect({ host: fx.host, port: fx.port });
    await once(s, 'connect');
    const gss = Buffer.alloc(8);
    gss.writeInt32BE(8, 0);
    gss.writeInt32BE(codec.GSSENC_REQUEST_CODE, 4);
    const ssl = Buffer.alloc(8);
    ssl.writeInt32BE(8, 0);
    ssl.writeInt32BE(codec.SSL_REQUEST_CODE, 4);
    const startup = codec.startupMessage({ user: 'postgres', database: 'postgres', '_pq_.x': 'y' });
    startup.writeInt32BE((3 << 16) | 2, 4); // protocol 3.2, with an unknown protocol option
    const reply = readSome(s, 1500);
    s.write(gss);
    s.write(ssl);
    s.write(startup);
    const r = await reply;
    s.destroy();
    assert.equal(String.fromCharCode(r[0]!), 'N');
    assert.equal(String.fromCharCode(r[1]!), 'N');
    assert.equal(String.fromCharCode(r[2]!), 'v', 'NegotiateProtocolVersion');
    assert.equal(r.readInt32BE(7), 3 << 16, 'newest supported is 3.0');
    assert.ok(r.includes(Buffer.from('_pq_.x\0')));
    assert.ok(r.includes(Buffer.from('Z\0\0\0\x05I')), 'session reached ReadyForQuery');

    const big = net.connect({ host: fx.host, port: fx.port });
    await once(big, 'connect');
    const bigReply = readSome(big);
    const hdr = Buffer.alloc(8);
    hdr.writeInt32BE(10_001, 0);
    hdr.writeInt32BE(codec.PROTOCOL_3_0, 4);
    big.write(hdr);
    const closed = once(big, 'close');
    const br = await bigReply;
    await closed;
    // As PostgreSQL does (it only logs "invalid length of startup packet"): closed, unanswered.
    assert.equal(br.length, 0);

    const neg = net.connect({ host: fx.host, port: fx.port });
    await once(neg, 'connect');
    const negReply = readSome(neg);
    neg.write(codec.startupMessage({ user: 'postgres', database: 'postgres' }));
    const m = Buffer.from([0x51, 0xff, 0xff, 0xff, 0xf0]); // Query with a negative length
    setTimeout(() => neg.write(m), 200);
    const nr = await negReply;
    assert.match(nr.toString('latin1'), /invalid message length/);
  });
});
