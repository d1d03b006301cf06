// Forwards a mutating admin call to the coordinator's admin API and answers the caller with
// the coordinator's answer, streamed through as it comes (a promote's progress events too).
// The forwarded request carries a header naming this peer; a peer that receives a forwarded
// call and is not the coordinator either refuses it (503) instead of forwarding again, so a
// coordinator change in flight can never make a loop.
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { HttpError } from './http.js';

export const FORWARDED_HEADER = 'x-pgwatchdog-forwarded-by';

const CONNECT_TIMEOUT_MS = 5000;

export function forwardCall(opts: { req: IncomingMessage; res: ServerResponse; body: string; base: string; coordinator: string; self: string }): Promise<void> {
  const { req, res, body, coordinator } = opts;
  let target: URL;
  try {
    target = new URL(req.url ?? '/', opts.base);
  } catch {
    return Promise.reject(new HttpError(502, `coordinator ${coordinator} has no usable admin URL (${JSON.stringify(opts.base)})`));
  }
  const headers: Record<string, string> = { [FORWARDED_HEADER]: opts.self, 'content-length': String(Buffer.byteLength(body)) };
  for (const h of ['authorization', 'accept', 'content-type']) {
    const v = req.headers[h];
    if (typeof v === 'string') headers[h] = v;
  }
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<void>((resolve, reject) => {
    // A fresh connection (agent: false) so the timer can watch the connect itself: the
    // answer to a promote comes only once it has finished, which may take minutes.
    const out = send(target, { method: req.method, headers, agent: false }, (answer) => {
      clearTimeout(timer);
      res.writeHead(answer.statusCode ?? 502, {
        'content-type': answer.headers['content-type'] ?? 'application/json; charset=utf-8',
        'cache-control': 'no-store',
        'x-pgwatchdog-answered-by': coordinator,
      });
      answer.pipe(res);
      answer.on('end', resolve);
      answer.on('error', () => resolve());
      // The caller went away: stop reading the coordinator's answer (the action runs on).
      res.on('close', () => answer.destroy());
    });
    const timer = setTimeout(() => out.destroy(new Error(`not connected within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
    out.on('socket', (s) => s.once('connect', () => clearTimeout(timer)));
    out.on('error', (err) => {
      clearTimeout(timer);
      reject(new HttpError(502, `could not forward to the coordinator ${coordinator} at ${target.origin}: ${err.message}`, { coordinator }));
    });
    out.end(body);
  });
}
