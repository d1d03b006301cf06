// The admin HTTP server: matches a request against the route table (routes.ts), guards
// mutating calls (bearer token in constant time, then run here on the coordinator or
// forward there), and writes the answer. Every failure becomes a JSON error naming the
// problem; nothing a client sends can throw out of here, and no handler does blocking work,
// so the proxy sharing this process never waits on the admin API.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config/index.js';
import type { BackendRegistry } from '../backends/registry.js';
import type { Logger } from '../log.js';
import type { ProxyStats } from '../proxy/index.js';
import { packageVersion } from '../version.js';
import type { FailoverPort } from './actions.js';
import { forwardCall, FORWARDED_HEADER } from './forward.js';
import { bearerMatches, HttpError, readBody, sendJson, SseChannel } from './http.js';
import { LiveFeed } from './live.js';
import { createMetrics, type Metrics } from './metrics.js';
import { matchRoute, type AdminContext, type Answer } from './routes.js';
import { StaticAssets } from './static.js';
import { failoversView, statusView, type AdminSnapshot } from './views.js';
import type { WatchdogView } from './watchdog-view.js';
import { listenOn, listenerFd, type ListenOn } from '../takeover/listen.js';

export interface AdminServerOptions {
  config: Pick<Config, 'admin'>;
  registry: BackendRegistry;
  failover: FailoverPort;
  proxyStats: () => ProxyStats;
  proxyListening: () => boolean;
  watchdog: WatchdogView;
  logger: Logger;
  /** `POST /v1/reload`: re-reads the config file (the peer's reload, as a JSON view). */
  reload?: () => { ok: boolean };
  /** How often the live feed rebuilds its snapshot (ms). */
  liveTickMs?: number;
}

/** Failovers the live feed carries (the dashboard's timeline). */
const LIVE_FAILOVERS = 20;

export class AdminServer {
  readonly metrics: Metrics;
  readonly live: LiveFeed;
  readonly assets: StaticAssets;
  private readonly ctx: AdminContext;
  private readonly log: Logger;
  private server: Server | undefined;
  private readonly startedAt = new Date().toISOString();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(private readonly opts: AdminServerOptions) {
    this.log = opts.logger;
    this.assets = new StaticAssets();
    this.metrics = createMetrics(() => this.snapshot());
    this.live = new LiveFeed({
      build: () => {
        const s = this.snapshot();
        return { status: statusView(s), failovers: failoversView(s, LIVE_FAILOVERS).history };
      },
      tickMs: opts.liveTickMs,
    });
    this.ctx = {
      snapshot: () => this.snapshot(),
      registry: opts.registry,
      failover: opts.failover,
      watchdog: opts.watchdog,
      metrics: this.metrics,
      live: this.live,
      assets: this.assets,
      log: this.log,
      reload: opts.reload,
    };
    const onChange = (c: Parameters<Metrics['backendChanged']>[0]) => {
      this.metrics.backendChanged(c);
      // A status or role change goes out at once; LSN and lag samples wait for the next tick.
      if (c.before.status !== c.after.status || c.before.role !== c.after.role) this.live.poke();
    };
    const onResult = (r: Parameters<Metrics['failoverFinished']>[0]) => {
      this.metrics.failoverFinished(r);
      this.live.poke();
    };
    opts.registry.on('change', onChange);
    opts.failover.on('result', onResult);
    this.unsubscribe.push(
      () => opts.registry.off('change', onChange),
      () => opts.failover.off('result', onResult),
      opts.watchdog.subscribe(() => this.live.poke()),
    );
  }

  snapshot(): AdminSnapshot {
    const o = this.opts;
    return {
      version: packageVersion(),
      startedAt: this.startedAt,
      now: new Date().toISOString(),
      proxyListening: o.proxyListening(),
      proxy: o.proxyStats(),
      backends: o.registry.list(),
      failover: o.failover.status(),
      watchdog: o.watchdog.facts(),
      replicatedFailovers: o.watchdog.failoverRecords?.(),
    };
  }

