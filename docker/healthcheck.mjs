// The image's HEALTHCHECK: exit 0 when the peer's admin API answers 200 on /health (the proxy
// accepts connections), 1 otherwise. Plain node, no curl in the image.
/* global fetch, AbortSignal */
const port = process.env.PGWATCHDOG_ADMIN_PORT ?? '9898';
const host = process.env.PGWATCHDOG_ADMIN_HOST ?? '127.0.0.1';
try {
  const res = await fetch(`http://${host}:${port}/health`, { signal: AbortSignal.timeout(2500) });
  if (!res.ok) console.error(`pgwatchdog health: ${res.status} ${await res.text()}`.trim());
  process.exit(res.ok ? 0 : 1);
} catch (err) {
  console.error(`pgwatchdog health: ${err.cause?.code ?? err.message}`);
  process.exit(1);
}
