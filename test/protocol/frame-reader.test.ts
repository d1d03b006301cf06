// Client framing: whole messages across any chunk boundaries, and PostgreSQL's length limits
// enforced before anything is buffered.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { FrameReader, ProtocolViolation } from '../../src/protocol/frame-reader.js';
import * as codec from '../../src/protocol/codec.js';

it('reassembles startup and typed messages split anywhere', () => {
  const startup = codec.startupMessage({ user: 'u', database: 'd' });
  const q1 = codec.query('SELECT 1');
  const big = codec.query('SELECT ' + "'" + 'z'.repeat(200_000) + "'");
  const sync = codec.sync();
  const all = Buffer.concat([startup, q1, big, sync]);
  for (const step of [1, 3, 7, 100, 65_536, all.length]) {
    const r = new FrameReader(true);
    const got: Buffer[] = [];
    for (let pos = 0; pos < all.length; pos += step) {
      r.push(all.subarray(pos, pos + step));
      for (let m = r.next(); m; m = r.next()) {
        got.push(Buffer.from(m));
        if (got.length === 1) r.startupPhase = false;
      }
    }
    assert.equal(got.length, 4, `step ${step}`);
    assert.deepEqual(got[0], startup);
    assert.deepEqual(got[1], q1);
    assert.deepEqual(got[2], big);
    assert.deepEqual(got[3], sync);
  }
});

it('parses startup packets: parameters, SSL, GSSENC, cancel; refuses malformed ones', () => {
  const p = codec.parseStartupPacket(codec.startupMessage({ user: 'alice', database: 'db', application_name: 'x' }));
  assert.equal(p.kind, 'startup');
  if (p.kind === 'startup') {
    assert.equal(p.major, 3);
    assert.equal(p.params.get('user'), 'alice');
    assert.equal(p.params.get('application_name'), 'x');
  }
  const c = codec.parseStartupPacket(codec.cancelRequest(1234, -5));
  assert.deepEqual(c, { kind: 'cancel', pid: 1234, secret: -5 });
  const ssl = Buffer.alloc(8);
  ssl.writeInt32BE(8, 0);
  ssl.writeInt32BE(codec.SSL_REQUEST_CODE, 4);
  assert.deepEqual(codec.parseStartupPacket(ssl), { kind: 'ssl' });
  const bad = codec.startupMessage({ user: 'a' }).subarray(0, 12);
  bad.writeInt32BE(12, 0);
  assert.throws(() => codec.parseStartupPacket(bad), /invalid startup packet layout/);
});

it('refuses oversized startup packets, bad lengths and unknown types before buffering them', () => {
  const r = new FrameReader(true);
  const hdr = Buffer.alloc(4);
  hdr.writeInt32BE(10_001, 0);
  r.push(hdr);
  assert.throws(() => r.next(), /invalid length of startup packet/);

  const cases: [Buffer, RegExp][] = [
    [Buffer.from([0x51, 0xff, 0xff, 0xff, 0xff]), /invalid message length -1/],
    [Buffer.from([0x51, 0x00, 0x00, 0x00, 0x02]), /invalid message length 2/],
    [Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff]), /invalid message length/],
    [Buffer.from([0x53, 0x00, 0x01, 0x00, 0x00]), /invalid message length 65536 for message type "S"/],
    [Buffer.from([0x01, 0x00, 0x00, 0x00, 0x04]), /invalid frontend message type 1/],
  ];
  for (const [bytes, re] of cases) {
    const fr = new FrameReader(false);
    fr.push(bytes);
    assert.throws(() => fr.next(), (e: Error) => e instanceof ProtocolViolation && re.test(e.message));
  }
});

it('builds ErrorResponse and parses its fields back', () => {
  const e = codec.errorResponse({ severity: 'FATAL', code: '28P01', message: 'password authentication failed for user "x"' });
  assert.equal(e[0], 0x45);
  assert.equal(e.readInt32BE(1), e.length - 1);
  const f = codec.parseErrorFields(e.subarray(5));
  assert.equal(f.C, '28P01');
  assert.equal(f.S, 'FATAL');
  assert.equal(f.M, 'password authentication failed for user "x"');
});

it('unshift puts a request back in front of what follows, whole or mid-message', () => {
  const a = codec.query('INSERT INTO t VALUES (1)');
  const b = codec.query('SELECT 2');
  const big = codec.query('SELECT ' + "'" + 'z'.repeat(100_000) + "'");
  // b is buffered whole behind the unit put back.
  let r = new FrameReader(false);
  r.push(b);
  r.unshift(a);
  assert.deepEqual([r.next(), r.next(), r.next()], [a, b, null]);
  // A large message is being collected in parts: the unit goes before it.
  r = new FrameReader(false);
  r.push(big.subarray(0, 70_000));
  assert.equal(r.next(), null);
  r.unshift(a);
  r.push(big.subarray(70_000));
  assert.deepEqual([r.next(), r.next(), r.next()], [a, big, null]);
  // Nothing buffered.
  r = new FrameReader(false);
  r.unshift(a);
  assert.deepEqual([r.next(), r.next()], [a, null]);
});
