// A 1-million-row result (≈110 MB) through a deliberately slow client: the proxy must not
// buffer the result. The proxy runs in its own process and its RSS is sampled throughout.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createCluster } from '../support/pg.js';
import { parseConfig } from '../../src/config/index.js';
import * as codec from '../../src/protocol/codec.js';

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

// With load balancing the read runs on the standby through the JavaScript path; without it,
// after two small queries, the session is forwarded natively (splice.ts).
for (const native of [false, true]) {
  it(`streams 1M rows to a slow client with bounded proxy memory (${native ? 'native forwarding' : 'JavaScript forwarding'})`, { timeout: 120_000 }, async () => {
    const cluster = await createCluster({ standbys: 1, auth: 'trust' });
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../support/proxy-child.ts', import.meta.url))], {
      env: {
        ...process.env,
        PGWD_PROXY_CONFIG: JSON.stringify({
          ...parseConfig({ auth: { method: 'trust' }, proxy: { host: '127.0.0.1', load_balance: !native }, backends: cluster.nodes.map((n) => ({ host: n.host, port: n.port })) }, 'test'),
        }).replace('"port":9999', '"port":0'),
        PGWD_PROXY_ROLES: 'primary,standby',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      while (!/LISTENING (\d+)/.test(out)) {
        if (child.exitCode !== null) throw new Error('proxy child exited');
        await new Promise((r) => setTimeout(r, 50));
      }
      const port = Number(/LISTENING (\d+)/.exec(out)![1]);
      const sock = net.connect({ host: '127.0.0.1', port });
      await once(sock, 'connect');
      sock.write(codec.startupMessage({ user: 'postgres', database: 'postgres' }));
      const baseline = rssKb(child.pid!);
      let peak = baseline;
      const sampler = setInterval(() => (peak = Math.max(peak, rssKb(child.pid!))), 50);
      const rows = 1_000_000;
      let started = false;
      const warmups = native ? ['SELECT 1', 'SELECT 2'] : [];
      let total = 0;
      let tail = Buffer.alloc(0);
      const bytesPerMs = 20 * 1024; // ≈20 MB/s: far slower than PostgreSQL produces
      const t0 = Date.now();
      const done = new Promise<void>((resolve, reject) => {
        sock.on('error', reject);
        sock.on('data', (d: Buffer) => {
          tail = Buffer.concat([tail, d]).subarray(-64);
          if (!started) {
            if (tail.includes(Buffer.from('Z\0\0\0\x05I'))) {
              tail = Buffer.alloc(0);
              const warmup = warmups.shift();
              if (warmup) {
                sock.write(codec.query(warmup));
                return;
              }
              started = true;
              sock.write(codec.query(`SELECT g, repeat('x', 100) FROM generate_series(1, ${rows}) g`));
            }
            return;
          }
          total += d.length;
          if (tail.includes(Buffer.from(`SELECT ${rows}\0`)) && tail.includes(Buffer.from('Z\0\0\0\x05I'))) {
            resolve();
            return;
          }
          // Read no faster than bytesPerMs.
          const ahead = total / bytesPerMs - (Date.now() - t0);
          if (ahead > 0) {
            sock.pause();
            setTimeout(() => sock.resume(), ahead);
          }
        });
      });
      await done;
      clearInterval(sampler);
      sock.destroy();
      assert.ok(total > 100 * 1024 * 1024, `received ${total} bytes`);
      const grownMb = (peak - baseline) / 1024;
      assert.ok(grownMb < 40, `proxy RSS grew by ${grownMb.toFixed(1)} MB while streaming ${(total / 1048576).toFixed(0)} MB to a slow client`);
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit').catch(() => {});
      await cluster.teardown();
    }
  });
}
