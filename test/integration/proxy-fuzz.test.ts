// Fuzzing the client port: over 100 000 random and mutated packets on hundreds of
// connections (junk startup packets, mutated startup packets, valid sessions fed mutated
// protocol messages). The proxy must answer or close every bad connection, never crash,
// leak no session or pooled connection, and keep serving a good client throughout.
// A second run does the same with load balancing off and sessions that first answer two
// queries, so that the mutated messages meet native forwarding (splice.ts).
// The seed is printed; FUZZ_SEED=<n> replays a run.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createCluster } from '../support/pg.js';
import { startProxy } from '../support/proxy.js';
import * as codec from '../../src/protocol/codec.js';
import * as splice from '../../src/proxy/splice.js';
import { Prng } from '../../src/raft/sim/prng.js';

function seeded(seed: number): () => number {
  const p = new Prng(seed);
  return () => p.next();
}

function typed(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b[0] = type.charCodeAt(0);
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}
const z = (s: string) => Buffer.from(s + '\0');

const VALID: Buffer[] = [
  codec.query('SELECT 1'),
  codec.query("SELECT 'x'::text, current_setting($$port$$)::int"),
  codec.query('BEGIN'),
  codec.query('COMMIT'),
  typed('P', Buffer.concat([z(''), z('SELECT $1::int'), Buffer.from([0, 0])])),
  typed('P', Buffer.concat([z('s1'), z('SELECT 2'), Buffer.from([0, 0])])),
  typed('B', Buffer.concat([z(''), z(''), Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 0x37, 0, 0])])),
  typed('D', Buffer.concat([Buffer.from('P'), z('')])),
  typed('D', Buffer.concat([Buffer.from('S'), z('s1')])),
  typed('E', Buffer.concat([z(''), Buffer.from([0, 0, 0, 0])])),
  typed('C', Buffer.concat([Buffer.from('S'), z('s1')])),
  typed('S', Buffer.alloc(0)),
  typed('H', Buffer.alloc(0)),
  typed('d', Buffer.from('junk\n')),
  typed('c', Buffer.alloc(0)),
  typed('f', z('nope')),
  typed('F', Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0])),
];

function mutate(rng: () => number, src: Buffer): Buffer {
  const b = Buffer.from(src);
  const r = rng();
  if (r < 0.25) {
    // flip a few bytes anywhere
    for (let i = 0, n = 1 + Math.floor(rng() * 4); i < n; i++) b[Math.floor(rng() * b.length)] = Math.floor(rng() * 256);
    return b;
  }
  if (r < 0.45 && b.length >= 5) {
    // absurd length: negative, tiny, huge, or off by a little
    const choices = [-1, 0, 3, 0x7fffffff, 0x40000000, b.length + Math.floor(rng() * 8) - 4, Math.floor(rng() * 20000)];
    b.writeInt32BE(choices[Math.floor(rng() * choices.length)]! | 0, 1);
    return b;
  }
  if (r < 0.6) return b.subarray(0, Math.floor(rng() * b.length)); // truncated
  if (r < 0.75) {
    b[0] = Math.floor(rng() * 256); // unknown type
    return b;
  }
  if (r < 0.85) return randomBytes(rng, 1 + Math.floor(rng() * 64));
  return b; // valid
}

function randomBytes(rng: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rng() * 256);
  return b;
}

interface Outcome {
  gotData: boolean;
  closed: boolean;
  sent: number;
}

const READY = Buffer.from('Z\0\0\0\x05I');

