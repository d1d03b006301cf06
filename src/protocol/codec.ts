// PostgreSQL v3 wire codec: builders for the messages the proxy writes (to clients and to
// backends) and parsers for the few it must read (startup packet, ErrorResponse fields,
// ParameterStatus). Framing of streams lives in frame-reader.ts and backend-scanner.ts.

export const PROTOCOL_3_0 = 196608; // 3 << 16
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
/** PostgreSQL refuses startup packets longer than this (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET = 10_000;
/** Largest message PostgreSQL accepts for bulk types (MaxAllocSize - 1). */
export const MAX_LARGE_MESSAGE = 0x3fffffff;
/** Largest message for control types (PQ_SMALL_MESSAGE_LIMIT). */
export const MAX_SMALL_MESSAGE = 10_000;

/** A growable write buffer for building one or more messages without intermediate copies. */
export class Writer {
  private buf: Buffer;
  private pos = 0;
  private start = -1;

  constructor(size = 256) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** Starts a message; `type` 0 means an untyped (startup-style) message. */
  begin(type: string | number): this {
    if (type !== 0) {
      this.ensure(1);
      this.buf[this.pos++] = typeof type === 'string' ? type.charCodeAt(0) : type;
    }
    this.start = this.pos;
    this.ensure(4);
    this.pos += 4;
    return this;
  }

  end(): this {
    this.buf.writeInt32BE(this.pos - this.start, this.start);
    this.start = -1;
    return this;
  }

  int8(v: number): this {
    this.ensure(1);
    this.buf[this.pos++] = v & 0xff;
    return this;
  }

