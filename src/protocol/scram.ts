// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: both the server side (to
// authenticate clients against a stored secret) and the client side (to log into backends).
// No channel binding: the proxy terminates TLS itself, so a client's tls-server-end-point
// binding could never match the backend's certificate anyway.
//
// PostgreSQL specifics kept here:
// - the user name in client-first-message is ignored (the startup packet names the user),
//   and clients send it empty;
// - passwords are normalised with SASLprep, and when SASLprep refuses a password (prohibited
//   characters) the raw password is used instead, exactly as the server does when it stores
//   the secret, so a secret computed here matches `rolpassword` byte for byte;
// - the stored secret is `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

export type ScramSecret = { iterations: number; salt: Buffer; storedKey: Buffer; serverKey: Buffer };

const KEY_LEN = 32; // SHA-256 output
const NONCE_BYTES = 18; // as PostgreSQL: 18 random bytes, base64 → 24 characters
const DEFAULT_SALT_BYTES = 16;

// ---- primitives ----------------------------------------------------------------------------

function hmac(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64 (Buffer.from is lenient and would silently drop garbage). */
function decodeB64(s: string, what: string): Buffer {
  if (!B64_RE.test(s)) throw new Error(`SCRAM: ${what} is not valid base64`);
  return Buffer.from(s, 'base64');
}

// Salted passwords cost a PBKDF2 run (thousands of HMACs); the proxy logs into the same
// backends with the same password and salt again and again, so remember a few. The key is a
// hash of password, salt and iterations, never the password itself.
const saltedCache = new Map<string, Buffer>();
const SALTED_CACHE_MAX = 128;

function saltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  const prepared = saslPrepOrRaw(password);
  const key = createHash('sha256').update(prepared).update('\0').update(salt).update(`\0${iterations}`).digest('base64');
  const hit = saltedCache.get(key);
  if (hit) return hit;
  const salted = pbkdf2Sync(Buffer.from(prepared, 'utf8'), salt, iterations, KEY_LEN, 'sha256');
  if (saltedCache.size >= SALTED_CACHE_MAX) saltedCache.delete(saltedCache.keys().next().value!);
  saltedCache.set(key, salted);
  return salted;
}

// ---- SASLprep (RFC 4013) as PostgreSQL applies it ----------------------------------------

type Ranges = readonly (readonly [number, number])[];

function inRanges(cp: number, ranges: Ranges): boolean {
  for (const [lo, hi] of ranges) if (cp >= lo && cp <= hi) return true;
  return false;
}

// RFC 3454 C.1.2: non-ASCII spaces, mapped to SPACE.
const NON_ASCII_SPACE: Ranges = [[0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200b], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000]];
// RFC 3454 B.1: commonly mapped to nothing.
const MAPPED_TO_NOTHING: Ranges = [
  [0xad, 0xad], [0x34f, 0x34f], [0x1806, 0x1806], [0x180b, 0x180d], [0x200b, 0x200d], [0x2060, 0x2060], [0xfe00, 0xfe0f], [0xfeff, 0xfeff],
];
// RFC 3454 C.1.2, C.2.1, C.2.2, C.3 … C.9: prohibited output.
const PROHIBITED: Ranges = [
  ...NON_ASCII_SPACE,
  [0x0, 0x1f], [0x7f, 0x9f], [0x6dd, 0x6dd], [0x70f, 0x70f], [0x180e, 0x180e], [0x200c, 0x200f], [0x2028, 0x202e], [0x2060, 0x2063],
  [0x206a, 0x206f], [0xfeff, 0xfeff], [0xfff9, 0xfffd], [0x1d173, 0x1d17a],
  [0xe000, 0xf8ff], [0xf0000, 0xffffd], [0x100000, 0x10fffd],
  [0xfdd0, 0xfdef], [0xd800, 0xdfff], [0x2ff0, 0x2ffb], [0x340, 0x341], [0xe0001, 0xe0001], [0xe0020, 0xe007f],
];
// RFC 3454 D.1: characters with bidirectional property R or AL.
const RAND_AL: Ranges = [
  [0x5be, 0x5be], [0x5c0, 0x5c0], [0x5c3, 0x5c3], [0x5d0, 0x5ea], [0x5f0, 0x5f4], [0x61b, 0x61b], [0x61f, 0x61f], [0x621, 0x63a],
  [0x640, 0x64a], [0x66d, 0x66f], [0x671, 0x6d5], [0x6dd, 0x6dd], [0x6e5, 0x6e6], [0x6fa, 0x6fe], [0x700, 0x70d], [0x710, 0x710],
  [0x712, 0x72c], [0x780, 0x7a5], [0x7b1, 0x7b1], [0x200f, 0x200f], [0xfb1d, 0xfb1d], [0xfb1f, 0xfb28], [0xfb2a, 0xfb36],
  [0xfb38, 0xfb3c], [0xfb3e, 0xfb3e], [0xfb40, 0xfb41], [0xfb43, 0xfb44], [0xfb46, 0xfbb1], [0xfbd3, 0xfd3d], [0xfd50, 0xfd8f],
  [0xfd92, 0xfdc7], [0xfdf0, 0xfdfc], [0xfe70, 0xfe74], [0xfe76, 0xfefc],
];
const LETTER_RE = /\p{L}/u;
const UNASSIGNED_RE = /\p{Cn}/u;

