// What travels between watchdog peers: a versioned JSON envelope with a named kind, checked
// before anything else sees it: peer messages by hand (check.ts; several a second on every
// link, so without zod's generic machinery), the handshake with zod. Two layers share the socket:
//  - the handshake (challenge / hello / welcome), spoken by the transport alone before a
//    connection counts as authenticated;
//  - peer messages (raft, view), handed to the layers above only after authentication.
// A message that fails any check here is dropped with a reason (`WireError`); nothing in it
// reaches Raft, the tally or the log beyond that reason.
import { z } from 'zod';
import type { Message } from '../raft/index.js';
import { anything, arrayOf, at, isBool, isCount, isInt, isString, objectOf, type FieldCheck } from './check.js';
import { parsePeerView, type PeerView } from './view.js';

/** Bumped on an incompatible change; a peer refuses envelopes of another version. */
export const WIRE_VERSION = 1;

/** No message may exceed this (bytes of its UTF-8 JSON). The cluster state is small; a
 * Raft append carries at most 64 entries of a few hundred bytes. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

export class WireError extends Error {
  constructor(
    /** Short, stable reason: logged once per remote address. */
    readonly reason: string,
    detail?: string,
  ) {
    super(detail ? `${reason}: ${detail}` : reason);
    this.name = 'WireError';
  }
}

const peerName = z.string().min(1).max(128);
// Nonces and MACs are base64 of 32 bytes.
const b64_32 = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, '32 bytes of base64');

// ---- handshake -------------------------------------------------------------------------

export const challengeSchema = z.object({ v: z.literal(WIRE_VERSION), kind: z.literal('challenge'), peer: peerName, nonce: b64_32 }).strict();
export const helloSchema = z.object({ v: z.literal(WIRE_VERSION), kind: z.literal('hello'), peer: peerName, nonce: b64_32, mac: b64_32 }).strict();
export const welcomeSchema = z.object({ v: z.literal(WIRE_VERSION), kind: z.literal('welcome'), peer: peerName, mac: b64_32 }).strict();

export type Challenge = z.output<typeof challengeSchema>;
export type Hello = z.output<typeof helloSchema>;
export type Welcome = z.output<typeof welcomeSchema>;

// ---- raft ------------------------------------------------------------------------------

// Raft messages are most of the traffic (a leader's heartbeats and their answers, several a
// second on every link), so they are checked by hand (check.ts), as strictly as a zod schema
// would. Entry and snapshot payloads are opaque here (the state machine validates its commands);
// they only have to be JSON, which they are, having come out of JSON.parse.
const isName = isString(1, 128);
const base = { type: anything, from: isName, to: isName, term: isCount };
const entry = objectOf({ term: isCount, index: isCount, data: anything });
const snapshot = objectOf({ meta: objectOf({ index: isCount, term: isCount, peers: arrayOf(64, isName) }), data: anything });

const raftMessages: Record<Message<unknown, unknown>['type'], FieldCheck> = {
  app: objectOf({ ...base, index: isCount, logTerm: isCount, entries: arrayOf(1024, entry), commit: isCount }),
  appResp: objectOf({ ...base, index: isCount, reject: isBool, hintIndex: isCount, hintTerm: isCount }),
  heartbeat: objectOf({ ...base, commit: isCount, tick: isCount }),
  heartbeatResp: objectOf({ ...base, tick: isCount }),
  vote: objectOf({ ...base, index: isCount, logTerm: isCount, force: isBool }),
  preVote: objectOf({ ...base, index: isCount, logTerm: isCount, force: isBool }),
  voteResp: objectOf({ ...base, reject: isBool }),
  preVoteResp: objectOf({ ...base, reject: isBool }),
  snap: objectOf({ ...base, snapshot }),
  timeoutNow: objectOf(base),
};

