// The CLI commands that talk to a peer's admin API (status, nodes, watchdog, failovers,
// attach, detach, promote, transfer). Each returns its exit code (client.ts EXIT): 0 done,
// 1 refused or failed, 2 usage, 3 the peer could not be reached.
import type { Progress } from '../admin/actions.js';
import type { BackendView, FailoversView, FailoverView, PeersView, StatusView } from '../admin/views.js';
import { ApiClient, ApiError, EXIT } from './client.js';
import { failoversScreen, nodesTable, progressLine, statusScreen, stepLine, watchdogScreen, type Style } from './render.js';

type Values = Record<string, string | boolean | undefined>;

export interface CommandIo {
  out: (s: string) => void;
  err: (s: string) => void;
  /** Colour and in-place refresh: stdout is a terminal (and NO_COLOR is unset). */
  tty?: boolean;
}

const style = (io: CommandIo): Style => ({ colour: io.tty === true });

/** Runs `fn` with a client for --admin/PGWATCHDOG_ADMIN; an ApiError becomes its message and exit code. */
async function withClient(v: Values, io: CommandIo, fn: (c: ApiClient) => Promise<number>): Promise<number> {
  try {
    return await fn(new ApiClient({ admin: typeof v.admin === 'string' ? v.admin : undefined }));
  } catch (err) {
    if (err instanceof ApiError) {
      io.err(`pgwatchdog: ${err.message}`);
      return err.exitCode;
    }
    throw err;
  }
}

const json = (io: CommandIo, body: unknown) => io.out(JSON.stringify(body, null, 2));

/** A read command: GET `path`, print it as JSON (--json) or rendered. */
function read<T>(path: string, render: (st: Style, body: T) => string) {
  return (v: Values, _p: string[], io: CommandIo) =>
    withClient(v, io, async (c) => {
      const body = await c.get<T>(path);
      if (v.json) json(io, body);
      else io.out(render(style(io), body));
      return EXIT.ok;
    });
}

export const statusOnce = read<StatusView>('/v1/status', statusScreen);

export function status(v: Values, p: string[], io: CommandIo): Promise<number> {
  if (!v.watch) return statusOnce(v, p, io);
  // --watch: redraw on every snapshot the peer pushes (at most one a second); ends with ^C.
  return withClient(v, io, async (c) => {
    await c.stream('GET', '/v1/events', (e) => {
      if (e.event !== 'status') return;
      const s = (e.data as { status: StatusView }).status;
      if (v.json) io.out(JSON.stringify(s));
      else if (io.tty) io.out(`\x1b[H\x1b[2J${statusScreen(style(io), s)}\n\n(refreshing live from ${c.base}; ^C to stop)`);
      else io.out(`${statusScreen(style(io), s)}\n`);
    });
    io.err(`pgwatchdog: the peer at ${c.base} closed the live feed`);
    return EXIT.unreachable;
  });
}

export const nodes = read<{ backends: BackendView[] }>('/v1/backends', (st, b) => nodesTable(st, b.backends));
export const watchdog = read<PeersView>('/v1/peers', watchdogScreen);

export function failovers(v: Values, p: string[], io: CommandIo): Promise<number> {
  const limit = typeof v.limit === 'string' ? v.limit : '10';
  if (!/^[1-9]\d*$/.test(limit)) {
    io.err(`error: --limit must be a positive integer, got ${JSON.stringify(limit)}`);
    return Promise.resolve(EXIT.usage);
  }
  return read<FailoversView>(`/v1/failovers?limit=${limit}`, failoversScreen)(v, p, io);
}

function backendId(raw: string | undefined, io: CommandIo): number | undefined {
  if (raw === undefined || !/^\d+$/.test(raw)) {
    io.err(`error: backend id must be a non-negative integer, got ${JSON.stringify(raw)}`);
    return undefined;
  }
  return Number(raw);
}

/** attach/detach/promote: streams the action's progress, then its steps and result. */
export function action(kind: 'attach' | 'detach' | 'promote') {
  return (v: Values, p: string[], io: CommandIo): Promise<number> => {
    const id = backendId(p[0], io);
    if (id === undefined) return Promise.resolve(EXIT.usage);
    const path = `/v1/backends/${id}/${kind}${v.switchover ? '?switchover=true' : ''}`;
    return withClient(v, io, async (c) => {
      let result: { ok: boolean; error?: string; failover?: FailoverView } | undefined;
      await c.stream('POST', path, (e) => {
        if (e.event === 'progress') io.out(progressLine(e.data as Progress));
        else if (e.event === 'result') result = e.data as typeof result;
      });
      if (!result) {
        io.err(`pgwatchdog: the peer ended the stream before the result of ${kind} backend ${id}; see \`pgwatchdog failovers\``);
        return EXIT.failed;
      }
      const f = result.failover;
      const st = style(io);
      if (f) for (const s of f.steps) io.out(stepLine(st, s));
      if (result.ok && f) {
        io.out(`${kind} backend ${id}: ok in ${f.durationMs} ms — ${f.result}`);
        return EXIT.ok;
      }
      io.err(`pgwatchdog: ${kind} backend ${id} failed: ${result.error ?? f?.result ?? 'unknown error'}`);
      return EXIT.failed;
    });
  };
}

export function transfer(v: Values, p: string[], io: CommandIo): Promise<number> {
  const to = p[0]!;
  return withClient(v, io, async (c) => {
    const r = await c.post<{ ok: boolean; summary: string; error?: string }>(`/v1/coordinator/transfer?to=${encodeURIComponent(to)}`);
    if (r.body.ok) {
      io.out(`transfer to ${to}: ${r.body.summary}`);
      return EXIT.ok;
    }
    io.err(`pgwatchdog: transfer to ${to} refused: ${r.body.error ?? r.body.summary}`);
    return EXIT.failed;
  });
}
