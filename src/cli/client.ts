// The CLI's client of a peer's admin API: which peer (--admin, PGWATCHDOG_ADMIN), the token
// (PGWATCHDOG_TOKEN), JSON calls, and server-sent-event streams. Errors are ApiError with the
// exit code the command should end with: 1 when the peer refused or the action failed, 3 when
// the peer could not be reached.
export const DEFAULT_ADMIN = 'http://127.0.0.1:9898';

export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

export class ApiError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface ApiClientOptions {
  admin?: string;
  token?: string;
  timeoutMs?: number;
}

export interface SseEvent {
  event: string;
  data: unknown;
}

export class ApiClient {
  readonly base: string;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;

  constructor(opts: ApiClientOptions = {}) {
    const raw = opts.admin ?? process.env.PGWATCHDOG_ADMIN ?? DEFAULT_ADMIN;
    let u: URL;
    try {
      u = new URL(/^[a-z]+:\/\//i.test(raw) ? raw : `http://${raw}`);
    } catch {
      throw new ApiError(`--admin ${JSON.stringify(raw)} is not a URL (e.g. http://127.0.0.1:9898)`, EXIT.usage);
    }
    this.base = u.origin;
    this.token = opts.token ?? process.env.PGWATCHDOG_TOKEN;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  private async fetch(path: string, init: RequestInit & { stream?: boolean }): Promise<Response> {
    const headers: Record<string, string> = { accept: init.stream ? 'text/event-stream' : 'application/json' };
    if (init.method === 'POST') {
      if (!this.token) throw new ApiError('this command needs the admin token: set PGWATCHDOG_TOKEN to the peer\'s admin.token', EXIT.failed);
      headers.authorization = `Bearer ${this.token}`;
    }
    try {
      // Streams (and actions, which answer when done) may last: only reads get a deadline.
      return await fetch(`${this.base}${path}`, { ...init, headers, signal: init.stream || init.method === 'POST' ? undefined : AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new ApiError(`cannot reach the admin API at ${this.base}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, EXIT.unreachable);
    }
  }

  private static async fail(r: Response, what: string): Promise<never> {
    const text = await r.text().catch(() => '');
    let msg = text.trim();
    try {
      msg = (JSON.parse(text) as { error?: string }).error ?? msg;
    } catch {
      // not JSON: the text as it is
    }
    throw new ApiError(`${what}: ${r.status} ${msg || r.statusText}`, EXIT.failed, r.status);
  }

  async get<T>(path: string): Promise<T> {
    const r = await this.fetch(path, { method: 'GET' });
    if (!r.ok) await ApiClient.fail(r, `GET ${path}`);
    return (await r.json()) as T;
  }

  /** A mutating call: resolves with the body and the HTTP status (a 409 is an answer: the action ran and failed). */
  async post<T>(path: string): Promise<{ status: number; body: T }> {
    const r = await this.fetch(path, { method: 'POST' });
    if (!r.ok && r.status !== 409) await ApiClient.fail(r, `POST ${path}`);
    return { status: r.status, body: (await r.json()) as T };
  }

  /** Opens an event stream (GET, or POST for an action that reports progress) and calls
   * onEvent for each event until the server ends it or onEvent returns false. */
  async stream(method: 'GET' | 'POST', path: string, onEvent: (e: SseEvent) => boolean | void): Promise<void> {
    const r = await this.fetch(path, { method, stream: true });
    if (!r.ok) await ApiClient.fail(r, `${method} ${path}`);
    if (!r.body) return;
    const decoder = new TextDecoder();
    let buf = '';
    const reader = r.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        buf += decoder.decode(value, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of frame.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
          }
          if (data.length === 0) continue; // a comment (keepalive)
          let parsed: unknown;
          try {
            parsed = JSON.parse(data.join('\n'));
          } catch {
            parsed = data.join('\n');
          }
          if (onEvent({ event, data: parsed }) === false) return;
        }
      }
    } finally {
      await reader.cancel().catch(() => undefined);
    }
  }
}