/**
 * SASLprep, or undefined when the password is refused (PostgreSQL then uses the raw
 * password). Approximations, documented: "unassigned" uses the running Unicode version
 * rather than Unicode 3.2, and the bidi "L" class is approximated by "a letter that is not
 * R/AL". Both matter only for passwords mixing scripts in unusual ways.
 */
export function saslPrep(password: string): string | undefined {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(password)) return password; // ASCII needs no processing (PostgreSQL too)
  let mapped = '';
  for (const ch of password) {
    const cp = ch.codePointAt(0)!;
    if (inRanges(cp, NON_ASCII_SPACE)) mapped += ' ';
    else if (!inRanges(cp, MAPPED_TO_NOTHING)) mapped += ch;
  }
  const normalized = mapped.normalize('NFKC');
  const cps = Array.from(normalized, (c) => c.codePointAt(0)!);
  let hasRandAL = false;
  let hasL = false;
  for (const cp of cps) {
    if (inRanges(cp, PROHIBITED) || (cp & 0xfffe) === 0xfffe || UNASSIGNED_RE.test(String.fromCodePoint(cp))) return undefined;
    if (inRanges(cp, RAND_AL)) hasRandAL = true;
    else if (LETTER_RE.test(String.fromCodePoint(cp))) hasL = true;
  }
  if (hasRandAL && (hasL || !inRanges(cps[0]!, RAND_AL) || !inRanges(cps[cps.length - 1]!, RAND_AL))) return undefined;
  return normalized;
}

function saslPrepOrRaw(password: string): string {
  return saslPrep(password) ?? password;
}

// ---- secrets ---------------------------------------------------------------------------------

/** Parses PostgreSQL's stored SCRAM secret; null if `s` is not one (e.g. an md5 hash). */
export function parseScramSecret(s: string): ScramSecret | null {
  const m = /^SCRAM-SHA-256\$(\d+):([^$:]+)\$([^$:]+):([^$:]+)$/.exec(s);
  if (!m) return null;
  const iterations = Number(m[1]);
  if (!Number.isSafeInteger(iterations) || iterations < 1) return null;
  try {
    const salt = decodeB64(m[2]!, 'salt');
    const storedKey = decodeB64(m[3]!, 'StoredKey');
    const serverKey = decodeB64(m[4]!, 'ServerKey');
    if (salt.length === 0 || storedKey.length !== KEY_LEN || serverKey.length !== KEY_LEN) return null;
    return { iterations, salt, storedKey, serverKey };
  } catch {
    return null;
  }
}

export function formatScramSecret(secret: ScramSecret): string {
  return `SCRAM-SHA-256$${secret.iterations}:${secret.salt.toString('base64')}$${secret.storedKey.toString('base64')}:${secret.serverKey.toString('base64')}`;
}

/** Computes the secret PostgreSQL would store for `password` (random 16-byte salt unless given). */
export function makeScramSecret(password: string, salt: Buffer = randomBytes(DEFAULT_SALT_BYTES), iterations = 4096): string {
  if (!Number.isSafeInteger(iterations) || iterations < 1) throw new Error(`SCRAM: iterations must be a positive integer, got ${iterations}`);
  if (salt.length === 0) throw new Error('SCRAM: salt must not be empty');
  const salted = saltedPassword(password, salt, iterations);
  const storedKey = sha256(hmac(salted, 'Client Key'));
  const serverKey = hmac(salted, 'Server Key');
  return formatScramSecret({ iterations, salt, storedKey, serverKey });
}

// A process-wide key so mock secrets are stable per user within a run but unpredictable.
const mockKey = randomBytes(32);

/**
 * A secret for a user that does not exist, so the exchange runs to the end and fails like a
 * wrong password would (PostgreSQL's "mock authentication"): the reply does not reveal which
 * user names exist. The salt is stable per user name, so repeated probes see the same one.
 */
export function mockScramSecret(user: string, iterations = 4096): ScramSecret {
  return {
    iterations,
    salt: hmac(mockKey, `salt:${user}`).subarray(0, DEFAULT_SALT_BYTES),
    storedKey: randomBytes(KEY_LEN),
    serverKey: randomBytes(KEY_LEN),
  };
}

// ---- message parsing -------------------------------------------------------------------------