  /** `from`: a listening socket handed over by the previous process (online restart). */
  async listen(from?: ListenOn): Promise<{ host: string; port: number }> {
    const server = createServer((req, res) => void this.handle(req, res));
    server.on('clientError', (err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"error":"malformed HTTP request"}\n');
      this.log.debug({ err: err.message }, 'admin API: malformed HTTP request');
    });
    // Keep idle connections longer than the clients' own pools do (undici: 4 s, load balancers'
    // checks: often 60 s): a server closing first races the client's next request on that
    // connection, which then fails with "other side closed".
    server.keepAliveTimeout = 65_000;
    this.server = server;
    const { host, port } = this.opts.config.admin;
    await listenOn(server, from ?? { host, port });
    const a = server.address() as AddressInfo;
    this.log.info({ host: a.address, port: a.port, token: this.opts.config.admin.token ? 'set' : 'unset (mutating calls refused)', dashboardBytes: this.assets.totalBytes }, 'admin API listening');
    return { host: a.address, port: a.port };
  }

  /** The listening socket's descriptor, for the process taking over, or undefined. */
  listenerFd(): number | undefined {
    return listenerFd(this.server);
  }

  async close(): Promise<void> {
    for (const u of this.unsubscribe.splice(0)) u();
    this.live.close();
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = Date.now();
    try {
      const url = new URL(req.url ?? '/', 'http://admin');
      const found = matchRoute(req.method ?? 'GET', url.pathname);
      if (found instanceof HttpError) throw found;
      const { route, params } = found;
      const accepted = route.query ?? [];
      const unknown = [...new Set(url.searchParams.keys())].filter((k) => !accepted.includes(k));
      if (unknown.length) throw new HttpError(400, `unknown query parameter${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} for ${route.method} ${route.path}${accepted.length ? ` (accepted: ${accepted.join(', ')})` : ''}`);
      let body = '';
      if (route.mutating) {
        this.authorize(req);
        body = await readBody(req);
        const to = route.local ? ({ kind: 'self' } as const) : this.opts.watchdog.coordinatorAdmin();
        if (to.kind === 'none') throw new HttpError(503, `no coordinator to run this: ${to.reason}`);
        if (to.kind === 'forward') {
          const from = req.headers[FORWARDED_HEADER];
          if (typeof from === 'string') {
            throw new HttpError(503, `forwarded by ${from}, but this peer (${this.opts.watchdog.facts().self}) is not the coordinator either (it names ${to.peer}); try again`);
          }
          this.log.info({ method: req.method, path: url.pathname, coordinator: to.peer }, 'admin API: forwarding to the coordinator');
          await forwardCall({ req, res, body, base: to.url, coordinator: to.peer, self: this.opts.watchdog.facts().self });
          return;
        }
      } else if (req.method === 'GET' && route.path === '/' && req.headers['if-none-match'] === this.assets.etag('index.html')) {
        res.writeHead(304).end();
        return;
      }
      const answer = await route.handle({ req, params, query: url.searchParams, body, ctx: this.ctx });
      this.write(res, answer);
    } catch (err) {
      const e =
        err instanceof HttpError ? err : err instanceof URIError ? new HttpError(400, `malformed URL: ${err.message}`) : new HttpError(500, `internal error: ${(err as Error).message}`);
      if (e.status >= 500) this.log.error({ err, method: req.method, url: req.url }, `admin API: ${e.message}`);
      else this.log.debug({ method: req.method, url: req.url, status: e.status, error: e.message }, 'admin API: request refused');
      if (res.headersSent) res.end();
      else sendJson(res, e.status, { error: e.message, ...e.extra }, e.headers);
    } finally {
      this.log.trace({ method: req.method, url: req.url, status: res.statusCode, ms: Date.now() - t0 }, 'admin API request');
    }
  }

  /** Mutating calls need admin.token as a bearer token; without a token configured they are refused. */
  private authorize(req: IncomingMessage): void {
    const token = this.opts.config.admin.token;
    if (token === undefined || token === '') throw new HttpError(403, 'mutating calls are disabled on this peer: admin.token is not set in its configuration');
    if (!bearerMatches(req.headers.authorization, token)) {
      throw new HttpError(401, req.headers.authorization ? 'wrong admin token' : 'this call needs the admin token: send "Authorization: Bearer <admin.token>" (the CLI reads PGWATCHDOG_TOKEN)', {}, {
        'www-authenticate': 'Bearer realm="pgwatchdog"',
      });
    }
  }

  private write(res: ServerResponse, a: Answer): void {
    if ('sse' in a) {
      const ch = new SseChannel(res);
      a.sse(ch);
      return;
    }
    if ('json' in a) {
      sendJson(res, a.status, a.json, a.headers);
      return;
    }
    res.writeHead(a.status, { 'content-type': a.contentType, 'content-length': Buffer.byteLength(a.body), ...a.headers });
    res.end(res.req.method === 'HEAD' ? undefined : a.body);
  }
}
