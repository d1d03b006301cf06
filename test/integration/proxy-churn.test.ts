// Connection churn through the proxy: many short sessions at once, as pgbench -C makes them.
// The proxy reuses the read buffers of ended sessions for new ones (src/proxy/session.ts) and
// serves clients on its own TCP connections (src/proxy/tcp.ts): every session must still see
// exactly its own answers, whether earlier sessions ended politely, abruptly, or mid-query.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import pg from 'pg';
import { createCluster, SUPERUSER, type PgCluster } from '../support/pg.js';
import { startProxy, type ProxyFixture } from '../support/proxy.js';
import * as codec from '../../src/protocol/codec.js';

describe('proxy under connection churn', () => {
  let cluster: PgCluster;
  let fx: ProxyFixture;

  before(async () => {
    cluster = await createCluster({ standbys: 1 });
    fx = await startProxy(cluster);
  });
  after(async () => {
    await fx?.stop();
    await cluster?.teardown();
  });

  it('hundreds of short sessions in parallel each get their own results', async () => {
    const workers = 6;
    const perWorker = 40;
    let checked = 0;
    const work = async (w: number) => {
      for (let i = 0; i < perWorker; i++) {
        const tag = `w${w}-s${i}-`;
        // Texts from a few bytes to past the small read buffer (2 KiB), so buffers grow too.
        const payload = tag + 'x'.repeat((w * 997 + i * 131) % 5000);
        const c = new pg.Client(fx.client());
        await c.connect();
        const simple = await c.query<{ v: string }>(`SELECT '${payload}'::text AS v`);
        assert.equal(simple.rows[0]!.v, payload);
        const ext = await c.query<{ v: string; n: number }>('SELECT $1::text AS v, $2::int AS n', [payload, i]);
        assert.equal(ext.rows[0]!.v, payload);
        assert.equal(ext.rows[0]!.n, i);
        checked++;
        if (i % 3 === 0) {
          // Gone without Terminate: the proxy sees EOF.
          (c as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
          c.on('error', () => {});
        } else {
          await c.end();
        }
      }
    };
    // Meanwhile raw clients send a startup packet and a query, then vanish before the answer.
    const vandal = async () => {
      for (let i = 0; i < 60; i++) {
        const s = net.connect({ host: fx.host, port: fx.port });
        s.on('error', () => {});
        await new Promise<void>((r) => s.once('connect', () => r()));
        s.write(codec.startupMessage({ user: SUPERUSER, database: 'postgres' }));
        s.write(codec.query(`SELECT 'vandal-${i}'`));
        await new Promise((r) => setTimeout(r, i % 4));
        s.destroy();
      }
    };
    await Promise.all([...Array.from({ length: workers }, (_, w) => work(w)), vandal()]);
    assert.equal(checked, workers * perWorker);

    // The proxy still serves, and has no session left over from all that.
    const c = await fx.connect();
    assert.equal((await c.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
    await c.end();
    const deadline = Date.now() + 5000;
    while (fx.proxy.stats().clients.total > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(fx.proxy.stats().clients.total, 0, 'sessions left after their clients went away');
  });
});
