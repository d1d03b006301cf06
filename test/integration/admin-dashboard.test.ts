// The live dashboard in a real browser (Debian's chromium, headless, driven by
// playwright-core) against a real peer: it loads from the peer alone, shows a backend
// detached through the API without a reload, and its attach button (behind the token) acts;
// on a three-peer watchdog cluster it shows the coordinator change after a kill -9 of the
// coordinator, without a reload.
// The screenshot lands in TEST_OUTPUT_DIR (default .tmp/test-output).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { createCluster } from '../support/pg.js';
import { startPeerProcess } from '../support/peer.js';
import { bed, NAMES, oneHolder } from '../support/watchdog-bed.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const OUT = process.env.TEST_OUTPUT_DIR ?? fileURLToPath(new URL('../../.tmp/test-output/', import.meta.url));
const TOKEN = 'dashboard-test-token';
const NO_BROWSER = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM} (apt-get install chromium)`;
const BROWSER_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

test('dashboard: loads from the peer alone, shows a detach live, its attach button acts', { skip: NO_BROWSER }, async () => {
  const cluster = await createCluster({ standbys: 1 });
  const profile = mkdtempSync(join(tmpdir(), 'pgwd-chromium-'));
  try {
    // Generous health-check timeouts: attach probes the backend, and a browser shares the 2 cores.
    const peer = await startPeerProcess(cluster, { admin: { token: TOKEN }, watchdog: { name: 'alpha' }, health_check: { timeout_ms: 5000, connect_timeout_ms: 5000 } });
    const admin = `http://127.0.0.1:${peer.adminPort}`;
    const ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: BROWSER_ARGS,
      viewport: { width: 1280, height: 860 },
    });
    try {
      const page = ctx.pages()[0] ?? (await ctx.newPage());
      const requested: string[] = [];
      page.on('request', (r) => requested.push(r.url()));
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      await page.goto(admin, { waitUntil: 'load' });
      await page.locator('#conn.up').waitFor({ timeout: 10_000 });
      const row1 = page.locator('#backends tr[data-backend="1"]');
      await row1.locator('td.status', { hasText: 'up' }).waitFor({ timeout: 10_000 });
      await page.locator('#peers tr[data-peer="alpha"] td.coordinator', { hasText: 'coordinator' }).waitFor();
      assert.equal(await page.locator('#backends tr[data-backend="0"] td.role').textContent(), 'primary');
      // Marks this page load: a reload would lose it.
      await page.evaluate(() => ((globalThis as unknown as { loadMark: number }).loadMark = 42));

      // A change made elsewhere (the API) shows up by itself.
      const det = await fetch(`${admin}/v1/backends/1/detach`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(det.status, 200);
      await row1.locator('td.status', { hasText: 'down' }).waitFor({ timeout: 5000 });
      await page.locator('#timeline li[data-seq="1"]', { hasText: 'node_down of 1' }).waitFor({ timeout: 5000 });
      assert.equal(await page.evaluate(() => (globalThis as unknown as { loadMark?: number }).loadMark), 42, 'no reload happened');

      // The attach button, behind the token.
      await row1.locator('button[data-action="attach"]').click();
      await page.locator('#action-log', { hasText: 'type the admin token first' }).waitFor();
      await page.fill('#token', TOKEN);
      await row1.locator('button[data-action="attach"]').click();
      await page.locator('#action-log', { hasText: /attach backend 1: (done|refused)/ }).waitFor({ timeout: 30_000 });
      const actionLog = (await page.locator('#action-log').textContent()) ?? '';
      assert.match(actionLog, /attach backend 1: done — backend\(s\) 1 attached/, `the action log: ${actionLog}`);
      await row1.locator('td.status', { hasText: 'up' }).waitFor({ timeout: 5000 });
      const b1 = (await (await fetch(`${admin}/v1/backends/1`)).json()) as { status: string };
      assert.equal(b1.status, 'up', 'the button really attached the backend');
      await page.locator('#timeline li[data-seq="2"]', { hasText: 'node_up of 1' }).waitFor({ timeout: 5000 });

      mkdirSync(OUT, { recursive: true });
      const shot = join(OUT, 'admin-dashboard.png');
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok(existsSync(shot));

      const foreign = requested.filter((u) => !u.startsWith(admin));
      assert.deepEqual(foreign, [], 'nothing is fetched from anywhere but the peer');
      assert.deepEqual(errors, [], 'no script errors');
    } finally {
      await ctx.close();
      await peer.stop();
    }
  } finally {
    rmSync(profile, { recursive: true, force: true });
    await cluster.teardown();
  }
});

test('dashboard on a watchdog cluster: the coordinator change after a kill -9 of the coordinator shows without a reload', { skip: NO_BROWSER }, async () => {
  const b = await bed();
  const profile = mkdtempSync(join(tmpdir(), 'pgwd-chromium-'));
  try {
    const first = await oneHolder(b);
    const watcher = NAMES.find((n) => n !== first)!;
    const admin = `http://127.0.0.1:${b.peers.get(watcher)!.adminPort}`;
    const ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: BROWSER_ARGS, viewport: { width: 1280, height: 860 } });
    try {
      const page = ctx.pages()[0] ?? (await ctx.newPage());
      await page.goto(admin, { waitUntil: 'load' });
      await page.locator('#conn.up').waitFor({ timeout: 10_000 });
      await page.locator(`#peers tr[data-peer="${first}"] td.coordinator`, { hasText: 'coordinator' }).waitFor({ timeout: 20_000 });
      await page.evaluate(() => ((globalThis as unknown as { loadMark: number }).loadMark = 7));

      await b.peers.get(first)!.kill9();
      const next = await Promise.any(
        NAMES.filter((n) => n !== first).map(async (n) => {
          await page.locator(`#peers tr[data-peer="${n}"] td.coordinator`, { hasText: 'coordinator' }).waitFor({ timeout: 30_000 });
          return n;
        }),
      );
      assert.notEqual(next, first);
      assert.equal(await page.locator(`#peers tr[data-peer="${first}"] td.coordinator`).textContent(), '', 'the dead coordinator is no longer marked');
      await page.locator(`#peers tr[data-peer="${first}"] td.state`, { hasText: 'lost' }).waitFor({ timeout: 10_000 });
      assert.equal(await page.evaluate(() => (globalThis as unknown as { loadMark?: number }).loadMark), 7, 'no reload happened');
      mkdirSync(OUT, { recursive: true });
      await page.screenshot({ path: join(OUT, 'admin-dashboard-cluster.png'), fullPage: true });
    } finally {
      await ctx.close();
    }
  } finally {
    rmSync(profile, { recursive: true, force: true });
    await b.teardown();
  }
});
