// The takeover conversation between a running peer process (the "old" one) and its successor
// (the "new" one), on a unix socket: named, versioned messages, each a frame of a 4-byte
// big-endian length and a JSON object. A message that carries descriptors says how many
// (`fds`); they travel (SCM_RIGHTS) with the frame's first byte, so a receiver that has read
// the whole frame has them too, in order. Pure: encoding, framing and validation only.
//
// The conversation (new → old on the left, old → new on the right):
//   hello {version, pid, fdpass}      → welcome {pid, fdpass}   | refuse {reason}
//   release-watchdog                  → watchdog-released       (old's watchdog stopped, its Raft storage closed)
//   send-listeners                    → listeners {proxy, admin} (fds, or `rebind`: the old closed them)
//   listening                         → sessions {count, fds}…  (state + descriptors, in batches)
//   adopted {ids}                     → …                        (each batch acknowledged before the old forgets it)
//                                     → done {ended, reason}     (the old holds nothing and exits)
//   abort {reason} either way: the takeover stops; an old that still serves keeps serving.
import { z } from 'zod';

/** Bumped when a message changes shape; both sides must speak the same. */
export const PROTOCOL_VERSION = 1;
/** A frame larger than this is refused (a batch of sessions stays far below). */
export const MAX_FRAME = 64 * 1024 * 1024;

const listenerSpec = z.object({
  /** Index of the descriptor in the message's fds, or null when the old closed it for the new to bind. */
  fd: z.number().int().min(0).nullable(),
  host: z.string(),
  port: z.number().int(),
});

/** One migrated backend connection: its descriptor's index in the message and what the session knows of it. */
export const backendState = z.object({
  fd: z.number().int().min(0),
  backendId: z.number().int().min(0),
  pid: z.number().int(),
  secret: z.number().int(),
  /** The server's ParameterStatus values. */
  params: z.record(z.string(), z.string()),
  /** Startup parameters the proxy SET on it (reset by the next session that differs). */
  applied: z.record(z.string(), z.string()),
  /** Something ran that may leave state behind: reset when the session gives it back. */
  dirty: z.boolean(),
  /** Statement names closed by the client but still existing on this connection. */
  stale: z.array(z.string()),
});
export type BackendState = z.infer<typeof backendState>;

/** One migrated client session, at a safe point (session.ts `exportState` / `Session.adopt`). */
export const sessionState = z.object({
  id: z.number().int(),
  clientFd: z.number().int().min(0),
  user: z.string(),
  database: z.string(),
  startupParams: z.record(z.string(), z.string()),
  /** The BackendKeyData secret the client holds: cancels keep working after the move. */
  secret: z.number().int(),
  primary: backendState,
  standby: backendState.nullable(),
  primaryOnly: z.boolean(),
  standbyDiverged: z.boolean(),
  /** Causal reads: what the session's reads wait for (proxy/causal.ts CausalNeedWire); absent from a process without them. */
  causal: z
    .object({ own: z.string().regex(/^\d+$/), given: z.string().regex(/^\d+$/), pendingSince: z.union([z.number(), z.literal('running'), z.null()]) })
    .optional(),
  answered: z.number().int(),
  /** Prepared statements: the Parse (base64) and which connection has each. */
  statements: z.array(z.object({ name: z.string(), parse: z.string(), primary: z.boolean(), write: z.boolean(), onPrimary: z.boolean(), onStandby: z.boolean() })),
  /** What the session made of its connection (proxy/session-state.ts RecordWire), to re-create it after a failover; absent from a process without it. */
  record: z
    .object({
      sets: z.array(z.tuple([z.string(), z.string()])),
      listens: z.array(z.tuple([z.string(), z.string()])),
      prepared: z.array(z.tuple([z.string(), z.string()])),
      holdCursors: z.array(z.string()),
      temp: z.boolean(),
      advisory: z.boolean(),
      setConfig: z.boolean(),
    })
    .optional(),
});
export type SessionState = z.infer<typeof sessionState>;

const base = { v: z.literal(PROTOCOL_VERSION), fds: z.number().int().min(0).default(0) };

export const message = z.discriminatedUnion('type', [
  z.object({ ...base, type: z.literal('hello'), pid: z.number().int(), version: z.string(), fdpass: z.boolean() }),
  z.object({ ...base, type: z.literal('welcome'), pid: z.number().int(), fdpass: z.boolean() }),
  z.object({ ...base, type: z.literal('refuse'), reason: z.string() }),
  z.object({ ...base, type: z.literal('release-watchdog') }),
  z.object({ ...base, type: z.literal('watchdog-released'), reason: z.string() }),
  z.object({ ...base, type: z.literal('send-listeners') }),
  z.object({ ...base, type: z.literal('listeners'), proxy: listenerSpec, admin: listenerSpec.nullable() }),
  z.object({ ...base, type: z.literal('listening') }),
  z.object({ ...base, type: z.literal('sessions'), sessions: z.array(sessionState) }),
  z.object({ ...base, type: z.literal('adopted'), ids: z.array(z.number().int()), failed: z.array(z.object({ id: z.number().int(), reason: z.string() })) }),
  z.object({ ...base, type: z.literal('done'), moved: z.number().int(), ended: z.number().int(), reason: z.string() }),
  z.object({ ...base, type: z.literal('abort'), reason: z.string() }),
]);
export type Message = z.infer<typeof message>;
export type MessageOf<T extends Message['type']> = Extract<Message, { type: T }>;
/** What a sender writes: the envelope's `v` and `fds` are filled in by `encode`. */
export type Outgoing = { [K in Message['type']]: Omit<MessageOf<K>, 'v' | 'fds'> }[Message['type']];

/** One frame for `m`, saying it carries `fds` descriptors. */
export function encode(m: Outgoing, fds = 0): Buffer {
  const body = Buffer.from(JSON.stringify({ ...m, v: PROTOCOL_VERSION, fds }));
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** Splits a byte stream into validated messages. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  /** Adds bytes; returns the complete messages in them. Throws on a bad frame (the conversation is over). */
  push(chunk: Buffer): Message[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Message[] = [];
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (len > MAX_FRAME) throw new Error(`takeover frame of ${len} bytes (at most ${MAX_FRAME})`);
      if (this.buf.length < 4 + len) break;
      const text = this.buf.subarray(4, 4 + len).toString('utf8');
      this.buf = this.buf.subarray(4 + len);
      out.push(decode(text));
    }
    return out;
  }
}

export function decode(text: string): Message {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`takeover message is not JSON: ${(err as Error).message}`);
  }
  const v = (raw as { v?: unknown } | null)?.v;
  if (v !== PROTOCOL_VERSION) throw new Error(`takeover protocol version ${JSON.stringify(v)} (this process speaks ${PROTOCOL_VERSION})`);
  const r = message.safeParse(raw);
  if (!r.success) throw new Error(`bad takeover message ${JSON.stringify((raw as { type?: unknown }).type)}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}
