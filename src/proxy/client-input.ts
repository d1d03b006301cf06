// What a session reads from its client: the read buffers a lean connection (tcp.ts) reads
// into, the frame reader that cuts messages from them, and the one-message waits of the
// startup phase. The session decides what to do with each message (session.ts).
import { FrameReader } from '../protocol/frame-reader.js';

/** Read buffer of a client connection that reads into the session's buffers (tcp.ts), once reads fill a small one. */
const CLIENT_READ_BUFFER = 32 * 1024;
/**
 * The first read buffers are small slices of Node's shared Buffer pool (under 4 KiB): a
 * connection-per-transaction client then costs no buffer of its own, whose external memory
 * would drive V8 into major GCs (measured: pgbench -C, +90 µs of proxy CPU per connection).
 */
const SMALL_READ_BUFFER = 2048;
/**
 * Small read buffers of sessions that ended, for new sessions: a connection-per-transaction
 * client then allocates none. A buffer is put here only when nothing can still read from it
 * or into it (see ClientInput.close).
 */
const spareReadBuffers: Buffer[] = [];
const MAX_SPARE_READ_BUFFERS = 256;

export class ClientInput {
  readonly reader = new FrameReader(true);
  private rbuf: Buffer | undefined;
  private lastReadFull = false;
  private closed = false;
  private waiter: ((m: Buffer | null, err?: Error) => void) | undefined;

  /**
   * `fastReads`: the connection reads into nextReadBuffer() and calls onRead() (a TcpConn);
   * else its 'data' events call onData(). `retained`: true while something still holds a view
   * of the last read (the reader's buffered bytes included). `onChunk`: bytes arrived.
   */
  constructor(
    private readonly fastReads: boolean,
    private readonly retained: () => boolean,
    private readonly onChunk: () => void,
  ) {}

  /**
   * The buffer the next client read lands in. It is reused only while nothing holds a view
   * of the last read (messages the reader still buffers, a blocked message, an unfinished
   * extended batch, bytes queued on a backend socket); otherwise a fresh one. (Startup
   * messages reach the awaiting code as copies, see wake.) Buffers start small; a read that
   * fills one moves the session to CLIENT_READ_BUFFER.
   */
  readonly nextReadBuffer = (): Buffer => {
    const b = this.rbuf;
    const grow = this.lastReadFull && (b === undefined || b.length < CLIENT_READ_BUFFER);
    if (b !== undefined && !grow && !this.closed && !this.retained()) return b;
    if (grow || (b !== undefined && b.length >= CLIENT_READ_BUFFER)) return (this.rbuf = Buffer.allocUnsafe(CLIENT_READ_BUFFER));
    // A closed session's connection reads no more: never hand it a spare.
    return (this.rbuf = (!this.closed && spareReadBuffers.pop()) || Buffer.allocUnsafe(SMALL_READ_BUFFER));
  };

  /** `n` bytes from the client landed in `buf` (the fast read path). */
  readonly onRead = (n: number, buf: Buffer): void => {
    this.lastReadFull = n === buf.length;
    this.onData(buf.subarray(0, n));
  };

  readonly onData = (chunk: Buffer): void => {
    this.reader.push(chunk);
    this.onChunk();
  };

  /** The next whole message (startup phase); rejects when the client goes. */
  next(): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('client closed'));
      this.waiter = (m, err) => (m ? resolve(m) : reject(err ?? new Error('client closed the connection')));
      this.wake();
    });
  }

  /** Hands a complete message to whoever awaits next(). */
  wake(): void {
    const w = this.waiter;
    if (!w) return;
    let m: Buffer | null;
    try {
      m = this.reader.next();
    } catch (err) {
      this.waiter = undefined;
      w(null, err as Error);
      return;
    }
    if (m) {
      this.waiter = undefined;
      // A copy: the awaiting code runs after the read buffer may have been reused.
      w(this.fastReads ? Buffer.from(m) : m);
    }
  }

  /** The session closed; `readsDone`: the connection reads no more, so its buffer may serve another session. */
  close(readsDone: boolean): void {
    this.closed = true;
    const w = this.waiter;
    this.waiter = undefined;
    w?.(null, new Error('client closed the connection'));
    const rb = this.rbuf;
    if (this.fastReads && readsDone && rb?.length === SMALL_READ_BUFFER && !this.retained() && spareReadBuffers.length < MAX_SPARE_READ_BUFFERS) {
      spareReadBuffers.push(rb);
      this.rbuf = undefined;
    }
  }
}
