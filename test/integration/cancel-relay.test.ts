// Cancel routing across peers: a CancelRequest sent to a peer that does not own the session
// (a TCP load balancer in front of the peers) is forwarded over the watchdog connection to
// the peer whose index is in the key, and cancels the query there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { bed, sessionThrough, waitFor } from '../support/watchdog-bed.js';
import * as codec from '../../src/protocol/codec.js';

test('a cancel sent to the wrong peer of a three-peer cluster cancels the query on the peer that owns it', { timeout: 240_000 }, async () => {
  const b = await bed();
  try {
    const owner = b.peers.get('pgwd2')!;
    const wrong = b.peers.get('pgwd3')!;
    // The relay needs the watchdog link between the two (a cancel with no link is dropped, as
    // PostgreSQL drops one it cannot match): peers are ready before their links are up.
    await wrong.waitForLog((l) => l.msg === 'watchdog link up' && l.peer === 'pgwd2');
    const c = await sessionThrough(owner);
    const q = c.query('SELECT pg_sleep(30)').then(
      () => null,
      (e: { code?: string }) => e.code ?? String(e),
    );
    // A cancel that arrives before the query runs cancels nothing: wait until a server runs it.
    const servers = [b.cluster.primary, ...b.cluster.standbys];
    await waitFor('pg_sleep running', async () => {
      for (const srv of servers) {
        const rows = await srv.sql<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'");
        if (rows[0]?.n !== '0') return true;
      }
      return false;
    });
    const s = net.connect({ host: wrong.host, port: wrong.port });
    await once(s, 'connect');
    const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
    s.end(codec.cancelRequest(processID, secretKey));
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([q, new Promise<string>((res) => (timer = setTimeout(() => res('timeout'), 10_000)))]);
    clearTimeout(timer);
    assert.equal(r, '57014', 'the query was cancelled');
    // The log lines may reach the test after the client saw the cancel: wait for them.
    await wrong.waitForLog((l) => l.msg === 'cancel request forwarded to the peer that owns the session' && l.to === 'pgwd2', 10_000);
    await owner.waitForLog((l) => l.msg === 'cancel request forwarded by a peer' && l.from === 'pgwd3', 10_000);
    await c.end();
  } finally {
    await b.teardown();
  }
});
