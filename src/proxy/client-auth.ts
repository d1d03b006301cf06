// Authenticates a client to the proxy (the proxy plays the server): trust, md5 or
// scram-sha-256 against the users file. Failures look exactly like PostgreSQL's (SQLSTATE
// 28P01, "password authentication failed for user …") whatever went wrong, so a client
// learns nothing about which users exist; the reason goes to the log only.
import { randomBytes } from 'node:crypto';
import * as codec from '../protocol/codec.js';
import { md5Verify } from '../protocol/md5.js';
import { ScramServer, mockScramSecret } from '../protocol/scram.js';
import type { UserSecret } from './userlist.js';

export interface AuthIO {
  send(b: Buffer): void;
  /** The next PasswordMessage-family ('p') message body; rejects on anything else or EOF. */
  recvPassword(): Promise<Buffer>;
}

export class AuthFailed extends Error {
  constructor(
    readonly user: string,
    readonly reason: string,
  ) {
    super(`password authentication failed for user "${user}"`);
    this.name = 'AuthFailed';
  }
}

/** Resolves when the client is authenticated; with SCRAM, to the ClientKey it proved (the
 * proxy can then log into backends holding the same secret without knowing the password). */
export async function authenticateClient(method: 'trust' | 'md5' | 'scram-sha-256', user: string, users: ReadonlyMap<string, UserSecret> | undefined, io: AuthIO): Promise<Buffer | undefined> {
  if (method === 'trust') return undefined;
  const secret = users?.get(user);
  // md5 needs an md5 hash (or the password); a user with only a SCRAM secret is asked for
  // SCRAM instead, as pgbouncer and PostgreSQL do.
  if (method === 'md5' && secret?.md5) {
    const salt = randomBytes(4);
    io.send(codec.authenticationMd5(salt));
    const body = await io.recvPassword();
    const resp = codec.readCString(body, 0);
    if (!resp || !md5Verify(secret.md5, salt, resp[0])) throw new AuthFailed(user, 'md5 response does not match');
    return undefined;
  }
  const scramSecret = secret?.scram ?? mockScramSecret(user);
  const server = new ScramServer(scramSecret);
  io.send(codec.authenticationSasl(['SCRAM-SHA-256']));
  const first = await io.recvPassword();
  const mech = codec.readCString(first, 0);
  if (!mech || mech[0] !== 'SCRAM-SHA-256' || mech[1] + 4 > first.length) throw new AuthFailed(user, `client chose SASL mechanism "${mech?.[0] ?? '?'}"`);
  const len = first.readInt32BE(mech[1]);
  const data = first.toString('utf8', mech[1] + 4, len < 0 ? mech[1] + 4 : Math.min(first.length, mech[1] + 4 + len));
  let serverFirst: string;
  try {
    serverFirst = server.clientFirst(data);
  } catch (err) {
    throw new AuthFailed(user, (err as Error).message);
  }
  io.send(codec.authenticationSaslContinue(serverFirst));
  const fin = await io.recvPassword();
  let verdict: { ok: boolean; serverFinal?: string; clientKey?: Buffer };
  try {
    verdict = server.clientFinal(fin.toString('utf8'));
  } catch (err) {
    throw new AuthFailed(user, (err as Error).message);
  }
  if (!secret) throw new AuthFailed(user, 'no such user in the users file');
  if (!verdict.ok) throw new AuthFailed(user, 'SCRAM proof does not match');
  io.send(codec.authenticationSaslFinal(verdict.serverFinal!));
  return verdict.clientKey;
}
