// Splits a client's byte stream into whole messages, across any chunk boundaries, enforcing
// PostgreSQL's length limits so a hostile or broken client cannot make the proxy buffer
// without bound. Two modes: the startup phase (untyped packets: Int32 length + body) and
// the regular phase (Byte1 type + Int32 length + body).
import { MAX_LARGE_MESSAGE, MAX_SMALL_MESSAGE, MAX_STARTUP_PACKET } from './codec.js';
import { FE } from './messages.js';

export class ProtocolViolation extends Error {
  /**
   * `unanswered`: PostgreSQL only logs this one (COMMERROR) and closes the connection without
   * a word — a client that sends Terminate before any startup packet relies on that.
   */
  constructor(
    message: string,
    readonly sqlstate = '08P01',
    readonly unanswered = false,
  ) {
    super(message);
    this.name = 'ProtocolViolation';
  }
}

// Frontend message types that may be large (queries, statements, parameters, COPY data,
// passwords/SASL); everything else is a small control message.
// Per message type (a byte): 0 unknown, SMALL or LARGE (may carry up to MAX_LARGE_MESSAGE).
// A table, not a Set: it is consulted for every client message.
const SMALL = 1;
const LARGE = 2;
const TYPES = new Uint8Array(256);
for (const t of [FE.Query, FE.Parse, FE.Bind, FE.CopyData, FE.FunctionCall, FE.Password]) TYPES[t] = LARGE;
for (const t of [FE.Execute, FE.Describe, FE.Close, FE.Flush, FE.Sync, FE.Terminate, FE.CopyDone, FE.CopyFail]) TYPES[t] = SMALL;

/** Beyond this, an incomplete message is collected in parts and joined once, not re-copied per chunk. */
const COLLECT_THRESHOLD = 64 * 1024;

export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private parts: Buffer[] | null = null;
  private partsLen = 0;
  private partsNeed = 0;

  constructor(public startupPhase = true) {}

  /** Bytes received but not yet returned as messages. */
  get buffered(): number {
    return this.buf.length - this.pos + this.partsLen;
  }

  push(chunk: Buffer): void {
    if (this.parts) {
      this.parts.push(chunk);
      this.partsLen += chunk.length;
      if (this.partsLen >= this.partsNeed) {
        const all = Buffer.concat(this.parts, this.partsLen);
        this.parts = null;
        this.partsLen = 0;
        this.buf = all;
        this.pos = 0;
      }
      return;
    }
    if (this.pos >= this.buf.length) {
      this.buf = chunk;
      this.pos = 0;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.pos), chunk]);
      this.pos = 0;
    }
  }

  /** Puts bytes back in front of everything received (a request sent again: proxy/never-ran.ts). */
  unshift(chunk: Buffer): void {
    if (this.parts) {
      this.parts.unshift(chunk);
      this.partsLen += chunk.length;
      this.partsNeed += chunk.length;
      return;
    }
    this.buf = this.pos >= this.buf.length ? chunk : Buffer.concat([chunk, this.buf.subarray(this.pos)]);
    this.pos = 0;
  }

  /**
   * The next whole message (header included) or null when more bytes are needed. The buffer
   * is a view into received data: valid until the caller has written it onward.
   */
  next(): Buffer | null {
    if (this.parts) return null;
    const avail = this.buf.length - this.pos;
    const hdr = this.startupPhase ? 4 : 5;
    if (avail < hdr) return null;
    let total: number;
    if (this.startupPhase) {
      const len = this.buf.readInt32BE(this.pos);
      if (len < 8 || len > MAX_STARTUP_PACKET) throw new ProtocolViolation('invalid length of startup packet', '08P01', true);
      total = len;
    } else {
      const type = this.buf[this.pos]!;
      const kind = TYPES[type]!;
      if (kind === 0) {
        throw new ProtocolViolation(`invalid frontend message type ${type}`);
      }
      const len = this.buf.readInt32BE(this.pos + 1);
      const max = kind === LARGE ? MAX_LARGE_MESSAGE : MAX_SMALL_MESSAGE;
      if (len < 4 || len > max) throw new ProtocolViolation(`invalid message length ${len} for message type "${String.fromCharCode(type)}"`);
      total = len + 1;
    }
    if (avail < total) {
      if (total > COLLECT_THRESHOLD) {
        this.parts = [this.buf.subarray(this.pos)];
        this.partsLen = avail;
        this.partsNeed = total;
        this.buf = Buffer.alloc(0);
        this.pos = 0;
      }
      return null;
    }
    const msg = this.buf.subarray(this.pos, this.pos + total);
    this.pos += total;
    return msg;
  }

  /** Everything buffered and not yet returned (e.g. bytes a client sent after SSLRequest). */
  takeRest(): Buffer {
    const rest = this.buf.subarray(this.pos);
    this.buf = Buffer.alloc(0);
    this.pos = 0;
    return rest;
  }
}
