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
//   listening                         → pool {conns}…           (idle pooled backend connections, in batches)
//                                     → sessions {count, fds}…  (state + descriptors, in batches)
//                                     → pool {conns}…           (what became idle meanwhile)
//   adopted {ids}                     → …                        (each batch acknowledged before the old forgets it)
//                                     → done {ended, reason}     (the old holds nothing and exits)
//   abort {reason} either way: the takeover stops; an old that still serves keeps serving.
import { z } from 'zod';
import { checkIdleConns, checkSessions, packParams, unpackParams } from './bulk-state.js';

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

export type { BackendState, SessionState, IdleConnState } from './bulk-state.js';

/** A zod transform running a hand-written check; its error becomes the issue's message. */
function bulk<T>(check: (v: unknown) => T) {
  return (v: unknown, ctx: z.RefinementCtx): T => {
    try {
      return check(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  };
}

const base = { v: z.literal(PROTOCOL_VERSION), fds: z.number().int().min(0).default(0) };

export const message = z.discriminatedUnion('type', [
  z.object({ ...base, type: z.literal('hello'), pid: z.number().int(), version: z.string(), fdpass: z.boolean() }),
  z.object({ ...base, type: z.literal('welcome'), pid: z.number().int(), fdpass: z.boolean() }),
  z.object({ ...base, type: z.literal('refuse'), reason: z.string() }),
  z.object({ ...base, type: z.literal('release-watchdog') }),
  /** contactAt: when the old process's watchdog was last joined to a majority (epoch ms), null when never or none. */
  z.object({ ...base, type: z.literal('watchdog-released'), reason: z.string(), contactAt: z.number().nullable().default(null) }),
  z.object({ ...base, type: z.literal('send-listeners') }),
  z.object({ ...base, type: z.literal('listeners'), proxy: listenerSpec, admin: listenerSpec.nullable() }),
  z.object({ ...base, type: z.literal('listening') }),
  // The bulk state is checked by bulk-state.ts (see there why not by zod).
  z.object({ ...base, type: z.literal('sessions'), sessions: z.unknown().transform(bulk(checkSessions)) }),
  z.object({ ...base, type: z.literal('pool'), conns: z.unknown().transform(bulk(checkIdleConns)) }),
  z.object({ ...base, type: z.literal('adopted'), ids: z.array(z.number().int()), failed: z.array(z.object({ id: z.number().int(), reason: z.string() })) }),
  z.object({ ...base, type: z.literal('done'), moved: z.number().int(), ended: z.number().int(), pooled: z.number().int(), reason: z.string() }),
  z.object({ ...base, type: z.literal('abort'), reason: z.string() }),
]);
export type Message = z.infer<typeof message>;
export type MessageOf<T extends Message['type']> = Extract<Message, { type: T }>;
/** What a sender writes: the envelope's `v` and `fds` are filled in by `encode`. */
export type Outgoing = { [K in Message['type']]: Omit<MessageOf<K>, 'v' | 'fds'> }[Message['type']];

/** One frame for `m`, saying it carries `fds` descriptors. */
export function encode(m: Outgoing, fds = 0): Buffer {
  const body = Buffer.from(JSON.stringify({ ...packParams(m), v: PROTOCOL_VERSION, fds }));
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** Splits a byte stream into validated messages. */
export class FrameDecoder {
  /** Bytes not yet decoded, in the chunks they came in (joined once a frame is whole: a batch of sessions arrives in many reads). */
  private chunks: Buffer[] = [];
  private size = 0;

  /** Adds bytes; returns the complete messages in them. Throws on a bad frame (the conversation is over). */
  push(chunk: Buffer): Message[] {
    this.chunks.push(chunk);
    this.size += chunk.length;
    const out: Message[] = [];
    while (this.size >= 4) {
      if (this.chunks[0]!.length < 4) this.join();
      const len = this.chunks[0]!.readUInt32BE(0);
      if (len > MAX_FRAME) throw new Error(`takeover frame of ${len} bytes (at most ${MAX_FRAME})`);
      if (this.size < 4 + len) break;
      const buf = this.chunks[0]!.length >= 4 + len ? this.chunks[0]! : this.join();
      const text = buf.toString('utf8', 4, 4 + len);
      const rest = buf.subarray(4 + len);
      this.chunks[0] = rest;
      this.size -= 4 + len;
      if (rest.length === 0) this.chunks.shift();
      out.push(decode(text));
    }
    return out;
  }

  private join(): Buffer {
    const b = Buffer.concat(this.chunks, this.size);
    this.chunks = [b];
    return b;
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
  try {
    unpackParams(raw as Parameters<typeof unpackParams>[0]);
  } catch (err) {
    throw new Error(`bad takeover message ${JSON.stringify((raw as { type?: unknown }).type)}: ${(err as Error).message}`, { cause: err });
  }
  const r = message.safeParse(raw);
  if (!r.success) throw new Error(`bad takeover message ${JSON.stringify((raw as { type?: unknown }).type)}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}
