// The users file, in pgbouncer's userlist.txt format: one `"user" "secret"` per line, a
// doubled quote ("") stands for a quote inside a field, lines starting with ';' or '#' are
// comments, blank lines are ignored. The secret is a plain password, a PostgreSQL SCRAM
// secret (SCRAM-SHA-256$…) or an md5 hash ('md5' + 32 hex digits).
//
// What each kind allows:
// - plain password: client auth by scram-sha-256 or md5, and backend login by any method;
// - md5 hash: client auth by md5, backend login by md5 (the hash is enough for md5);
// - SCRAM secret: client auth by scram-sha-256 only. Backend login by SCRAM pass-through:
//   once a client has proved its ClientKey, the proxy logs into backends that hold the very
//   same secret (copy it from pg_authid.rolpassword); other backends need a plain password.
// - empty secret (""): no client auth by password; backend login only where it needs none.
import { readFileSync } from 'node:fs';
import { makeScramSecret, parseScramSecret, type ScramSecret } from '../protocol/scram.js';
import { isMd5Hash, md5Hash } from '../protocol/md5.js';

export type UserSecret = { user: string; password?: string; scram?: ScramSecret; md5?: string };

/** Reads one "quoted" field starting at `i` (which must be a quote); returns value and next index. */
function readQuoted(line: string, i: number, where: string, what: string): [string, number] {
  let out = '';
  let j = i + 1;
  for (;;) {
    const q = line.indexOf('"', j);
    if (q < 0) throw new Error(`${where}: unterminated quote in ${what}`);
    out += line.slice(j, q);
    if (line[q + 1] === '"') {
      out += '"';
      j = q + 2;
    } else {
      return [out, q + 1];
    }
  }
}

function skipSpace(line: string, i: number): number {
  while (i < line.length && (line[i] === ' ' || line[i] === '\t')) i++;
  return i;
}

/** Builds the secrets one users-file value allows (see the header comment). */
export function userSecret(user: string, value: string): UserSecret {
  if (value === '') return { user, password: '' };
  if (value.startsWith('SCRAM-SHA-256$')) {
    const scram = parseScramSecret(value);
    if (!scram) throw new Error('malformed SCRAM secret (expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)');
    return { user, scram };
  }
  if (isMd5Hash(value)) return { user, md5: value };
  return { user, password: value, scram: parseScramSecret(makeScramSecret(value))!, md5: md5Hash(user, value) };
}

export function parseUserlist(text: string, file = '<userlist>'): Map<string, UserSecret> {
  const users = new Map<string, UserSecret>();
  const lineOf = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!;
    const where = `${file}:${n + 1}`;
    let i = skipSpace(line, 0);
    if (i === line.length || line[i] === ';' || line[i] === '#') continue;
    if (line[i] !== '"') throw new Error(`${where}: expected "user" "secret", got ${JSON.stringify(line.slice(i, i + 40))}`);
    const [user, afterUser] = readQuoted(line, i, where, 'user name');
    if (user === '') throw new Error(`${where}: empty user name`);
    i = skipSpace(line, afterUser);
    if (i === afterUser && i < line.length) throw new Error(`${where}: expected a space after the user name`);
    if (line[i] !== '"') throw new Error(`${where}: user "${user}" has no quoted secret`);
    const [value, afterValue] = readQuoted(line, i, where, `the secret of user "${user}"`);
    i = skipSpace(line, afterValue);
    if (i < line.length && line[i] !== ';' && line[i] !== '#') {
      throw new Error(`${where}: unexpected text after the secret of user "${user}": ${JSON.stringify(line.slice(i, i + 40))}`);
    }
    const previous = lineOf.get(user);
    if (previous !== undefined) throw new Error(`${where}: user "${user}" is listed again (first at line ${previous})`);
    try {
      users.set(user, userSecret(user, value));
    } catch (err) {
      throw new Error(`${where}: user "${user}": ${(err as Error).message}`);
    }
    lineOf.set(user, n + 1);
  }
  return users;
}

export function loadUserlist(file: string): Map<string, UserSecret> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read users file ${file}: ${(err as Error).message}`);
  }
  return parseUserlist(text, file);
}
