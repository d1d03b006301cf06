// Online restart of a watchdog peer: the coordinator of a three-peer cluster is restarted
// with `start --takeover`. It hands leadership (and so the VIP) over before the switch, its
// Raft storage is closed before the new process opens it, and the cluster runs no election
// beyond that one transfer and no failover; a client session on the peer moves with it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bed, oneHolder, sessionThrough, type Name } from '../support/watchdog-bed.js';
import type { LogLine } from '../support/peer.js';
import * as fdpass from '../../src/takeover/fdpass.js';

const skip = fdpass.available() ? false : `descriptor passing is not built (${fdpass.unavailableReason()})`;

function maxTerm(logs: LogLine[]): number {
  let t = 0;
  for (const l of logs) if (l.msg === 'raft role changed' && typeof l.term === 'number') t = Math.max(t, l.term);
  return t;
}

test('restarting the coordinator with --takeover: one leadership transfer, the VIP moves once, no failover, its sessions move', { skip, timeout: 240_000 }, async () => {
  const b = await bed();
  try {
    const coord = await oneHolder(b);
    const others = (['pgwd1', 'pgwd2', 'pgwd3'] as Name[]).filter((n) => n !== coord);
    const p = b.peers.get(coord)!;
    // Wait until the coordinator routes sessions (its first entries committed).
    const c = await sessionThrough(p);
    const pid = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
    const termBefore = Math.max(...[...b.peers.values()].map((x) => maxTerm(x.logs)));
    const old = p;
    const next = await b.restart(coord);
    const done = await next.waitForLog((l) => l.msg === 'takeover complete: this process serves everything', 30_000);
    assert.match(String(done.reason), /1 sessions moved, 0 ended/);
    assert.ok(old.logs.some((l) => l.msg === 'leadership handed over' && l.done === true), 'the old process handed leadership over before the switch');
    const holder = await oneHolder(b);
    assert.ok(others.includes(holder), `the VIP moved to another peer (${holder})`);
    // A few seconds on: still that holder, one term more than before, no failover.
    await new Promise((r) => setTimeout(r, 4000));
    assert.deepEqual(b.holders(), [holder], 'the VIP moved once and stayed');
    const termAfter = Math.max(...[...b.peers.values(), old].map((x) => maxTerm(x.logs)));
    assert.equal(termAfter, termBefore + 1, `one election (the transfer), no more: term ${termBefore} → ${termAfter}`);
    assert.equal(b.failoverCount(), 0, 'no failover because of a restart');
    assert.ok(next.logs.some((l) => l.msg === 'watchdog started'), 'the new process runs the watchdog');
    assert.equal((await c.query('SELECT pg_backend_pid() AS p')).rows[0].p, pid, 'the client session moved with its backend connection');
    await c.end();
  } finally {
    await b.teardown();
  }
});