  int16(v: number): this {
    this.ensure(2);
    this.buf.writeInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  int32(v: number): this {
    this.ensure(4);
    this.buf.writeInt32BE(v | 0, this.pos);
    this.pos += 4;
    return this;
  }

  /** NUL-terminated string. */
  cstr(s: string): this {
    const n = Buffer.byteLength(s);
    this.ensure(n + 1);
    this.buf.write(s, this.pos, 'utf8');
    this.pos += n;
    this.buf[this.pos++] = 0;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** The bytes written so far (a copy-free view). */
  done(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

// ---- errors and notices -----------------------------------------------------------------

export interface PgErrorFields {
  severity: 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'LOG' | 'INFO' | 'DEBUG';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function noticeLike(type: 'E' | 'N', f: PgErrorFields): Buffer {
  const w = new Writer(64 + f.message.length).begin(type);
  w.int8(0x53).cstr(f.severity); // S
  w.int8(0x56).cstr(f.severity); // V (non-localised)
  w.int8(0x43).cstr(f.code); // C
  w.int8(0x4d).cstr(f.message); // M
  if (f.detail) w.int8(0x44).cstr(f.detail);
  if (f.hint) w.int8(0x48).cstr(f.hint);
  return w.int8(0).end().done();
}

export function errorResponse(f: PgErrorFields): Buffer {
  return noticeLike('E', f);
}

export function noticeResponse(f: PgErrorFields): Buffer {
  return noticeLike('N', f);
}

/** Parses the body (after the 5-byte header) of an ErrorResponse/NoticeResponse. */
export function parseErrorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const code = String.fromCharCode(body[i]!);
    const end = body.indexOf(0, i + 1);
    if (end < 0) break;
    out[code] = body.toString('utf8', i + 1, end);
    i = end + 1;
  }
  return out;
}

/** An Error built from ErrorResponse fields, keeping the SQLSTATE. */
export class PgServerError extends Error {
  constructor(
    readonly fields: Record<string, string>,
    context: string,
  ) {
    super(`${context}: ${fields.S ?? 'ERROR'} ${fields.C ?? ''} ${fields.M ?? '(no message)'}`);
    this.name = 'PgServerError';
  }
  get code(): string | undefined {
    return this.fields.C;
  }
}

// ---- backend → client messages built by the proxy --------------------------------------------

export function authenticationOk(): Buffer {
  return new Writer(9).begin('R').int32(0).end().done();
}

export function authenticationMd5(salt: Buffer): Buffer {
  return new Writer(13).begin('R').int32(5).bytes(salt).end().done();
}

export function authenticationCleartext(): Buffer {
  return new Writer(9).begin('R').int32(3).end().done();
}

export function authenticationSasl(mechanisms: string[]): Buffer {
  const w = new Writer().begin('R').int32(10);
  for (const m of mechanisms) w.cstr(m);
  return w.int8(0).end().done();
}

export function authenticationSaslContinue(data: string): Buffer {
  return new Writer().begin('R').int32(11).bytes(Buffer.from(data, 'utf8')).end().done();
}

export function authenticationSaslFinal(data: string): Buffer {
  return new Writer().begin('R').int32(12).bytes(Buffer.from(data, 'utf8')).end().done();
}

export function parameterStatus(name: string, value: string): Buffer {
  return new Writer().begin('S').cstr(name).cstr(value).end().done();
}

export function backendKeyData(pid: number, secret: number): Buffer {
  return new Writer(13).begin('K').int32(pid).int32(secret).end().done();
}

export function commandComplete(tag: string): Buffer {
  return new Writer(16).begin('C').cstr(tag).end().done();
}

export function readyForQuery(status: number): Buffer {
  return new Writer(6).begin('Z').int8(status).end().done();
}

export function negotiateProtocolVersion(newestMinor: number, unrecognized: string[]): Buffer {
  const w = new Writer().begin('v').int32((3 << 16) | newestMinor).int32(unrecognized.length);
  for (const o of unrecognized) w.cstr(o);
  return w.end().done();
}

/** RowDescription + DataRows + CommandComplete for a text-only result. */
export function textResult(columns: string[], rows: (string | null)[][], tag: string): Buffer {
  const w = new Writer(256).begin('T').int16(columns.length);
  for (const c of columns) w.cstr(c).int32(0).int16(0).int32(25).int16(-1).int32(-1).int16(0);
  w.end();
  for (const r of rows) {
    w.begin('D').int16(r.length);
    for (const v of r) {
      if (v === null) w.int32(-1);
      else {
        const b = Buffer.from(v, 'utf8');
        w.int32(b.length).bytes(b);
      }
    }
    w.end();
  }
  return w.begin('C').cstr(tag).end().done();
}

// ---- frontend messages built by the proxy (to backends) ---------------------------------------

export function startupMessage(params: Record<string, string>): Buffer {
  const w = new Writer().begin(0).int32(PROTOCOL_3_0);
  for (const [k, v] of Object.entries(params)) w.cstr(k).cstr(v);
  return w.int8(0).end().done();
}

export function cancelRequest(pid: number, secret: number): Buffer {
  return new Writer(16).begin(0).int32(CANCEL_REQUEST_CODE).int32(pid).int32(secret).end().done();
}

export function query(sql: string): Buffer {
  return new Writer(Buffer.byteLength(sql) + 6).begin('Q').cstr(sql).end().done();
}

export function passwordMessage(password: string): Buffer {
  return new Writer().begin('p').cstr(password).end().done();
}

export function saslInitialResponse(mechanism: string, data: string): Buffer {
  const b = Buffer.from(data, 'utf8');
  return new Writer().begin('p').cstr(mechanism).int32(b.length).bytes(b).end().done();
}

export function saslResponse(data: string): Buffer {
  return new Writer().begin('p').bytes(Buffer.from(data, 'utf8')).end().done();
}

export function terminate(): Buffer {
  return new Writer(5).begin('X').end().done();
}

export function sync(): Buffer {
  return new Writer(5).begin('S').end().done();
}

export function closeStatement(name: string): Buffer {
  return new Writer().begin('C').int8(0x53).cstr(name).end().done();
}

// ---- parsing helpers ---------------------------------------------------------------------------

/** Reads a NUL-terminated string at `pos`; returns it and the position after the NUL, or null. */
export function readCString(buf: Buffer, pos: number, end = buf.length): [string, number] | null {
  // Names in the hot path are short or empty (the unnamed statement and portal): a byte loop
  // beats a native indexOf call there; long strings (query texts) get indexOf.
  let z = pos;
  const lim = Math.min(end, buf.length);
  const short = Math.min(lim, pos + 64);
  while (z < short && buf[z] !== 0) z++;
  if (z === short && z < lim) {
    z = buf.indexOf(0, z);
    if (z < 0) z = lim;
  }
  if (z >= lim) return null;
  return [z === pos ? '' : buf.toString('utf8', pos, z), z + 1];
}

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number }
  | { kind: 'startup'; major: number; minor: number; params: Map<string, string> };

/**
 * Parses a complete startup-phase packet (including its length word). Throws an Error with a
 * client-presentable message on malformed input.
 */
export function parseStartupPacket(pkt: Buffer): StartupPacket {
  if (pkt.length < 8) throw new Error('invalid length of startup packet');
  const code = pkt.readInt32BE(4);
  if (code === SSL_REQUEST_CODE) {
    if (pkt.length !== 8) throw new Error('invalid length of SSL request packet');
    return { kind: 'ssl' };
  }
  if (code === GSSENC_REQUEST_CODE) {
    if (pkt.length !== 8) throw new Error('invalid length of GSSENC request packet');
    return { kind: 'gssenc' };
  }
  if (code === CANCEL_REQUEST_CODE) {
    if (pkt.length !== 16) throw new Error('invalid length of cancel request packet');
    return { kind: 'cancel', pid: pkt.readInt32BE(8), secret: pkt.readInt32BE(12) };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  const params = new Map<string, string>();
  let pos = 8;
  for (;;) {
    if (pos >= pkt.length) throw new Error('invalid startup packet layout: expected terminator as last byte');
    if (pkt[pos] === 0) {
      if (pos !== pkt.length - 1) throw new Error('invalid startup packet layout: expected terminator as last byte');
      break;
    }
    const k = readCString(pkt, pos);
    if (!k) throw new Error('invalid startup packet layout: unterminated parameter name');
    const v = readCString(pkt, k[1]);
    if (!v) throw new Error(`invalid startup packet layout: missing value for parameter "${k[0]}"`);
    params.set(k[0], v[0]);
    pos = v[1];
  }
  return { kind: 'startup', major, minor, params };
}
