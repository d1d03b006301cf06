// Small HTTP pieces the admin server and its routes share: the error a handler throws to
// answer 4xx/5xx, the body reader with its size limit, server-sent-event channels, and the
// constant-time token check.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';

/** Thrown by a route to answer `status` with `{ error: message, ...extra }`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const MAX_BODY = 64 * 1024;

/** The request body as text; 413 past MAX_BODY. */
export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_BODY) {
        // Answer now and drop the rest as it comes (destroying the socket would lose the answer).
        chunks.length = 0;
        reject(new HttpError(413, `request body is larger than ${MAX_BODY} bytes`, {}, { connection: 'close' }));
        return;
      }
      chunks.push(d);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** A body that must be empty or a JSON object whose keys are all in `allowed`. */
export function parseJsonObject(text: string, allowed: readonly string[]): Record<string, unknown> {
  if (text.trim() === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new HttpError(400, `request body must be a JSON object, got ${Array.isArray(v) ? 'an array' : JSON.stringify(v)}`);
  const unknown = Object.keys(v).filter((k) => !allowed.includes(k));
  if (unknown.length) {
    throw new HttpError(400, `unknown key${unknown.length > 1 ? 's' : ''} in request body: ${unknown.map((k) => JSON.stringify(k)).join(', ')} (allowed: ${allowed.length ? allowed.join(', ') : 'none'})`);
  }
  return v as Record<string, unknown>;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

/** One server-sent-events stream. `send` drops the event when the client reads too slowly
 * (its socket buffer is past 1 MB): a stalled dashboard must never grow our memory; it gets the
 * next snapshot once it catches up. */
export class SseChannel {
  closed = false;
  constructor(readonly res: ServerResponse) {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': pgwatchdog\n\n');
    res.on('close', () => (this.closed = true));
  }

  send(event: string, data: unknown): boolean {
    return this.sendJsonText(event, JSON.stringify(data));
  }

  /** `send` with the data already serialised (one JSON.stringify for many subscribers). */
  sendJsonText(event: string, json: string): boolean {
    if (this.closed || this.res.writableLength > 1024 * 1024) return false;
    this.res.write(`event: ${event}\ndata: ${json}\n\n`);
    return true;
  }

  comment(text: string): void {
    if (!this.closed) this.res.write(`: ${text}\n\n`);
  }

  end(): void {
    if (!this.closed) this.res.end();
    this.closed = true;
  }
}

export function wantsEventStream(req: IncomingMessage): boolean {
  return (req.headers.accept ?? '').includes('text/event-stream');
}

/** Compares the request's bearer token with the configured one in constant time (both are
 * hashed first, so neither the content nor the length leaks through timing). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  const given = createHash('sha256').update(m ? m[1]!.trim() : '').digest();
  const want = createHash('sha256').update(token).digest();
  return timingSafeEqual(given, want) && m !== null;
}
