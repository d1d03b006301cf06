// The running process's side of an online restart: it waits on the takeover socket for its
// successor and, when one comes, gives it everything it holds, in the order that keeps
// clients served: its watchdog first (leadership handed over, Raft storage closed, so the
// data dir is never open twice), then its listening sockets (the kernel keeps accepting into
// them throughout), then each client session at a safe point with its backend connections.
// When it holds nothing it says `done` and the peer exits.
//
// Without descriptor passing (the fdpass addon missing on either side) the listeners are
// closed here and bound again there (a gap of a few milliseconds in which a connection is
// refused), and the sessions here drain: each ends when its client leaves, and those still
// here after `session_wait_ms` are ended with an error that says why.
//
// A takeover that fails before the listeners moved leaves this process serving (with its
// watchdog stopped if it got that far: the log says so); after, the successor serves.
import net from 'node:net';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../log.js';
import { packageVersion } from '../version.js';
import * as fdpass from './fdpass.js';
import { SocketChannel, expect, type Channel } from './channel.js';
import type { IdleConnState, SessionState } from './messages.js';

/** How long each step of the conversation may take before the takeover is abandoned. */
export const STEP_TIMEOUT_MS = 30_000;

/** Sessions the proxy can hand over now, with their descriptors. */
export interface SessionBatch {
  sessions: SessionState[];
  fds: number[];
  /** The successor has them: forget them here (close this process's copies, write nothing). */
  commit(ids: number[]): void;
  /** The successor refused or failed: they resume here. */
  rollback(ids: number[]): void;
}

/** Idle pooled connections the proxy hands over now (ids: indexes in `conns`). */
export interface IdleConnBatch {
  conns: IdleConnState[];
  fds: number[];
  commit(ids: number[]): void;
  rollback(ids: number[]): void;
}

/** What the running peer offers to its successor. */
export interface Giver {
  /** Stops this peer's watchdog (handing leadership and the VIP over) and failover engine. */
  releaseWatchdog(): Promise<{ reason: string; contactAt: number | null }>;
  listeners(): { proxy: { fd: number | undefined; host: string; port: number }; admin: { fd: number | undefined; host: string; port: number } | undefined };
  /** Stops accepting on both listeners (the successor holds them, or binds them anew). */
  stopAccepting(): Promise<void>;
  /** Up to `max` sessions at a safe point, taken off this proxy's books (undefined: sessions cannot move from here). */
  takeSessions(max: number): SessionBatch | undefined;
  /** Up to `max` idle pooled connections (no session holds them), checked out of the pool. */
  takeIdleConns(max: number): IdleConnBatch;
  /** Sessions still here. */
  sessionCount(): number;
  /** Ends every session still here with `message`; returns how many. */
  endSessions(message: string): number;
  /** Why this peer cannot be taken over now, or undefined. */
  refusal(): string | undefined;
}

/** The default takeover socket of a proxy port. */
export function takeoverSocketPath(configured: string, proxyPort: number, tmp: string): string {
  return configured || `${tmp}/pgwatchdog-${proxyPort}.takeover.sock`;
}

/** Where moving the sessions spent its time here (the log's `cost`; bench:restart prints it). */
interface MoveCost {
  batches: number;
  /** Finding sessions at a safe point and exporting them. */
  takeMs: number;
  /** Encoding and writing batches. */
  sendMs: number;
  /** Waiting for the successor's acknowledgements. */
  ackWaitMs: number;
  /** Forgetting acknowledged sessions here. */
  commitMs: number;
}

/** Sessions per message, and messages sent before the first is acknowledged. */
const BATCH = 100;
/** Idle pooled connections per message (one descriptor each). */
const CONN_BATCH = 200;
const WINDOW = 4;

export class TakeoverServer {
  private server: net.Server | undefined;
  private busy = false;
  /** Resolves when a successor has taken everything over (the peer then stops). */
  readonly finished: Promise<string>;
  private finish!: (reason: string) => void;

  constructor(
    private readonly path: string,
    private readonly giver: Giver,
    private readonly log: Logger,
    private readonly sessionWaitMs: number,
  ) {
    this.finished = new Promise((r) => (this.finish = r));
  }

