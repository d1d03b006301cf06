// The takeover socket's two ends, with the messages of messages.ts on them.
//
// Why two shapes: a descriptor that arrives on a socket libuv reads is lost (libuv's read has
// no room for ancillary data, so the kernel closes it). So the side that receives descriptors
// (the new process) reads with recvmsg through the addon (FdChannel), and the side that only
// sends them (the old process) may let libuv read and writes with sendmsg itself
// (SocketChannel). Without the addon both ends are plain net.Sockets and no descriptor moves.
import net from 'node:net';
import * as fdpass from './fdpass.js';
import { encode, FrameDecoder, type Message, type MessageOf, type Outgoing } from './messages.js';

/** A received message with the descriptors that came with it (this process now owns them). */
export type Received = Message & { fdList: number[] };

export interface Channel {
  send(m: Outgoing, fds?: number[]): void;
  /** The next message; rejects when none comes within `timeoutMs` or the other side closes. */
  next(timeoutMs: number): Promise<Received>;
  close(): void;
}

/** Waits for a message of one type; an `abort` or `refuse` from the other side rejects with its reason. */
export async function expect<T extends Message['type']>(ch: Channel, type: T, timeoutMs: number): Promise<MessageOf<T> & { fdList: number[] }> {
  const m = await ch.next(timeoutMs);
  if (m.type === type) return m as MessageOf<T> & { fdList: number[] };
  if (m.type === 'abort' || m.type === 'refuse') throw new Error(m.reason);
  throw new Error(`takeover: expected ${type}, got ${m.type}`);
}

/** Hands out messages as they are decoded; one waiter at a time. */
class Inbox {
  private readonly queue: Received[] = [];
  private waiter: { resolve: (m: Received) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | undefined;
  private failed: Error | undefined;
  readonly fds: number[] = [];

  get waiting(): boolean {
    return this.waiter !== undefined;
  }

  deliver(msgs: Message[]): void {
    for (const m of msgs) {
      if (m.fds > this.fds.length) {
        this.fail(new Error(`takeover message ${m.type} announced ${m.fds} descriptors, ${this.fds.length} arrived`));
        return;
      }
      this.queue.push({ ...m, fdList: this.fds.splice(0, m.fds) });
    }
    this.wake();
  }

  fail(err: Error): void {
    this.failed ??= err;
    this.wake();
  }

  next(timeoutMs: number, what: string): Promise<Received> {
    if (this.waiter) return Promise.reject(new Error('takeover channel: two readers at once'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`takeover: no message from the ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = { resolve, reject, timer };
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiter;
    if (!w) return;
    const m = this.queue.shift();
    if (m) {
      this.waiter = undefined;
      clearTimeout(w.timer);
      w.resolve(m);
    } else if (this.failed) {
      this.waiter = undefined;
      clearTimeout(w.timer);
      w.reject(this.failed);
    }
  }
}

/** How long one send may wait for room in the socket before the takeover gives up. */
const SEND_WAIT_MS = 5000;

/** The end libuv reads: the old process's (always), and the new one's without the addon. */
export class SocketChannel implements Channel {
  private readonly inbox = new Inbox();
  private readonly decoder = new FrameDecoder();
  /** With the addon, every write goes through sendmsg (one path keeps the bytes in order). */
  private readonly fd: number | undefined;

  constructor(
    private readonly sock: net.Socket,
    private readonly what: string,
    withDescriptors: boolean,
  ) {
    const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
    this.fd = withDescriptors && typeof fd === 'number' && fd >= 0 ? fd : undefined;
    sock.on('data', (chunk: Buffer) => {
      try {
        this.inbox.deliver(this.decoder.push(chunk));
      } catch (err) {
        this.inbox.fail(err as Error);
        sock.destroy();
      }
    });
    sock.on('error', (err) => this.inbox.fail(new Error(`takeover socket (${what}): ${err.message}`)));
    sock.on('close', () => this.inbox.fail(new Error(`takeover: the ${what} closed the connection`)));
  }

  /** True when this end can send descriptors. */
  get passesDescriptors(): boolean {
    return this.fd !== undefined;
  }

  send(m: Outgoing, fds: number[] = []): void {
    if (this.fd === undefined) {
      if (fds.length) throw new Error('takeover: this end cannot send descriptors (the fdpass addon is not built)');
      this.sock.write(encode(m));
      return;
    }
    const frame = encode(m, fds.length);
    // More descriptors than one sendmsg carries go with empty-bodied chunks of the frame:
    // the receiver counts descriptors, not sends.
    if (fds.length <= fdpass.MAX_FDS_PER_SEND) {
      fdpass.sendAll(this.fd, frame, fds, SEND_WAIT_MS);
      return;
    }
    let off = 0;
    for (let i = 0; i < fds.length; i += fdpass.MAX_FDS_PER_SEND) {
      const last = i + fdpass.MAX_FDS_PER_SEND >= fds.length;
      const end = last ? frame.length : Math.min(off + 1, frame.length - 1);
      fdpass.sendAll(this.fd, frame.subarray(off, end), fds.slice(i, i + fdpass.MAX_FDS_PER_SEND), SEND_WAIT_MS);
      off = end;
    }
    if (off < frame.length) fdpass.sendAll(this.fd, frame.subarray(off), [], SEND_WAIT_MS);
  }

  next(timeoutMs: number): Promise<Received> {
    return this.inbox.next(timeoutMs, this.what);
  }

  close(): void {
    this.sock.destroy();
  }
}

/** How long one poll of the socket blocks the event loop while a reply is awaited. */
const POLL_MS = 1;

/** The new process's end with the addon: reads with recvmsg, keeping the descriptors. */
export class FdChannel implements Channel {
  private readonly inbox = new Inbox();
  private readonly decoder = new FrameDecoder();
  private closed = false;
  private polling = false;

  constructor(
    private readonly fd: number,
    private readonly what: string,
  ) {}

  static connect(path: string, what: string): FdChannel {
    return new FdChannel(fdpass.connect(path), what);
  }

  send(m: Outgoing, fds: number[] = []): void {
    fdpass.sendAll(this.fd, encode(m, fds.length), fds, SEND_WAIT_MS);
  }

  next(timeoutMs: number): Promise<Received> {
    const p = this.inbox.next(timeoutMs, this.what);
    this.poll();
    return p;
  }

  /**
   * Reads while a reader waits: everything there is until a message is whole (a batch of
   * sessions comes in many reads: one per event-loop turn made it wait on the turns), then
   * yields; with nothing there, it waits a millisecond at a time, yielding in between.
   */
  private poll(): void {
    if (this.polling) return;
    this.polling = true;
    const step = (): void => {
      if (!this.inbox.waiting || this.closed) {
        this.polling = false;
        return;
      }
      try {
        for (let wait = POLL_MS; ; wait = 0) {
          const r = fdpass.recv(this.fd, 1 << 20, wait);
          if (!r) break;
          if (r.truncated) throw new Error('takeover: descriptors were dropped by the kernel (too many in one message)');
          this.inbox.fds.push(...r.fds);
          if (r.data.length === 0) throw new Error(`takeover: the ${this.what} closed the connection`);
          const msgs = this.decoder.push(r.data);
          if (msgs.length > 0) {
            this.inbox.deliver(msgs);
            break;
          }
        }
      } catch (err) {
        this.inbox.fail(err as Error);
        this.polling = false;
        return;
      }
      setImmediate(step);
    };
    setImmediate(step);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.inbox.fds.splice(0)) fdpass.close(fd);
    fdpass.close(this.fd);
  }
}
