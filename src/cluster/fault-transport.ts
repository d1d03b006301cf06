// A fault-injecting wrapper around a PeerTransport, for tests of isolation: it can cut this
// peer off from some or all others, dropping messages both ways while the sockets stay open
// (as a partition that loses packets does). A WsTransport also stops answering and counting
// pings on cut links, so the other side drops them as it would in a real partition (and sees
// this peer's gossiped view age: views are fresh only while their link is up). Production never builds one; a test peer process
// gets one when PGWATCHDOG_FAULTS_FILE names a file whose JSON `{ "cut": ["b", "c"] | "all" }`
// says whom to cut (re-read every 100 ms; a missing or empty file cuts nobody).
import { EventEmitter } from 'node:events';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Logger } from '../log.js';
import { WsTransport, type PeerTransport, type TransportEvents } from './transport.js';
import type { Envelope } from './wire.js';

export class FaultyTransport extends EventEmitter<TransportEvents> implements PeerTransport {
  readonly self: string;
  private cutOff = new Set<string>();
  private all = false;

  constructor(private readonly inner: PeerTransport) {
    super();
    this.self = inner.self;
    if (inner instanceof WsTransport) inner.mute((p) => this.isCut(p));
    inner.on('message', (env) => {
      if (!this.isCut(env.from)) this.emit('message', env);
    });
    inner.on('up', (p) => {
      if (!this.isCut(p)) this.emit('up', p);
    });
    inner.on('down', (p) => {
      if (!this.isCut(p)) this.emit('down', p);
    });
  }

  /** Cut the links to `peers` ('all': every peer). */
  cut(peers: string[] | 'all'): void {
    const before = this.connected();
    if (peers === 'all') this.all = true;
    else for (const p of peers) this.cutOff.add(p);
    for (const p of before) if (this.isCut(p)) this.emit('down', p);
  }

  heal(): void {
    const cut = this.inner.connected().filter((p) => this.isCut(p));
    this.all = false;
    this.cutOff.clear();
    for (const p of cut) this.emit('up', p);
  }

  isCut(peer: string): boolean {
    return this.all || this.cutOff.has(peer);
  }

  send(to: string, env: Envelope): boolean {
    return this.isCut(to) ? false : this.inner.send(to, env);
  }

  connected(): string[] {
    return this.inner.connected().filter((p) => !this.isCut(p));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Applies the faults a file describes to `t`, now and whenever the file changes; returns a stop function. */
export function followFaultFile(t: FaultyTransport, file: string, log: Logger): () => void {
  let last = '';
  const read = () => {
    let text = '';
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch {
      // missing: no faults
    }
    if (text === last) return;
    last = text;
    let cut: string[] | 'all' = [];
    try {
      const v = text ? (JSON.parse(text) as { cut?: unknown }).cut : [];
      if (v === 'all') cut = 'all';
      else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) cut = v as string[];
      else throw new Error('"cut" must be "all" or a list of peer names');
    } catch (err) {
      log.error({ file, err: (err as Error).message }, 'fault file ignored');
      return;
    }
    t.heal();
    if (cut === 'all' || cut.length) t.cut(cut);
    log.warn({ file, cut }, 'TEST FAULTS: watchdog links cut');
  };
  read();
  watchFile(file, { interval: 100 }, read);
  return () => unwatchFile(file, read);
}