/** The first problem of a would-be Raft message (as "path: what", paths from `path`), or null when it is one. */
export function raftMessageProblem(v: unknown, path = ''): string | null {
  const type = typeof v === 'object' && v !== null ? (v as { type?: unknown }).type : undefined;
  const check = typeof type === 'string' && Object.hasOwn(raftMessages, type) ? raftMessages[type as Message<unknown, unknown>['type']] : undefined;
  if (!check) return `${at(path, 'type')}: not a Raft message type (${JSON.stringify(type)})`;
  return check(v, path);
}

// ---- envelope --------------------------------------------------------------------------

const envelope = objectOf({ v: anything, kind: anything, from: isName, body: anything });
// A client's CancelRequest that reached a peer which does not own its session (cancel-relay.ts).
const cancel = objectOf({ pid: isInt(), secret: isInt() });

/** A peer message. A peer's own status (proxy up, sessions, version, priority, state) travels inside its view. */
export type Envelope =
  | { v: typeof WIRE_VERSION; kind: 'raft'; from: string; body: Message<unknown, unknown> }
  | { v: typeof WIRE_VERSION; kind: 'view'; from: string; body: PeerView }
  | { v: typeof WIRE_VERSION; kind: 'cancel'; from: string; body: { pid: number; secret: number } };

export type EnvelopeKind = Envelope['kind'];

export type HandshakeMessage = Challenge | Hello | Welcome;

/** Serialise for the socket; refuses (WireError) a message over the size limit rather than sending it. */
export function encode(msg: Envelope | HandshakeMessage): string {
  const text = JSON.stringify(msg);
  // A UTF-16 unit is at most 3 bytes of UTF-8: only a long text needs its bytes counted.
  if (text.length * 3 > MAX_MESSAGE_BYTES && Buffer.byteLength(text) > MAX_MESSAGE_BYTES) throw new WireError('oversized', `${msg.kind} message of ${Buffer.byteLength(text)} bytes (limit ${MAX_MESSAGE_BYTES})`);
  return text;
}

function parseJson(data: Buffer | string): unknown {
  const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  if (size > MAX_MESSAGE_BYTES) throw new WireError('oversized', `${size} bytes (limit ${MAX_MESSAGE_BYTES})`);
  let v: unknown;
  try {
    v = JSON.parse(typeof data === 'string' ? data : data.toString('utf8'));
  } catch (err) {
    throw new WireError('not JSON', (err as Error).message);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new WireError('not an envelope', 'expected a JSON object');
  const ver = (v as { v?: unknown }).v;
  if (ver !== WIRE_VERSION) throw new WireError('wrong version', `got ${JSON.stringify(ver)}, speak ${WIRE_VERSION}`);
  return v;
}

function check<T>(schema: z.ZodType<T>, v: unknown, reason: string): T {
  const r = schema.safeParse(v);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new WireError(reason, `${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  return r.data;
}

/** Parse one authenticated peer message; throws WireError with the reason. */
export function decodeEnvelope(data: Buffer | string): Envelope {
  const v = parseJson(data) as Record<string, unknown>; // an object of our version
  let problem = envelope(v, '');
  if (problem === null) {
    switch (v.kind) {
      case 'raft':
        problem = raftMessageProblem(v.body, 'body');
        break;
      case 'view': {
        const r = parsePeerView(v.body, 'body');
        if ('view' in r) return { v: WIRE_VERSION, kind: 'view', from: v.from as string, body: r.view };
        problem = r.problem;
        break;
      }
      case 'cancel':
        problem = cancel(v.body, 'body');
        break;
      default:
        problem = `kind: unknown kind ${JSON.stringify(v.kind)}`;
    }
  }
  if (problem !== null) throw new WireError('malformed message', problem);
  return v as Envelope;
}

/** Parse one handshake message of the expected kind; throws WireError with the reason. */
export function decodeHandshake<K extends HandshakeMessage['kind']>(data: Buffer | string, kind: K): Extract<HandshakeMessage, { kind: K }> {
  const v = parseJson(data);
  const schema = kind === 'challenge' ? challengeSchema : kind === 'hello' ? helloSchema : welcomeSchema;
  return check(schema as z.ZodType<HandshakeMessage>, v, `malformed ${kind}`) as Extract<HandshakeMessage, { kind: K }>;
}
