// Shared by the cluster tests: loggers that keep their lines, transports on free loopback ports.
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Logger } from '../../src/log.js';
import { freePort } from '../support/pg.js';
import { WsTransport, type PeerAddress, type TransportOptions } from '../../src/cluster/transport.js';

export interface Captured {
  logger: Logger;
  lines: { level: number; msg: string; [k: string]: unknown }[];
}

export function captureLogger(): Captured {
  const lines: Captured['lines'] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Captured['lines'][number]);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

export async function addresses(names: string[]): Promise<PeerAddress[]> {
  return Promise.all(names.map(async (name) => ({ name, host: '127.0.0.1', port: await freePort() })));
}

export function transport(self: string, peers: PeerAddress[], extra: Partial<TransportOptions> = {}): WsTransport & { captured: Captured } {
  const captured = captureLogger();
  const t = new WsTransport({ self, peers, authKey: 'sekrit', logger: captured.logger, pingIntervalMs: 100, backoff: { minMs: 50, maxMs: 300 }, ...extra });
  return Object.assign(t, { captured });
}

export async function until(pred: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
