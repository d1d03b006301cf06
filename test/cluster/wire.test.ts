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

function decodeFails(text: string): string {
  try {
    decodeEnvelope(text);
  } catch (err) {
    assert.ok(err instanceof WireError && err.reason === 'malformed message', String(err));
    return err.message;
  }
  assert.fail(`accepted ${text}`);
}

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

  it('checks every Raft message type field by field (by hand, not zod): each type round-trips, anything off is dropped naming the field', () => {
    const b = { from: 'a', to: 'b', term: 3 };
    const good: Record<string, Record<string, unknown>> = {
      app: { type: 'app', ...b, index: 4, logTerm: 1, commit: 4, entries: [{ term: 2, index: 5, data: { x: 1 } }] },
      appResp: { type: 'appResp', ...b, index: 4, reject: false, hintIndex: 0, hintTerm: 0 },
      heartbeat: { type: 'heartbeat', ...b, commit: 4, tick: 17 },
      heartbeatResp: { type: 'heartbeatResp', ...b, tick: 17 },
      vote: { type: 'vote', ...b, index: 4, logTerm: 1, force: true },
      preVote: { type: 'preVote', ...b, index: 4, logTerm: 1, force: false },
      voteResp: { type: 'voteResp', ...b, reject: true },
      preVoteResp: { type: 'preVoteResp', ...b, reject: false },
      snap: { type: 'snap', ...b, snapshot: { meta: { index: 9, term: 3, peers: ['a', 'b'] }, data: null } },
      timeoutNow: { type: 'timeoutNow', ...b },
    };
    const env = (body: unknown) => JSON.stringify({ v: 1, kind: 'raft', from: 'a', body });
    const detail = (body: unknown): string => {
      try {
        decodeEnvelope(env(body));
      } catch (err) {
        assert.ok(err instanceof WireError && err.reason === 'malformed message', String(err));
        return err.message;
      }
      assert.fail(`accepted ${JSON.stringify(body)}`);
    };
    for (const m of Object.values(good)) assert.deepEqual(decodeEnvelope(env(m)).body, m);
    for (const [type, m] of Object.entries(good)) {
      for (const k of Object.keys(m)) {
        if (k === 'type') continue;
        const { [k]: _dropped, ...missing } = m;
        assert.match(detail(missing), new RegExp(`body\\.${k}: `), `${type} without ${k}`);
        assert.match(detail({ ...m, [k]: k === 'entries' ? 'x' : { no: 1 } }), new RegExp(`body\\.${k}`), `${type} with a bad ${k}`);
      }
      assert.match(detail({ ...m, extra: 1 }), /body\.extra: unknown key/);
    }
    assert.match(detail({ ...good.heartbeat, term: 1.5 }), /body\.term: expected an integer/);
    assert.match(detail({ ...good.heartbeat, from: '' }), /body\.from: expected a string of 1-128 characters/);
    assert.match(detail({ ...good.app, entries: [{ term: 1, index: -1, data: 1 }] }), /body\.entries\.0\.index/);
    assert.match(detail({ ...good.app, entries: [{ term: 1, index: 1, data: 1, x: 2 }] }), /body\.entries\.0\.x: unknown key/);
    assert.match(detail({ ...good.app, entries: Array.from({ length: 1025 }, (_, i) => ({ term: 1, index: i, data: null })) }), /body\.entries: more than 1024/);
    assert.match(detail({ ...good.snap, snapshot: { meta: { index: 1, term: 1, peers: ['a', 7] }, data: 1 } }), /body\.snapshot\.meta\.peers\.1: expected a string of 1-128 characters/);
    assert.match(detail({ ...good.heartbeat, type: 'hearbeat' }), /body\.type: not a Raft message type/);
    assert.match(detail(null), /body\.type/);
    assert.match(detail([1]), /body\.type/);
    assert.match(decodeFails(JSON.stringify({ v: 1, kind: 'raft', from: 'a', body: good.heartbeat, extra: 1 })), /extra: unknown key/);
    assert.match(decodeFails(JSON.stringify({ v: 1, kind: 'raft', body: good.heartbeat })), /from: expected a string of 1-128 characters/);
    assert.match(decodeFails(JSON.stringify({ v: 1, kind: 'cancel', from: 'a', body: { pid: 1 } })), /body\.secret/);
  });

  it('refuses oversized messages on both sides', () => {
    const big = 'x'.repeat(MAX_MESSAGE_BYTES + 1);
    assert.equal(reason(() => decodeEnvelope(big)), 'oversized');
    const huge: Envelope = { v: WIRE_VERSION, kind: 'raft', from: 'a', body: { type: 'app', from: 'a', to: 'b', term: 1, index: 0, logTerm: 0, commit: 0, entries: [{ term: 1, index: 1, data: big }] } };
    assert.equal(reason(() => encode(huge)), 'oversized');
  });
});