/** Splits `a=v,b=w` into ordered [name, value] pairs; values may contain '='. */
function attributes(msg: string, what: string): [string, string][] {
  if (msg.length === 0) throw new Error(`SCRAM: empty ${what}`);
  return msg.split(',').map((part) => {
    if (part.length < 2 || part[1] !== '=' || !/^[A-Za-z]$/.test(part[0]!)) {
      throw new Error(`SCRAM: malformed attribute "${part.slice(0, 32)}" in ${what}`);
    }
    return [part[0]!, part.slice(2)];
  });
}

/** Printable ASCII except ',', as RFC 5802 requires of nonces. */
const NONCE_RE = /^[\x21-\x2b\x2d-\x7e]+$/;

function randomNonce(): string {
  return randomBytes(NONCE_BYTES).toString('base64');
}

// ---- server ----------------------------------------------------------------------------------

/**
 * One SCRAM exchange, server side: clientFirst() → server-first-message, clientFinal() →
 * verdict and server-final-message. Malformed input throws; the caller sends the client an
 * error and closes, nothing else is affected.
 */
export class ScramServer {
  private state: 'first' | 'final' | 'done' = 'first';
  private gs2Header = '';
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';

  /** `opts.nonce` fixes the server's half of the nonce: for test vectors only. */
  constructor(
    private readonly secret: ScramSecret,
    private readonly opts: { nonce?: string } = {},
  ) {}

  clientFirst(msg: string): string {
    if (this.state !== 'first') throw new Error('SCRAM: client-first-message received twice');
    // gs2-header: cbind-flag "," [authzid] ","
    const c1 = msg.indexOf(',');
    const c2 = c1 < 0 ? -1 : msg.indexOf(',', c1 + 1);
    if (c1 < 0 || c2 < 0) throw new Error('SCRAM: malformed client-first-message (no GS2 header)');
    const flag = msg.slice(0, c1);
    if (flag.startsWith('p=')) {
      throw new Error('SCRAM: channel binding (SCRAM-SHA-256-PLUS) is not supported by this server; connect with channel_binding=disable or prefer');
    }
    if (flag !== 'n' && flag !== 'y') throw new Error(`SCRAM: invalid channel-binding flag "${flag.slice(0, 16)}"`);
    if (msg.slice(c1 + 1, c2) !== '') throw new Error('SCRAM: authorization identity (a=) is not supported');
    this.gs2Header = msg.slice(0, c2 + 1);
    this.clientFirstBare = msg.slice(c2 + 1);
    const attrs = attributes(this.clientFirstBare, 'client-first-message');
    if (attrs[0]?.[0] === 'm') throw new Error('SCRAM: mandatory extension (m=) is not supported');
    if (attrs[0]?.[0] !== 'n') throw new Error('SCRAM: client-first-message lacks the user name attribute (n=)');
    if (attrs[1]?.[0] !== 'r') throw new Error('SCRAM: client-first-message lacks the nonce attribute (r=)');
    const clientNonce = attrs[1][1];
    if (!NONCE_RE.test(clientNonce)) throw new Error('SCRAM: client nonce contains invalid characters');
    this.nonce = clientNonce + (this.opts.nonce ?? randomNonce());
    this.serverFirst = `r=${this.nonce},s=${this.secret.salt.toString('base64')},i=${this.secret.iterations}`;
    this.state = 'final';
    return this.serverFirst;
  }

  /** On success also returns the ClientKey the client proved it knows: with the secret's
   * ServerKey it lets the proxy log into a backend that holds the same secret (pass-through). */
  clientFinal(msg: string): { ok: boolean; serverFinal?: string; clientKey?: Buffer } {
    if (this.state !== 'final') {
      throw new Error(this.state === 'first' ? 'SCRAM: client-final-message before client-first-message' : 'SCRAM: exchange already finished');
    }
    this.state = 'done';
    const attrs = attributes(msg, 'client-final-message');
    if (attrs[0]?.[0] !== 'c') throw new Error('SCRAM: client-final-message lacks channel binding (c=)');
    if (attrs[1]?.[0] !== 'r') throw new Error('SCRAM: client-final-message lacks the nonce (r=)');
    const last = attrs[attrs.length - 1]!;
    if (last[0] !== 'p' || attrs.length < 3) throw new Error('SCRAM: client-final-message lacks the proof (p=) at its end');
    const cbind = decodeB64(attrs[0][1], 'channel binding');
    if (!cbind.equals(Buffer.from(this.gs2Header))) throw new Error('SCRAM: channel binding does not match the GS2 header of client-first-message');
    if (attrs[1][1] !== this.nonce) throw new Error('SCRAM: nonce mismatch in client-final-message');
    const proof = decodeB64(last[1], 'proof');
    if (proof.length !== KEY_LEN) throw new Error(`SCRAM: proof is ${proof.length} bytes, expected ${KEY_LEN}`);

    const withoutProof = msg.slice(0, msg.lastIndexOf(',p='));
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const clientSignature = hmac(this.secret.storedKey, authMessage);
    const clientKey = xor(proof, clientSignature);
    if (!timingSafeEqual(sha256(clientKey), this.secret.storedKey)) return { ok: false };
    const serverSignature = hmac(this.secret.serverKey, authMessage);
    return { ok: true, serverFinal: `v=${serverSignature.toString('base64')}`, clientKey };
  }
}

