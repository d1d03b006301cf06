// The successor's side of an online restart (`pgwatchdog start --takeover`): it connects to
// the running process's takeover socket and asks for what it holds, step by step, as the
// peer starts (peer.ts calls these in its start order): the watchdog is released before this
// process opens the Raft data dir; the listeners arrive before the proxy would bind; the
// sessions come after, while this process already accepts new clients.
import net from 'node:net';
import { once } from 'node:events';
import type { Logger } from '../log.js';
import { packageVersion } from '../version.js';
import * as fdpass from './fdpass.js';
import { FdChannel, SocketChannel, expect, type Channel } from './channel.js';
import type { ListenOn } from './listen.js';
import type { IdleConnState, SessionState } from './messages.js';
import { STEP_TIMEOUT_MS } from './old-side.js';

/** What the successor's proxy does with sessions handed over. */
export interface Taker {
  /** Adopts sessions with their descriptors (fds[i] for index i in the states); returns the ids adopted and why others were not. */
  adoptSessions(sessions: SessionState[], fds: number[]): { ids: number[]; failed: { id: number; reason: string }[] };
  /** Pools idle backend connections handed over (fds[i] for index i; ids: their indexes in `conns`). */
  adoptIdleConns(conns: IdleConnState[], fds: number[]): { ids: number[]; failed: { id: number; reason: string }[] };
}

export interface Listeners {
  proxy: ListenOn;
  admin: ListenOn | undefined;
}

/** How long a listener handed over by rebinding may stay in use (the old process closing it). */
const REBIND_RETRY_MS = 2000;

export class Successor {
  private constructor(
    private readonly ch: Channel,
    readonly oldPid: number,
    /** Descriptors move: sessions too, not only the listeners. */
    readonly passesDescriptors: boolean,
    private readonly log: Logger,
  ) {}

  /** Connects and says hello; rejects with the old process's reason when it refuses. */
  static async connect(path: string, log: Logger): Promise<Successor> {
    const withFds = fdpass.available();
    let ch: Channel;
    try {
      if (withFds) ch = FdChannel.connect(path, 'old process');
      else {
        const sock = net.connect(path);
        await once(sock, 'connect');
        ch = new SocketChannel(sock, 'old process', false);
      }
    } catch (err) {
      throw new Error(`no running peer to take over at ${path}: ${(err as Error).message}`, { cause: err });
    }
    if (!withFds) log.warn({ reason: fdpass.unavailableReason() }, 'descriptor passing unavailable: only the listeners move (by rebinding); sessions on the old process drain');
    ch.send({ type: 'hello', pid: process.pid, version: packageVersion(), fdpass: withFds });
    try {
      const w = await expect(ch, 'welcome', STEP_TIMEOUT_MS);
      log.info({ old: w.pid, parent: process.ppid, descriptorPassing: w.fdpass }, 'taking over from the running process');
      return new Successor(ch, w.pid, w.fdpass, log);
    } catch (err) {
      ch.close();
      throw new Error(`the running peer refused the takeover: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * The old process stops its watchdog (handing leadership over); after this, this one may
   * open the Raft data dir. Resolves with when the old one was last joined to a majority.
   */
  async releaseWatchdog(): Promise<number | null> {
    this.ch.send({ type: 'release-watchdog' });
    const r = await expect(this.ch, 'watchdog-released', STEP_TIMEOUT_MS);
    this.log.info({ reason: r.reason, contactAgoMs: r.contactAt === null ? null : Date.now() - r.contactAt }, 'the old process released its watchdog');
    return r.contactAt;
  }

  /** The old process's listening sockets: descriptors to adopt, or addresses it freed to bind. */
  async listeners(): Promise<Listeners> {
    this.ch.send({ type: 'send-listeners' });
    const m = await expect(this.ch, 'listeners', STEP_TIMEOUT_MS);
    const on = (l: { fd: number | null; host: string; port: number }): ListenOn => {
      if (l.fd === null) return { host: l.host, port: l.port, retryInUseMs: REBIND_RETRY_MS, backlog: 1024 };
      const fd = m.fdList[l.fd];
      if (fd === undefined) throw new Error(`takeover: listener descriptor ${l.fd} missing`);
      return { fd };
    };
    return { proxy: on(m.proxy), admin: m.admin ? on(m.admin) : undefined };
  }

  /**
   * Tells the old process this one accepts now, then adopts its sessions as they come.
   * Resolves with the old process's summary once it holds nothing.
   */
  async takeSessions(taker: Taker): Promise<string> {
    this.ch.send({ type: 'listening' });
    // Where the time went here, for the log (bench:restart reads it): reading and decoding
    // batches (waiting for the old process included) and adopting them.
    const cost = { batches: 0, sessions: 0, waitMs: 0, adoptMs: 0 };
    try {
      for (;;) {
        const tWait = performance.now();
        const m = await this.ch.next(STEP_TIMEOUT_MS + 60_000);
        cost.waitMs += performance.now() - tWait;
        if (m.type === 'done') {
          this.log.info({ ...cost, waitMs: Math.round(cost.waitMs), adoptMs: Math.round(cost.adoptMs) }, 'sessions taken over');
          return m.reason;
        }
        if (m.type === 'abort') throw new Error(`the old process abandoned the takeover: ${m.reason}`);
        if (m.type !== 'sessions' && m.type !== 'pool') throw new Error(`takeover: unexpected ${m.type} while sessions move`);
        let r: ReturnType<Taker['adoptSessions']>;
        const t0 = performance.now();
        try {
          r = m.type === 'sessions' ? taker.adoptSessions(m.sessions, m.fdList) : taker.adoptIdleConns(m.conns, m.fdList);
        } catch (err) {
          const ids = m.type === 'sessions' ? m.sessions.map((s) => s.id) : m.conns.map((_, i) => i);
          r = { ids: [], failed: ids.map((id) => ({ id, reason: (err as Error).message })) };
          for (const fd of m.fdList) fdpass.close(fd);
        }
        if (m.type === 'pool') {
          this.ch.send({ type: 'adopted', ids: r.ids, failed: r.failed });
          continue;
        }
        cost.adoptMs += performance.now() - t0;
        cost.batches++;
        cost.sessions += m.sessions.length;
        this.ch.send({ type: 'adopted', ids: r.ids, failed: r.failed });
      }
    } finally {
      this.ch.close();
    }
  }

  abort(reason: string): void {
    try {
      this.ch.send({ type: 'abort', reason });
    } catch {
      // the old process is gone
    }
    this.ch.close();
  }
}
