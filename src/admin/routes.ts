// Every admin endpoint in one table: method, path, whether it mutates (then server.ts checks
// the bearer token and forwards it to the coordinator before the handler runs), the query
// parameters it accepts, and its handler. Handlers validate their input and answer with a
// JSON view (views.ts); they never touch the socket except through an Answer.
import type { IncomingMessage } from 'node:http';
import type { BackendRegistry } from '../backends/registry.js';
import type { Logger } from '../log.js';
import { runBackendAction, type BackendAction, type FailoverPort } from './actions.js';
import { HttpError, parseJsonObject, wantsEventStream, type SseChannel } from './http.js';
import type { LiveFeed } from './live.js';
import type { Metrics } from './metrics.js';
import type { StaticAssets } from './static.js';
import { backendsView, check, failoversView, failoverView, parseLag, peersView, statusView, type AdminSnapshot, type CheckName } from './views.js';
import type { WatchdogView } from './watchdog-view.js';

export interface AdminContext {
  snapshot(): AdminSnapshot;
  registry: BackendRegistry;
  failover: FailoverPort;
  watchdog: WatchdogView;
  metrics: Metrics;
  live: LiveFeed;
  assets: StaticAssets;
  log: Logger;
  /** Re-reads this peer's config file (Peer.reload through reloadView); absent when the peer
   * was not started from a file. */
  reload?: () => { ok: boolean };
}

export type Answer =
  | { status: number; json: unknown; headers?: Record<string, string> }
  | { status: number; body: string | Buffer; contentType: string; headers?: Record<string, string> }
  | { sse: (ch: SseChannel) => void };

export interface RouteCall {
  req: IncomingMessage;
  params: Record<string, string>;
  query: URLSearchParams;
  body: string;
  ctx: AdminContext;
}

export interface Route {
  method: 'GET' | 'POST';
  /** Segments; `:name` matches one segment into params.name. */
  path: string;
  mutating?: boolean;
  /** A mutating call about this peer itself (reload): run here, never forwarded to the coordinator. */
  local?: boolean;
  /** Query parameters accepted; any other is a 400. */
  query?: readonly string[];
  summary: string;
  handle(call: RouteCall): Answer | Promise<Answer>;
}

const json = (body: unknown, status = 200): Answer => ({ status, json: body });

export const MAX_LIVE_CLIENTS = 256;

/** `:id` as a configured backend id; 400 when not an integer, 404 when not configured. */
function backendId(raw: string, s: AdminSnapshot): number {
  if (!/^\d+$/.test(raw)) throw new HttpError(400, `backend id must be a non-negative integer, got ${JSON.stringify(raw)}`);
  const id = Number(raw);
  if (id >= s.backends.length) throw new HttpError(404, `no backend ${id}: configured backends are 0..${s.backends.length - 1}`, { backends: s.backends.map((b) => b.id) });
  return id;
}

