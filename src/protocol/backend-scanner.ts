// The hot path's only parser: walks the message headers in a backend's byte stream, across
// any chunk boundaries, without decoding rows. For each message the sink decides (from the
// type alone) whether its bytes go to the client; whole runs of forwarded messages leave as
// one write of the received chunk (or one view of it), so there is no per-message allocation.
// Bodies are gathered only for the few types the sink asks for (ReadyForQuery, ParameterStatus,
// ErrorResponse…), which are small.

export interface ScanSink {
  /** A message of `type` with `length` (the Int32 length word) starts: forward its bytes? */
  onHeader(type: number, length: number): boolean;
  /** A message the scanner was asked to gather is complete; its body is buf[start, end). */
  onMessage(type: number, buf: Buffer, start: number, end: number): void;
}

export class BackendProtocolError extends Error {}

export class BackendScanner {
  private readonly hdr = Buffer.alloc(5);
  private hdrLen = 0;
  private type = 0;
  /** Body bytes of the current message still to come. */
  private remaining = 0;
  private forwarding = false;
  private gathering = false;
  private gathered: Buffer | null = null;
  private gatheredLen = 0;

  constructor(
    private readonly want: Uint8Array, // want[type] = 1 to gather bodies of that type
    private readonly maxGather = 64 * 1024 * 1024,
  ) {}

  private inMessage = false;

  /** True between messages (no partial header or body pending). */
  get atBoundary(): boolean {
    return this.hdrLen === 0 && !this.inMessage;
  }

  feed(chunk: Buffer, sink: ScanSink, out: (b: Buffer) => void): void {
    const len = chunk.length;
    let pos = 0;
    let segStart = -1; // start of the pending forwarded run in this chunk
    while (pos < len) {
      if (this.inMessage) {
        const n = Math.min(this.remaining, len - pos);
        if (this.forwarding) {
          if (segStart < 0) segStart = pos;
        }
        if (this.gathering && this.gathered) {
          chunk.copy(this.gathered, this.gatheredLen, pos, pos + n);
          this.gatheredLen += n;
        }
        const bodyStart = pos;
        pos += n;
        this.remaining -= n;
        if (this.remaining === 0) {
          this.inMessage = false;
          if (this.gathering) {
            this.gathering = false;
            // Whatever the sink does on this message (e.g. write to the client) must come
            // after the bytes forwarded so far.
            if (segStart >= 0) {
              out(segStart === 0 && pos === len ? chunk : chunk.subarray(segStart, pos));
              segStart = -1;
            }
            if (this.gathered) {
              const g = this.gathered;
              this.gathered = null;
              sink.onMessage(this.type, g, 0, this.gatheredLen);
            } else {
              sink.onMessage(this.type, chunk, bodyStart, pos);
            }
          }
        }
        continue;
      }
      // Reading a header.
      let bodyLen: number;
      if (this.hdrLen === 0 && len - pos >= 5) {
        this.type = chunk[pos]!;
        bodyLen = chunk.readInt32BE(pos + 1) - 4;
        if (bodyLen < 0) throw new BackendProtocolError(`backend sent message type ${this.type} with invalid length ${bodyLen + 4}`);
        const fwd = sink.onHeader(this.type, bodyLen + 4);
        if (fwd) {
          if (segStart < 0) segStart = pos;
        } else if (segStart >= 0) {
          out(segStart === 0 && pos === len ? chunk : chunk.subarray(segStart, pos));
          segStart = -1;
        }
        this.forwarding = fwd;
        pos += 5;
      } else {
        const n = Math.min(5 - this.hdrLen, len - pos);
        chunk.copy(this.hdr, this.hdrLen, pos, pos + n);
        this.hdrLen += n;
        // A partial header is never forwarded before its type is known.
        if (segStart >= 0) {
          out(segStart === 0 && pos === len ? chunk : chunk.subarray(segStart, pos));
          segStart = -1;
        }
        pos += n;
        if (this.hdrLen < 5) continue;
        this.hdrLen = 0;
        this.type = this.hdr[0]!;
        bodyLen = this.hdr.readInt32BE(1) - 4;
        if (bodyLen < 0) throw new BackendProtocolError(`backend sent message type ${this.type} with invalid length ${bodyLen + 4}`);
        const fwd = sink.onHeader(this.type, bodyLen + 4);
        this.forwarding = fwd;
        if (fwd) out(Buffer.from(this.hdr));
      }
      this.remaining = bodyLen;
      this.inMessage = true;
      this.gathering = this.want[this.type] === 1;
      if (this.gathering) {
        if (bodyLen > this.maxGather) throw new BackendProtocolError(`backend message type ${this.type} of ${bodyLen} bytes is too large`);
        // Gather into a private buffer only when the body does not lie whole in this chunk.
        this.gathered = len - pos >= bodyLen ? null : Buffer.allocUnsafe(bodyLen);
        this.gatheredLen = 0;
      }
      if (bodyLen === 0) {
        this.inMessage = false;
        if (this.gathering) {
          this.gathering = false;
          this.gathered = null;
          if (segStart >= 0) {
            out(segStart === 0 && pos === len ? chunk : chunk.subarray(segStart, pos));
            segStart = -1;
          }
          sink.onMessage(this.type, chunk, pos, pos);
        }
      }
    }
    if (segStart >= 0) out(segStart === 0 ? chunk : chunk.subarray(segStart, len));
  }
}
