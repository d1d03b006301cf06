import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeEnvelope, decodeHandshake, encode, MAX_MESSAGE_BYTES, WIRE_VERSION, WireError, type Envelope } from '../../src/cluster/wire.js';
import type { PeerView } from '../../src/cluster/view.js';

const view: PeerView = {
  peer: 'a',
  seq: 3,
  startedAt: 1_700_000_000_000,
  backends: [{ id: 0, health: 'up', role: 'primary', lsn: '0/3000060', since: 1_700_000_000_000 }],
  status: { proxyUp: true, sessions: 2, version: '0.1.0', priority: 1, state: 'STANDBY' },
};

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof WireError, String(err));
    return err.reason;
  }
  assert.fail('expected a WireError');
}

describe('wire', () => {
  it('round-trips raft and view envelopes', () => {
    const msgs: Envelope[] = [
      { v: WIRE_VERSION, kind: 'raft', from: 'a', body: { type: 'app', from: 'a', to: 'b', term: 2, index: 4, logTerm: 1, commit: 4, entries: [{ term: 2, index: 5, data: { x: 1 } }, { term: 2, index: 6, data: null }] } },
      { v: WIRE_VERSION, kind: 'raft', from: 'a', body: { type: 'preVote', from: 'a', to: 'b', term: 3, index: 4, logTerm: 1, force: false } },
      { v: WIRE_VERSION, kind: 'raft', from: 'a', body: { type: 'snap', from: 'a', to: 'b', term: 3, snapshot: { meta: { index: 9, term: 3, peers: ['a', 'b', 'c'] }, data: { s: [1, 2] } } } },
      { v: WIRE_VERSION, kind: 'view', from: 'a', body: view },
    ];
    for (const m of msgs) assert.deepEqual(decodeEnvelope(encode(m)), m);
  });

  it('drops malformed input with a reason', () => {
    assert.equal(reason(() => decodeEnvelope('{not json')), 'not JSON');
    assert.equal(reason(() => decodeEnvelope('[1,2]')), 'not an envelope');
    assert.equal(reason(() => decodeEnvelope(JSON.stringify({ v: 2, kind: 'view', from: 'a', body: view }))), 'wrong version');
    assert.equal(reason(() => decodeEnvelope(JSON.stringify({ v: 1, kind: 'gossip', from: 'a', body: view }))), 'malformed message');
    assert.equal(reason(() => decodeEnvelope(JSON.stringify({ v: 1, kind: 'raft', from: 'a', body: { type: 'heartbeat', from: 'a', to: 'b', term: -1, commit: 0, tick: 0 } }))), 'malformed message');
    assert.equal(reason(() => decodeEnvelope(JSON.stringify({ v: 1, kind: 'view', from: 'a', body: { ...view, extra: 1 } }))), 'malformed message');
    assert.equal(reason(() => decodeHandshake(JSON.stringify({ v: 1, kind: 'hello', peer: 'a', nonce: 'short', mac: 'x' }), 'hello')), 'malformed hello');
  });

  it('refuses oversized messages on both sides', () => {
    const big = 'x'.repeat(MAX_MESSAGE_BYTES + 1);
    assert.equal(reason(() => decodeEnvelope(big)), 'oversized');
    const huge: Envelope = { v: WIRE_VERSION, kind: 'raft', from: 'a', body: { type: 'app', from: 'a', to: 'b', term: 1, index: 0, logTerm: 0, commit: 0, entries: [{ term: 1, index: 1, data: big }] } };
    assert.equal(reason(() => encode(huge)), 'oversized');
  });
});