  async listen(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true });
    // A socket file left by a process that died is in the way; a live one answers (and is
    // replaced all the same: only one process serves a proxy port, and it is this one).
    rmSync(this.path, { force: true });
    const server = net.createServer((sock) => void this.serve(sock));
    server.on('error', (err) => this.log.error({ err: err.message, path: this.path }, 'takeover socket error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.log.info({ path: this.path, descriptorPassing: fdpass.available() }, 'waiting for a successor on the takeover socket');
  }

  close(): void {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.close();
    rmSync(this.path, { force: true });
  }

  private async serve(sock: net.Socket): Promise<void> {
    const ch = new SocketChannel(sock, 'new process', fdpass.available());
    if (this.busy) {
      ch.send({ type: 'refuse', reason: 'another takeover of this peer is in progress' });
      ch.close();
      return;
    }
    this.busy = true;
    const t0 = Date.now();
    /** When each step ended, in ms after the successor's hello (for the log and bench:restart). */
    const phases = { watchdog: 0, listeners: 0, sessions: 0 };
    let listenersMoved = false;
    try {
      const hello = await expect(ch, 'hello', STEP_TIMEOUT_MS);
      const refusal = this.giver.refusal();
      if (refusal) {
        ch.send({ type: 'refuse', reason: refusal });
        this.log.warn({ successor: hello.pid, reason: refusal }, 'takeover refused');
        return;
      }
      const fds = hello.fdpass && ch.passesDescriptors;
      this.log.info({ successor: hello.pid, version: hello.version, ours: packageVersion(), descriptorPassing: fds }, fds ? 'takeover started: handing over listeners, sessions and backend connections' : 'takeover started without descriptor passing: handing over the listeners by rebinding, then draining sessions');
      ch.send({ type: 'welcome', pid: process.pid, fdpass: fds });

      await expect(ch, 'release-watchdog', STEP_TIMEOUT_MS);
      const released = await this.giver.releaseWatchdog();
      ch.send({ type: 'watchdog-released', ...released });
      phases.watchdog = Date.now() - t0;

      await expect(ch, 'send-listeners', STEP_TIMEOUT_MS);
      await this.sendListeners(ch, fds);
      listenersMoved = true;
      await expect(ch, 'listening', STEP_TIMEOUT_MS);
      phases.listeners = Date.now() - t0;
      // The successor accepts on the shared sockets now; this process stops.

      const t1 = Date.now();
      await this.giver.stopAccepting();
      const stopMs = Date.now() - t1;
      // The idle pool goes first (the successor's new clients find it), then the sessions,
      // then what became idle while they moved (connections of sessions that ended here).
      let pooled = fds ? await this.movePool(ch) : 0;
      const { moved, ended, cost } = fds ? await this.moveSessions(ch) : { ...(await this.drain()), cost: undefined };
      if (fds) pooled += await this.movePool(ch);
      const reason = `${moved} sessions moved, ${ended} ended, ${pooled} idle backend connections moved`;
      // The socket path is the successor's from here: free it before saying done (the
      // successor then listens on it for its own successor).
      this.close();
      ch.send({ type: 'done', moved, ended, pooled, reason });
      phases.sessions = Date.now() - t0;
      this.log.info({ moved, ended, pooled, ms: Date.now() - t0, phases, stopAcceptingMs: stopMs, cost }, 'takeover finished: this process holds nothing and stops');
      this.finish(reason);
    } catch (err) {
      const reason = (err as Error).message;
      try {
        ch.send({ type: 'abort', reason });
      } catch {
        // the successor is gone
      }
      if (!listenersMoved) {
        this.log.error({ reason }, 'takeover failed before the listeners moved: this process keeps serving');
      } else {
        // The successor holds the listeners; what is still here ends as a drain would.
        this.log.error({ reason }, 'takeover failed after the listeners moved: the successor serves; sessions here drain');
        const { ended } = await this.drain();
        this.close();
        this.finish(`takeover failed after the listeners moved (${reason}); ${ended} sessions ended`);
      }
    } finally {
      ch.close();
      this.busy = false;
    }
  }

  private async sendListeners(ch: Channel, fds: boolean): Promise<void> {
    const l = this.giver.listeners();
    const adminFd = l.admin?.fd;
    if (fds && l.proxy.fd !== undefined && (l.admin === undefined || adminFd !== undefined)) {
      const list = [l.proxy.fd];
      const admin = l.admin && adminFd !== undefined ? { fd: list.push(adminFd) - 1, host: l.admin.host, port: l.admin.port } : null;
      ch.send({ type: 'listeners', proxy: { fd: 0, host: l.proxy.host, port: l.proxy.port }, admin }, list);
      return;
    }
    // No descriptors: close ours so that the successor can bind the same addresses.
    await this.giver.stopAccepting();
    ch.send({ type: 'listeners', proxy: { fd: null, host: l.proxy.host, port: l.proxy.port }, admin: l.admin ? { fd: null, host: l.admin.host, port: l.admin.port } : null });
  }

  /**
   * Hands the idle pooled connections over, a batch at a time, each acknowledged before this
   * process forgets it; those the successor refuses stay here (and close when it exits).
   */
  private async movePool(ch: Channel): Promise<number> {
    let moved = 0;
    for (;;) {
      const batch = this.giver.takeIdleConns(CONN_BATCH);
      if (batch.conns.length === 0) return moved;
      const all = batch.conns.map((_, i) => i);
      try {
        ch.send({ type: 'pool', conns: batch.conns }, batch.fds);
      } catch (err) {
        batch.rollback(all);
        throw err;
      }
      let ack;
      try {
        ack = await expect(ch, 'adopted', STEP_TIMEOUT_MS);
      } catch (err) {
        // The successor may hold them: closing ours leaves its copies as they are.
        batch.commit(all);
        throw err;
      }
      batch.commit(ack.ids);
      batch.rollback(ack.failed.map((f) => f.id));
      moved += ack.ids.length;
      if (ack.failed.length) {
        this.log.warn({ failed: ack.failed.slice(0, 5), count: ack.failed.length }, 'the successor could not pool some idle connections; they stay here and close when this process exits');
        return moved;
      }
    }
  }

  /**
   * Hands sessions over in batches as they reach safe points, a few batches in flight (the
   * successor adopts one while the next is on its way); ends what is left after the wait.
   */
  private async moveSessions(ch: Channel): Promise<{ moved: number; ended: number; cost: MoveCost }> {
    const deadline = Date.now() + this.sessionWaitMs;
    let moved = 0;
    const cost: MoveCost = { batches: 0, takeMs: 0, sendMs: 0, ackWaitMs: 0, commitMs: 0 };
    const since = (t: number): number => performance.now() - t;
    const inFlight: { batch: SessionBatch; ids: number[] }[] = [];
    // Acks come in the order the batches went.
    const ackOne = async (): Promise<void> => {
      const f = inFlight[0]!;
      let ack;
      const t0 = performance.now();
      try {
        ack = await expect(ch, 'adopted', STEP_TIMEOUT_MS);
        cost.ackWaitMs += since(t0);
      } catch (err) {
        // The successor may hold some of them: neither side can tell which. Closing ours
        // leaves the successor's copies as they are.
        for (const x of inFlight.splice(0)) x.batch.commit(x.ids);
        throw err;
      }
      inFlight.shift();
      const t1 = performance.now();
      f.batch.commit(ack.ids);
      cost.commitMs += since(t1);
      if (ack.failed.length) {
        this.log.warn({ failed: ack.failed }, 'the successor could not adopt some sessions; they stay here');
        f.batch.rollback(ack.failed.map((x) => x.id));
      }
      moved += ack.ids.length;
    };
    while (this.giver.sessionCount() > 0 && Date.now() < deadline) {
      const t0 = performance.now();
      const batch = inFlight.length < WINDOW ? this.giver.takeSessions(BATCH) : undefined;
      cost.takeMs += since(t0);
      if (batch && batch.sessions.length > 0) {
        const ids = batch.sessions.map((s) => s.id);
        try {
          const t1 = performance.now();
          ch.send({ type: 'sessions', sessions: batch.sessions }, batch.fds);
          cost.sendMs += since(t1);
          cost.batches++;
        } catch (err) {
          batch.rollback(ids);
          throw err;
        }
        inFlight.push({ batch, ids });
        continue;
      }
      if (inFlight.length > 0) await ackOne();
      // Nothing at a safe point yet: sessions in a transaction, COPY or a statement.
      else await new Promise((r) => setTimeout(r, 2));
    }
    while (inFlight.length > 0) await ackOne();
    const ended = this.giver.endSessions(`pgwatchdog is restarting and this session did not reach a point where it could move (idle, between transactions) within ${this.sessionWaitMs} ms; reconnect`);
    for (const k of ['takeMs', 'sendMs', 'ackWaitMs', 'commitMs'] as const) cost[k] = Math.round(cost[k]);
    return { moved, ended, cost };
  }

  /** Without descriptor passing: sessions end as their clients leave; the rest after the wait. */
  private async drain(): Promise<{ moved: number; ended: number }> {
    const deadline = Date.now() + this.sessionWaitMs;
    while (this.giver.sessionCount() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const ended = this.giver.endSessions(`pgwatchdog is restarting and this session was still open after ${this.sessionWaitMs} ms; reconnect (it is served again at once)`);
    return { moved: 0, ended };
  }
}