// ---- client ----------------------------------------------------------------------------------

/** What logs into a backend without the password: a stored secret and a ClientKey a client proved. */
export interface ScramPassThrough {
  secret: ScramSecret;
  clientKey: Buffer;
}

/** One SCRAM exchange, client side (what libpq does), for logging into a backend. */
export class ScramClient {
  private readonly clientNonce: string;
  private clientFirstBare = '';
  private expectedServerSignature: Buffer | undefined;

  /**
   * PostgreSQL takes the user from the startup packet and clients send an empty `n=`, so
   * `user` only appears in error messages unless `opts.sendUser` (RFC test vectors) is set.
   * `opts.nonce` fixes the client nonce, for test vectors only.
   */
  /** `password`: a plain password, or the keys of a SCRAM secret plus the ClientKey a client
   * proved (then the backend must use the same salt and iteration count). */
  constructor(
    readonly user: string,
    private readonly password: string | ScramPassThrough,
    private readonly opts: { nonce?: string; sendUser?: boolean } = {},
  ) {
    this.clientNonce = opts.nonce ?? randomNonce();
  }

  first(): string {
    const name = this.opts.sendUser ? this.user.replace(/=/g, '=3D').replace(/,/g, '=2C') : '';
    this.clientFirstBare = `n=${name},r=${this.clientNonce}`;
    return `n,,${this.clientFirstBare}`;
  }

  final(serverFirst: string): string {
    if (!this.clientFirstBare) throw new Error(`SCRAM (user "${this.user}"): final() called before first()`);
    const attrs = attributes(serverFirst, 'server-first-message');
    if (attrs[0]?.[0] === 'm') throw new Error(`SCRAM (user "${this.user}"): server requires an unsupported extension`);
    const [r, s, i] = attrs;
    if (r?.[0] !== 'r' || s?.[0] !== 's' || i?.[0] !== 'i') throw new Error(`SCRAM (user "${this.user}"): malformed server-first-message`);
    const nonce = r[1];
    if (!nonce.startsWith(this.clientNonce) || nonce.length <= this.clientNonce.length || !NONCE_RE.test(nonce)) {
      throw new Error(`SCRAM (user "${this.user}"): server nonce does not extend the client nonce`);
    }
    const salt = decodeB64(s[1], 'salt');
    if (salt.length === 0) throw new Error(`SCRAM (user "${this.user}"): empty salt`);
    if (!/^[1-9]\d{0,9}$/.test(i[1])) throw new Error(`SCRAM (user "${this.user}"): invalid iteration count "${i[1].slice(0, 16)}"`);
    const iterations = Number(i[1]);

    let clientKey: Buffer;
    let serverKey: Buffer;
    if (typeof this.password === 'string') {
      const salted = saltedPassword(this.password, salt, iterations);
      clientKey = hmac(salted, 'Client Key');
      serverKey = hmac(salted, 'Server Key');
    } else {
      const k = this.password;
      if (!salt.equals(k.secret.salt) || iterations !== k.secret.iterations) {
        throw new Error(
          `SCRAM (user "${this.user}"): the backend's SCRAM secret has another salt or iteration count than the users file's; put this backend's pg_authid secret (or a plain password) in the users file`,
        );
      }
      clientKey = k.clientKey;
      serverKey = k.secret.serverKey;
    }
    const storedKey = sha256(clientKey);
    const withoutProof = `c=biws,r=${nonce}`; // biws = base64("n,,")
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const proof = xor(clientKey, hmac(storedKey, authMessage));
    this.expectedServerSignature = hmac(serverKey, authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** True when the server proved it knows the secret too (mutual authentication). */
  verify(serverFinal: string): boolean {
    if (!this.expectedServerSignature) return false;
    let attrs: [string, string][];
    try {
      attrs = attributes(serverFinal, 'server-final-message');
    } catch {
      return false;
    }
    const v = attrs.find(([k]) => k === 'v');
    if (!v || attrs.some(([k]) => k === 'e')) return false;
    let sig: Buffer;
    try {
      sig = decodeB64(v[1], 'server signature');
    } catch {
      return false;
    }
    return sig.length === KEY_LEN && timingSafeEqual(sig, this.expectedServerSignature);
  }
}
