// Generates docs/configuration.md from the zod schema (src/config/schema.ts): every key, its
// type, default and description (`.describe()` in the schema), so the reference cannot drift
// from what check-config accepts. test/config/reference.test.ts fails when the committed file
// is stale.
//   npm run docs:config            rewrite docs/configuration.md
//   npm run docs:config -- --check exit 1 when it is stale
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { configSchema } from '../src/config/schema.js';

export const REFERENCE_FILE = fileURLToPath(new URL('../docs/configuration.md', import.meta.url));

interface JsonSchema {
  type?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minItems?: number;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
}

export interface Row {
  path: string;
  type: string;
  default: string;
  description: string | undefined;
}

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => `\`${String(v)}\``).join(' | ');
  switch (s.type) {
    case 'integer':
    case 'number': {
      const name = s.type;
      const max = s.maximum !== undefined && s.maximum < Number.MAX_SAFE_INTEGER ? s.maximum : undefined;
      const min = s.minimum !== undefined && s.minimum > Number.MIN_SAFE_INTEGER ? s.minimum : undefined;
      if (min !== undefined && max !== undefined) return `${name} ${min}–${max}`;
      if (min !== undefined) return `${name} ≥ ${min}`;
      return name;
    }
    case 'array':
      return s.items?.type === 'object' ? 'list of sections' : `list of ${s.items?.type ?? 'value'}s`;
    case 'object':
      return 'section';
    case undefined:
      // The one key type JSON Schema cannot spell: sizes ("16MB" or bytes), a transform.
      return 'size';
    default:
      return s.type;
  }
}

function formatDefault(v: unknown, path: string): string {
  if (v === undefined) return '';
  if (typeof v === 'number' && path.endsWith('_bytes') && v >= 1024 * 1024 && v % (1024 * 1024) === 0) return `\`${v / (1024 * 1024)}MB\``;
  if (typeof v === 'string') return v === '' ? '`""`' : `\`${v}\``;
  if (Array.isArray(v)) return v.length === 0 ? '`[]`' : `\`[${v.join(', ')}]\``;
  if (typeof v === 'object') return '';
  return `\`${String(v)}\``;
}

/** The value at `path` (no arrays) in a config parsed from almost nothing: the applied defaults. */
function parsedDefault(defaults: unknown, path: string[]): unknown {
  let v: unknown = defaults;
  for (const k of path) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return v;
}

/** Every key of the schema, depth first, in declaration order. */
export function configRows(): Row[] {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const defaults = configSchema.parse({ backends: [{ host: 'h' }], auth: { method: 'trust' } });
  const rows: Row[] = [];
  const walk = (obj: JsonSchema, prefix: string, path: string[] | undefined) => {
    for (const [key, s] of Object.entries(obj.properties ?? {})) {
      const dotted = prefix === '' ? key : `${prefix}.${key}`;
      const keyPath = path ? [...path, key] : undefined;
      const required = obj.required?.includes(key) ?? false;
      const dflt = s.default ?? (keyPath && s.type !== 'object' ? parsedDefault(defaults, keyPath) : undefined);
      rows.push({ path: dotted, type: typeOf(s), default: required ? 'required' : formatDefault(dflt, dotted), description: s.description });
      const props = s.type === 'object' ? s : s.type === 'array' && s.items?.type === 'object' ? s.items : undefined;
      if (!props) continue;
      // A section of overrides whose keys are described elsewhere (backends[].health_check) is not repeated.
      if (Object.values(props.properties ?? {}).every((p) => p.description === undefined)) continue;
      walk(props, s.type === 'array' ? `${dotted}[]` : dotted, s.type === 'array' ? undefined : keyPath);
    }
  };
  walk(schema, '', []);
  return rows;
}

const cell = (s: string) => s.replaceAll('|', '\\|').replaceAll('\n', ' ');

export function configReference(): string {
  const rows = configRows();
  const out = [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/schema.ts by `npm run docs:config`; do not edit by hand. -->',
    '',
    'One YAML file (`pgwatchdog start -c FILE`, `pgwatchdog check-config -c FILE`); `conf/pgwatchdog.yaml` is an',
    'annotated example. Every key below is optional unless marked *required*; an unknown key is refused.',
    'Strings may use `${VAR}` or `${VAR:-default}` from the environment (use it for secrets). Durations are',
    'in milliseconds, sizes in bytes or with a unit (`16MB`). Relative paths are relative to the config file.',
  ];
  for (const top of rows.filter((r) => !r.path.includes('.') && !r.path.includes('['))) {
    out.push('', `## \`${top.path}\``, '', `${top.description ?? ''}${top.default === 'required' ? ' *Required.*' : ''}`, '', '| key | type | default | description |', '|---|---|---|---|');
    for (const r of rows.filter((r) => r.path.startsWith(`${top.path}.`) || r.path.startsWith(`${top.path}[]`))) {
      out.push(`| \`${r.path}\` | ${cell(r.type)} | ${r.default === 'required' ? '*required*' : cell(r.default)} | ${cell(r.description ?? '')} |`);
    }
  }
  out.push(
    '',
    '## Command placeholders',
    '',
    'In `failover.failover_command`, `follow_primary_command` and `failback_command` (each value shell-quoted):',
    '`%d %h %p %D` failed (or attached, or following) node id, host, port, data dir; `%m %H %r %R` new main node',
    'id, host, port, data dir; `%M` old main node id; `%P` old primary node id; `%N %S` old primary host, port;',
    '`%T` Raft term (a fencing token; 0 without a watchdog); `%%` a percent sign. An unknown placeholder is',
    'refused at start. In `watchdog.vip` commands: `%V` the address, `%I` the interface.',
    '',
  );
  return out.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const text = configReference();
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(REFERENCE_FILE, 'utf8');
    } catch {
      // missing counts as stale
    }
    if (current !== text) {
      console.error(`${REFERENCE_FILE} is stale: run npm run docs:config`);
      process.exit(1);
    }
  } else {
    writeFileSync(REFERENCE_FILE, text);
    console.log(`wrote ${REFERENCE_FILE}`);
  }
}
