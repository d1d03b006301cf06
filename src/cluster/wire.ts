// What travels between watchdog peers: a versioned JSON envelope with a named kind, checked
// with zod before anything else sees it. Two layers share the socket:
//  - the handshake (challenge / hello / welcome), spoken by the transport alone before a
//    connection counts as authenticated;
//  - peer messages (raft, view), handed to the layers above only after authentication.
// A message that fails any check here is dropped with a reason (`WireError`); nothing in it
// reaches Raft, the tally or the log beyond that reason.
import { z } from 'zod';
import type { Message } from '../raft/index.js';
import { peerViewSchema, type PeerView } from './view.js';

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
const nodeId = peerName;
const count = z.number().int().min(0);
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

// Entry and snapshot payloads are opaque here (the state machine validates its commands);
// they only have to be JSON, which they are, having come out of JSON.parse.
const entrySchema = z.object({ term: count, index: count, data: z.unknown() }).strict();
const base = { from: nodeId, to: nodeId, term: count };

export const raftMessageSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('app'), ...base, index: count, logTerm: count, entries: z.array(entrySchema).max(1024), commit: count }).strict(),
  z.object({ type: z.literal('appResp'), ...base, index: count, reject: z.boolean(), hintIndex: count, hintTerm: count }).strict(),
  z.object({ type: z.literal('heartbeat'), ...base, commit: count, tick: count }).strict(),
  z.object({ type: z.literal('heartbeatResp'), ...base, tick: count }).strict(),
  z.object({ type: z.enum(['vote', 'preVote']), ...base, index: count, logTerm: count, force: z.boolean() }).strict(),
  z.object({ type: z.enum(['voteResp', 'preVoteResp']), ...base, reject: z.boolean() }).strict(),
  z
    .object({
      type: z.literal('snap'),
      ...base,
      snapshot: z.object({ meta: z.object({ index: count, term: count, peers: z.array(nodeId).max(64) }).strict(), data: z.unknown() }).strict(),
    })
    .strict(),
  z.object({ type: z.literal('timeoutNow'), ...base }).strict(),
]);

// ---- envelope --------------------------------------------------------------------------

export const envelopeSchema = z.discriminatedUnion('kind', [
  z.object({ v: z.literal(WIRE_VERSION), kind: z.literal('raft'), from: peerName, body: raftMessageSchema }).strict(),
  z.object({ v: z.literal(WIRE_VERSION), kind: z.literal('view'), from: peerName, body: peerViewSchema }).strict(),
  // A client's CancelRequest that reached a peer which does not own its session (cancel-relay.ts).
  z.object({ v: z.literal(WIRE_VERSION), kind: z.literal('cancel'), from: peerName, body: z.object({ pid: z.number().int(), secret: z.number().int() }).strict() }).strict(),
]);

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
  if (Buffer.byteLength(text) > MAX_MESSAGE_BYTES) throw new WireError('oversized', `${msg.kind} message of ${Buffer.byteLength(text)} bytes (limit ${MAX_MESSAGE_BYTES})`);
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
  return check(envelopeSchema, parseJson(data), 'malformed message') as Envelope;
}

/** Parse one handshake message of the expected kind; throws WireError with the reason. */
export function decodeHandshake<K extends HandshakeMessage['kind']>(data: Buffer | string, kind: K): Extract<HandshakeMessage, { kind: K }> {
  const v = parseJson(data);
  const schema = kind === 'challenge' ? challengeSchema : kind === 'hello' ? helloSchema : welcomeSchema;
  return check(schema as z.ZodType<HandshakeMessage>, v, `malformed ${kind}`) as Extract<HandshakeMessage, { kind: K }>;
}
