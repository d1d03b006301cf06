// PostgreSQL's md5 password scheme: the stored hash is 'md5' + md5(password + user), and for
// AuthenticationMD5Password the client answers 'md5' + md5(hex(stored hash) + salt).
// Knowing the stored hash is enough to log in, which is why the proxy can keep md5 hashes
// (not passwords) in its users file and still log into backends with them.
import { createHash, timingSafeEqual } from 'node:crypto';

const MD5_HASH_RE = /^md5[0-9a-f]{32}$/;

function md5Hex(data: string | Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** True when `s` looks like a stored md5 hash ('md5' + 32 lower-case hex digits). */
export function isMd5Hash(s: string): boolean {
  return MD5_HASH_RE.test(s);
}

/** The hash PostgreSQL stores for (user, password) with password_encryption = md5. */
export function md5Hash(user: string, password: string): string {
  return 'md5' + md5Hex(password + user);
}

/** What a client sends for AuthenticationMD5Password; takes a password or an 'md5…' hash. */
export function md5Response(user: string, passwordOrHash: string, salt: Buffer): string {
  if (salt.length !== 4) throw new Error(`md5: salt must be 4 bytes, got ${salt.length}`);
  const hash = isMd5Hash(passwordOrHash) ? passwordOrHash : md5Hash(user, passwordOrHash);
  return 'md5' + md5Hex(Buffer.concat([Buffer.from(hash.slice(3), 'ascii'), salt]));
}

/** Checks a client's md5 response against the stored hash, in constant time. */
export function md5Verify(expectedHash: string, salt: Buffer, response: string): boolean {
  if (!isMd5Hash(expectedHash) || salt.length !== 4) return false;
  const expected = Buffer.from('md5' + md5Hex(Buffer.concat([Buffer.from(expectedHash.slice(3), 'ascii'), salt])));
  const got = Buffer.from(response);
  return got.length === expected.length && timingSafeEqual(got, expected);
}
