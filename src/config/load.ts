// Loads one YAML file into a validated Config. Every problem is reported as
// "<file>: <key path>: <what is wrong>" so an operator can fix it without reading code.
import { readFileSync } from 'node:fs';
import { resolve, dirname, isAbsolute } from 'node:path';
import { parseDocument } from 'yaml';
import { configSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`invalid configuration ${file}:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

type Path = (string | number)[];

/** `backends[1].port` from ['backends', 1, 'port']. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const k of path) {
    if (typeof k === 'number') out += `[${k}]`;
    else out += out === '' ? String(k) : `.${String(k)}`;
  }
  return out === '' ? '(top level)' : out;
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** Replaces `${VAR}` and `${VAR:-default}` in every string of the tree, recording unset variables. */
function substituteEnv(node: unknown, env: NodeJS.ProcessEnv, path: Path, problems: string[]): unknown {
  if (typeof node === 'string') {
    return node.replace(ENV_REF, (_m, name: string, fallback: string | undefined) => {
      const v = env[name];
      if (v !== undefined) return v;
      if (fallback !== undefined) return fallback;
      problems.push(`${formatPath(path)}: environment variable ${name} is not set`);
      return '';
    });
  }
  if (Array.isArray(node)) return node.map((v, i) => substituteEnv(v, env, [...path, i], problems));
  if (node !== null && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) out[k] = substituteEnv(v, env, [...path, k], problems);
    return out;
  }
  return node;
}

function describeIssue(issue: { code: string; message: string; keys?: readonly string[] }): string {
  if (issue.code === 'unrecognized_keys' && issue.keys) {
    return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  }
  return issue.message;
}

/** Validates an already-parsed tree (exported for tests and for reload). */
export function parseConfig(raw: unknown, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const substituted = substituteEnv(raw ?? {}, env, [], problems);
  const result = configSchema.safeParse(substituted);
  if (!result.success) {
    for (const issue of result.error.issues) {
      problems.push(`${formatPath(issue.path)}: ${describeIssue(issue as { code: string; message: string; keys?: string[] })}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  const cfg = result.data!;
  // Relative paths in the file are relative to the file, not to the working directory.
  const base = dirname(resolve(file));
  const rel = (p: string | undefined) => (p && !isAbsolute(p) ? resolve(base, p) : p);
  cfg.auth.users_file = rel(cfg.auth.users_file);
  if (cfg.proxy.tls) {
    cfg.proxy.tls.cert_file = rel(cfg.proxy.tls.cert_file)!;
    cfg.proxy.tls.key_file = rel(cfg.proxy.tls.key_file)!;
    cfg.proxy.tls.ca_file = rel(cfg.proxy.tls.ca_file);
  }
  if (cfg.failover.status_file) cfg.failover.status_file = rel(cfg.failover.status_file)!;
  if (cfg.watchdog.data_dir) cfg.watchdog.data_dir = rel(cfg.watchdog.data_dir)!;
  return cfg;
}

/** Reads, parses and validates a config file; throws ConfigError naming every problem. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return `${pos ? `line ${pos.line}, column ${pos.col}` : 'YAML'}: ${e.message.split('\n')[0]}`;
      }),
    );
  }
  return parseConfig(doc.toJS(), file, env);
}
