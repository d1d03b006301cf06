// The header scanner must give the same answer however a stream is cut into chunks, forward
// exactly the bytes of forwarded messages, and gather the bodies it was asked for.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { BackendScanner, BackendProtocolError, type ScanSink } from '../../src/protocol/backend-scanner.js';

function msg(type: string, body: Buffer | string): Buffer {
  const b = Buffer.from(body);
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

function rng(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
}

const stream = Buffer.concat([
  msg('T', 'rowdesc'),
  msg('D', 'x'.repeat(300)),
  msg('1', ''),
  msg('D', 'y'.repeat(70_000)),
  msg('S', 'application_name\0app\0'),
  msg('C', 'SELECT 2\0'),
  msg('Z', 'I'),
  msg('A', '\0\0\0\x07chan\0payload\0'),
  msg('Z', 'T'),
]);

function run(chunks: Buffer[], forwardType: (t: string) => boolean) {
  const want = new Uint8Array(256);
  for (const t of 'ZSA') want[t.charCodeAt(0)] = 1;
  const sc = new BackendScanner(want);
  const seen: string[] = [];
  const gathered: string[] = [];
  const out: Buffer[] = [];
  const sink: ScanSink = {
    onHeader: (t, len) => {
      seen.push(`${String.fromCharCode(t)}${len}`);
      return forwardType(String.fromCharCode(t));
    },
    onMessage: (t, buf, s, e) => gathered.push(`${String.fromCharCode(t)}:${buf.toString('latin1', s, e)}`),
  };
  for (const c of chunks) sc.feed(c, sink, (b) => out.push(Buffer.from(b)));
  return { seen, gathered, out: Buffer.concat(out), atBoundary: sc.atBoundary };
}

it('gives the same result for every chunking, forwarding exactly the chosen messages', () => {
  const fwd = (t: string) => t !== '1' && t !== 'S';
  const expected = Buffer.concat([msg('T', 'rowdesc'), msg('D', 'x'.repeat(300)), msg('D', 'y'.repeat(70_000)), msg('C', 'SELECT 2\0'), msg('Z', 'I'), msg('A', '\0\0\0\x07chan\0payload\0'), msg('Z', 'T')]);
  const whole = run([stream], fwd);
  assert.deepEqual(whole.out, expected);
  assert.deepEqual(whole.gathered, ['S:application_name\0app\0', 'Z:I', 'A:\0\0\0\x07chan\0payload\0', 'Z:T']);
  assert.ok(whole.atBoundary);
  const r = rng(7);
  for (let trial = 0; trial < 300; trial++) {
    const chunks: Buffer[] = [];
    let pos = 0;
    while (pos < stream.length) {
      const n = trial % 3 === 0 ? 1 + Math.floor(r() * 6) : 1 + Math.floor(r() * 5000);
      chunks.push(stream.subarray(pos, pos + n));
      pos += n;
    }
    const got = run(chunks, fwd);
    assert.deepEqual(got.out, expected, `trial ${trial}`);
    assert.deepEqual(got.seen, whole.seen);
    assert.deepEqual(got.gathered, whole.gathered);
  }
});

it('writes a whole chunk as the same buffer when every message in it is forwarded', () => {
  const want = new Uint8Array(256);
  const sc = new BackendScanner(want);
  const chunk = Buffer.concat([msg('D', 'a'), msg('D', 'b')]);
  const outs: Buffer[] = [];
  sc.feed(chunk, { onHeader: () => true, onMessage: () => {} }, (b) => outs.push(b));
  assert.equal(outs.length, 1);
  assert.equal(outs[0], chunk, 'no copy, no view: the received buffer itself');
});

it('flushes forwarded bytes before telling the sink a gathered message ended', () => {
  const want = new Uint8Array(256);
  want['Z'.charCodeAt(0)] = 1;
  const sc = new BackendScanner(want);
  const events: string[] = [];
  sc.feed(Buffer.concat([msg('C', 'x\0'), msg('Z', 'I'), msg('D', 'after')]), { onHeader: () => true, onMessage: () => events.push('Z') }, (b) => events.push(`out${b.length}`));
  assert.deepEqual(events, ['out13', 'Z', 'out10']);
});

it('rejects a negative message length', () => {
  const sc = new BackendScanner(new Uint8Array(256));
  const bad = Buffer.from([0x44, 0xff, 0xff, 0xff, 0xff]);
  assert.throws(() => sc.feed(bad, { onHeader: () => true, onMessage: () => {} }, () => {}), BackendProtocolError);
});
