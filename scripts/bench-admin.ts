// Admin API benchmark: the dashboard's size, and the API's latency while N dashboards are
// open (each one loads the page and its assets, then holds the live feed /v1/events, which
// the peer refreshes once a second). A real peer process in front of a test-bed primary and
// standby.
//
//   npm run bench:admin -- [--dashboards 20] [--requests 300] [--seconds 10]
//
// It prints the page's bytes (HTML + CSS + JS + icon, uncompressed), then for 0 and for N open
// dashboards: p50/p90/p99/max latency of GET /v1/status, /health and /metrics (requests one
// after another, --requests of each), how many live snapshots each dashboard received per
// second over --seconds, and the peer's CPU time over that window.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createCluster } from '../test/support/pg.js';
import { startPeerProcess } from '../test/support/peer.js';

const { values } = parseArgs({ options: { dashboards: { type: 'string', default: '20' }, requests: { type: 'string', default: '300' }, seconds: { type: 'string', default: '10' } } });
const count = (name: keyof typeof values, min: number): number => {
  const v = Number(values[name]);
  if (!Number.isInteger(v) || v < min) throw new Error(`--${name} must be an integer >= ${min}, got ${values[name]}`);
  return v;
};
const DASHBOARDS = count('dashboards', 0);
const REQUESTS = count('requests', 1);
const SECONDS = count('seconds', 1);
process.env.PGWATCHDOG_LOG_LEVEL ??= 'info'; // the test bed waits for the 'peer ready' line

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const fmt = (ms: number) => `${ms.toFixed(2)} ms`;

/** CPU seconds (user + system) the peer process has used, from /proc. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

async function latency(base: string, path: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t0 = performance.now();
    const r = await fetch(base + path);
    await r.arrayBuffer();
    if (!r.ok && path !== '/replica') throw new Error(`${path}: ${r.status}`);
    out.push(performance.now() - t0);
  }
  return out;
}

/** One dashboard: the page and its assets, then the live feed, counting snapshots. */
async function dashboard(base: string, signal: AbortSignal, counter: { n: number; bytes: number }): Promise<number> {
  let pageBytes = 0;
  const html = await (await fetch(`${base}/`, { signal })).text();
  pageBytes += Buffer.byteLength(html);
  for (const m of html.matchAll(/(?:href|src)="(\/static\/[^"]+)"/g)) pageBytes += (await (await fetch(base + m[1]!, { signal })).arrayBuffer()).byteLength;
  void (async () => {
    try {
      const r = await fetch(`${base}/v1/events`, { signal });
      const reader = r.body!.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        const text = dec.decode(value, { stream: true });
        counter.n += (text.match(/^event: status$/gm) ?? []).length;
        counter.bytes += value.byteLength;
      }
    } catch {
      // aborted at the end of the run
    }
  })();
  return pageBytes;
}

async function measure(base: string, pid: number, label: string): Promise<void> {
  const paths = ['/v1/status', '/health', '/metrics'];
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  const rows: string[] = [];
  for (const p of paths) {
    const xs = await latency(base, p);
    rows.push(`  GET ${p.padEnd(11)} p50 ${fmt(pct(xs, 50))}  p90 ${fmt(pct(xs, 90))}  p99 ${fmt(pct(xs, 99))}  max ${fmt(Math.max(...xs))}`);
  }
  const spent = (performance.now() - t0) / 1000;
  console.log(`${label} (${REQUESTS} requests of each, one after another, ${spent.toFixed(1)} s, peer CPU ${((cpuSeconds(pid) - cpu0) * 1000).toFixed(0)} ms):`);
  for (const r of rows) console.log(r);
}

const cluster = await createCluster({ standbys: 1 });
try {
  const peer = await startPeerProcess(cluster, { admin: { token: 'bench' } });
  const base = `http://127.0.0.1:${peer.adminPort}`;
  const pid = peer.proc.pid!;
  try {
    await measure(base, pid, 'no dashboard open');

    const ac = new AbortController();
    const counters = Array.from({ length: DASHBOARDS }, () => ({ n: 0, bytes: 0 }));
    const pageBytes = await Promise.all(counters.map((c) => dashboard(base, ac.signal, c)));
    console.log(`\npage: ${pageBytes[0]} bytes (HTML + CSS + JS + icon, uncompressed), loaded by ${DASHBOARDS} dashboards`);
    await new Promise((r) => setTimeout(r, 1500)); // every feed connected and past its first snapshot
    const idle0 = cpuSeconds(pid);
    const n0 = counters.map((c) => c.n);
    const b0 = counters.reduce((a, c) => a + c.bytes, 0);
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const perSec = counters.map((c, i) => (c.n - n0[i]!) / SECONDS);
    const feedBytes = counters.reduce((a, c) => a + c.bytes, 0) - b0;
    console.log(
      `live feed: ${DASHBOARDS} dashboards open ${SECONDS} s, each got ${Math.min(...perSec).toFixed(2)}–${Math.max(...perSec).toFixed(2)} snapshots/s, ` +
        `${(feedBytes / SECONDS / DASHBOARDS / 1024).toFixed(1)} kB/s each; peer CPU ${(((cpuSeconds(pid) - idle0) / SECONDS) * 100).toFixed(1)}% of a core`,
    );
    await measure(base, pid, `\nwith ${DASHBOARDS} dashboards open`);
    ac.abort();
  } finally {
    await peer.stop();
  }
} finally {
  await cluster.teardown();
}