/** `settle`: a valid startup and two answered queries come first, one at a time. */
function fuzzConnection(port: number, rng: () => number, packets: number, settle: boolean): Promise<Outcome> {
  return new Promise((resolve) => {
    const o: Outcome = { gotData: false, closed: false, sent: 0 };
    const s = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(o);
    }, 8000);
    let warmups: Buffer[] | undefined = settle ? [codec.query('SELECT 1'), codec.query('SELECT 2')] : undefined;
    let tail = Buffer.alloc(0);
    let fuzz = (): void => {};
    s.on('data', (d: Buffer) => {
      o.gotData = true;
      if (warmups === undefined) return;
      tail = Buffer.concat([tail, d]).subarray(-64);
      if (!tail.includes(READY)) return;
      tail = Buffer.alloc(0);
      const w = warmups.shift();
      if (w) s.write(w);
      else {
        warmups = undefined;
        fuzz();
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      o.closed = true;
      clearTimeout(timer);
      resolve(o);
    });
    s.on('connect', () => {
      const kind = rng();
      const out: Buffer[] = [];
      if (settle) {
        for (let i = 0; i < packets; i++) out.push(mutate(rng, VALID[Math.floor(rng() * VALID.length)]!));
        fuzz = () => {
          for (const p of out) {
            if (s.destroyed) break;
            s.write(p);
            o.sent++;
          }
          s.end();
        };
        s.write(codec.startupMessage({ user: 'postgres', database: 'postgres', application_name: 'fuzz' }));
        return;
      }
      if (kind < 0.3) {
        for (let i = 0; i < packets; i++) out.push(randomBytes(rng, 1 + Math.floor(rng() * 200)));
      } else {
        const startup = codec.startupMessage({ user: 'postgres', database: 'postgres', application_name: 'fuzz' });
        out.push(kind < 0.45 ? mutate(rng, startup) : startup);
        for (let i = 1; i < packets; i++) out.push(mutate(rng, VALID[Math.floor(rng() * VALID.length)]!));
      }
      for (const p of out) {
        if (s.destroyed) break;
        s.write(p);
        o.sent++;
      }
      // Half-close: the proxy must finish with this connection on its own.
      s.end();
    });
  });
}

const RUNS = [
  { name: '100 000+ fuzzed packets', native: false, connections: 420, minPackets: 100_000 },
  { name: 'fuzzed packets after sessions go native', native: true, connections: 240, minPackets: 60_000 },
];

for (const run of RUNS) it(`survives ${run.name} while serving a good client`, { timeout: 300_000 }, async () => {
  const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`proxy fuzz seed ${seed} (FUZZ_SEED=${seed} replays it)`);
  const rng = seeded(seed);
  const cluster = await createCluster({ standbys: 1, auth: 'trust' });
  const fx = await startProxy(cluster, { auth: 'trust', proxy: { load_balance: !run.native } });
  let maxNative = 0;
  const sampler = setInterval(() => (maxNative = Math.max(maxNative, splice.live())), 20);
  let goodOk = 0;
  const goodErrors: string[] = [];
  let stop = false;
  try {
    const good = await fx.connect();
    const goodLoop = (async () => {
      while (!stop) {
        try {
          const r = await good.query<{ x: number }>('SELECT $1::int + 1 AS x', [goodOk]);
          assert.equal(r.rows[0]!.x, goodOk + 1);
          await good.query('SELECT 1');
          goodOk++;
        } catch (err) {
          goodErrors.push((err as Error).message);
          break;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const connections = run.connections;
    const packetsPer = 250;
    const concurrency = 16;
    let next = 0;
    let sent = 0;
    const unanswered: number[] = [];
    let answeredWithData = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < connections) {
          const i = next++;
          const o = await fuzzConnection(fx.port, rng, packetsPer, run.native);
          sent += o.sent;
          if (o.gotData) answeredWithData++;
          if (!o.closed) unanswered.push(i);
        }
      }),
    );
    stop = true;
    await goodLoop;
    console.log(`fuzz: ${sent} packets on ${connections} connections, ${answeredWithData} answered with data, good client ${goodOk} round trips`);
    assert.deepEqual(goodErrors, [], 'the good client saw no error');
    assert.ok(goodOk > 20, `good client completed ${goodOk} round trips`);
    assert.ok(sent >= run.minPackets, `sent ${sent} packets`);
    if (run.native) assert.ok(maxNative >= 2, `sessions were forwarded natively (at most ${maxNative} at once)`);
    assert.deepEqual(unanswered, [], 'every fuzz connection was closed by the proxy after the client finished');
    // No session or backend connection leaked.
    await good.end();
    // A session closed while its backend connection was still being opened gives it back
    // when the connect completes: allow a moment for that, then nothing may remain.
    const settled = () => fx.proxy.stats().clients.total === 0 && fx.proxy.stats().pools.every((p) => p.inUse === 0);
    for (let i = 0; i < 100 && !settled(); i++) await new Promise((r) => setTimeout(r, 50));
    const st = fx.proxy.stats();
    assert.equal(st.clients.total, 0, 'no session left');
    assert.deepEqual(
      st.pools.map((p) => p.inUse),
      st.pools.map(() => 0),
      'no backend connection left checked out',
    );
    // Still serving.
    const c = await fx.connect();
    assert.equal((await c.query('SELECT 41 + 1 AS x')).rows[0].x, 42);
    await c.end();
  } finally {
    stop = true;
    clearInterval(sampler);
    await fx.stop();
    await cluster.teardown();
  }
});