function booleanParam(name: string, raw: string | null): boolean | undefined {
  if (raw === null) return undefined;
  if (raw === '' || raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new HttpError(400, `${name} must be true or false, got ${JSON.stringify(raw)}`);
}

function backendAction(action: BackendAction): Route['handle'] {
  return ({ req, params, query, body, ctx }) => {
    const s = ctx.snapshot();
    const id = backendId(params.id!, s);
    const fields = parseJsonObject(body, action === 'promote' ? ['switchover'] : []);
    if (fields.switchover !== undefined && typeof fields.switchover !== 'boolean') throw new HttpError(400, `"switchover" must be a boolean, got ${JSON.stringify(fields.switchover)}`);
    const switchover = booleanParam('switchover', query.get('switchover')) ?? (fields.switchover as boolean | undefined) ?? false;
    const self = s.watchdog.self;
    const run = (progress?: Parameters<typeof runBackendAction>[5]) => runBackendAction(ctx.failover, ctx.registry, action, id, { switchover }, progress);
    ctx.log.info({ action, backend: id, switchover }, `admin API: ${action} backend ${id}${switchover ? ' (switchover)' : ''}`);
    if (wantsEventStream(req)) {
      return {
        sse: (ch) => {
          run((p) => ch.send('progress', p)).then(
            (r) => {
              ch.send('result', { ok: r.ok, failover: failoverView(r, self), ...(r.ok ? {} : { error: r.summary }) });
              ch.end();
            },
            (err: Error) => {
              ch.send('result', { ok: false, error: `${action} backend ${id}: ${err.message}` });
              ch.end();
            },
          );
        },
      };
    }
    return run().then(
      (r) => json({ ok: r.ok, failover: failoverView(r, self), ...(r.ok ? {} : { error: r.summary }) }, r.ok ? 200 : 409),
      (err: Error) => {
        throw new HttpError(409, `${action} backend ${id}: ${err.message}`);
      },
    );
  };
}

function healthRoute(name: CheckName, summary: string): Route {
  return {
    method: 'GET',
    path: `/${name}`,
    query: name === 'replica' ? ['lag'] : [],
    summary,
    handle: ({ query, ctx }) => {
      let lag: number | null = null;
      const raw = query.get('lag');
      if (name === 'replica' && raw !== null) {
        lag = parseLag(raw);
        if (lag === null) throw new HttpError(400, `lag must be a number of bytes, optionally with a unit (kB, MB, GB), got ${JSON.stringify(raw)}`);
      }
      const a = check(name, ctx.snapshot(), lag);
      return json(a.body, a.status);
    },
  };
}

export const ROUTES: readonly Route[] = [
  { method: 'GET', path: '/', summary: 'the live dashboard', handle: ({ ctx }) => ctx.assets.answer('index.html') },
  { method: 'GET', path: '/static/:file', summary: "the dashboard's assets", handle: ({ params, ctx }) => ctx.assets.answer(params.file!) },
  { method: 'GET', path: '/v1/status', summary: 'this peer, coordinator, VIP, quorum, Raft, backends, peers', handle: ({ ctx }) => json(statusView(ctx.snapshot())) },
  { method: 'GET', path: '/v1/backends', summary: 'the backends', handle: ({ ctx }) => json({ backends: backendsView(ctx.snapshot()) }) },
  {
    method: 'GET',
    path: '/v1/backends/:id',
    summary: 'one backend',
    handle: ({ params, ctx }) => {
      const s = ctx.snapshot();
      return json(backendsView(s)[backendId(params.id!, s)]);
    },
  },
  { method: 'GET', path: '/v1/peers', summary: 'the watchdog peers', handle: ({ ctx }) => json(peersView(ctx.snapshot())) },
  {
    method: 'GET',
    path: '/v1/failovers',
    query: ['limit'],
    summary: 'failover history, newest first',
    handle: ({ query, ctx }) => {
      const raw = query.get('limit');
      if (raw !== null && !/^[1-9]\d*$/.test(raw)) throw new HttpError(400, `limit must be a positive integer, got ${JSON.stringify(raw)}`);
      return json(failoversView(ctx.snapshot(), raw === null ? Infinity : Number(raw)));
    },
  },
  {
    method: 'GET',
    path: '/v1/events',
    summary: 'server-sent events: a status snapshot whenever it changes',
    handle: ({ ctx }) => {
      // Each open feed holds a socket in the proxy's process: bound them.
      if (ctx.live.size >= MAX_LIVE_CLIENTS) throw new HttpError(503, `${ctx.live.size} live feeds are open on this peer already (at most ${MAX_LIVE_CLIENTS}); close a dashboard or scrape /v1/status`);
      return { sse: (ch) => ctx.live.add(ch) };
    },
  },
  { method: 'POST', path: '/v1/backends/:id/attach', mutating: true, summary: 'attach a backend', handle: backendAction('attach') },
  { method: 'POST', path: '/v1/backends/:id/detach', mutating: true, summary: 'detach a backend (fails it over if it is the primary)', handle: backendAction('detach') },
  { method: 'POST', path: '/v1/backends/:id/promote', mutating: true, query: ['switchover'], summary: 'promote a standby (?switchover=true: stop the old primary cleanly first)', handle: backendAction('promote') },
  {
    method: 'POST',
    path: '/v1/coordinator/transfer',
    mutating: true,
    query: ['to'],
    summary: 'hand the coordinator role to peer ?to=PEER',
    handle: async ({ query, body, ctx }) => {
      parseJsonObject(body, []);
      const to = query.get('to');
      if (to === null || to === '') throw new HttpError(400, 'missing ?to=PEER: the peer to hand the coordinator role to');
      const facts = ctx.watchdog.facts();
      if (!facts.peers.some((p) => p.name === to)) throw new HttpError(404, `no peer named ${JSON.stringify(to)}: peers are ${facts.peers.map((p) => p.name).join(', ')}`);
      ctx.log.info({ to }, `admin API: transfer the coordinator role to ${to}`);
      const outcome = await ctx.watchdog.transfer(to);
      return json({ ...outcome, ...(outcome.ok ? {} : { error: outcome.summary }) }, outcome.ok ? 200 : 409);
    },
  },
  {
    method: 'POST',
    path: '/v1/reload',
    mutating: true,
    local: true,
    summary: "re-read this peer's config file: live keys apply now, the others are named as needing a restart",
    handle: ({ body, ctx }) => {
      parseJsonObject(body, []);
      if (!ctx.reload) throw new HttpError(409, 'this peer was not started from a config file: nothing to re-read');
      ctx.log.info('admin API: reload the configuration');
      const view = ctx.reload();
      return json(view, view.ok ? 200 : 409);
    },
  },
  healthRoute('health', "200 while this peer's proxy accepts connections"),
  healthRoute('coordinator', '200 only on the coordinator'),
  healthRoute('primary', '200 while writes through this peer reach a primary'),
  healthRoute('replica', '200 while a standby is up (within ?lag=BYTES)'),
  healthRoute('readiness', '200 while this peer serves clients'),
  healthRoute('liveness', '200 while the process answers'),
  {
    method: 'GET',
    path: '/metrics',
    summary: 'Prometheus metrics',
    handle: async ({ ctx }) => ({ status: 200, body: await ctx.metrics.render(), contentType: ctx.metrics.contentType }),
  },
];

/** Finds the route for a method and path: the route and its params, or why not (404/405). */
export function matchRoute(method: string, pathname: string): { route: Route; params: Record<string, string> } | HttpError {
  const parts = pathname.split('/').filter((p, i) => i > 0 || p !== '');
  const methods = new Set<string>();
  for (const route of ROUTES) {
    const want = route.path.split('/').filter((p, i) => i > 0 || p !== '');
    if (want.length !== parts.length && !(route.path === '/' && pathname === '/')) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < want.length && ok; i++) {
      const w = want[i]!;
      if (w.startsWith(':')) params[w.slice(1)] = decodeURIComponent(parts[i]!);
      else ok = w === parts[i];
    }
    if (!ok) continue;
    const m = method === 'HEAD' ? 'GET' : method;
    if (route.method === m) return { route, params };
    methods.add(route.method);
  }
  if (methods.size > 0) {
    const allow = [...methods, ...(methods.has('GET') ? ['HEAD'] : [])].join(', ');
    return new HttpError(405, `${method} is not allowed on ${pathname} (allowed: ${allow})`, {}, { allow });
  }
  return new HttpError(404, `no such endpoint: ${pathname}`, { endpoints: ROUTES.map((r) => `${r.method} ${r.path}`) });
}
