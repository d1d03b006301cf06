// Hand-written shape checks for what peers send each other every second (Raft messages,
// gossiped views): as strict as a zod schema (every field present with its type, no other
// field unless said), without zod's generic machinery on every message of an idle cluster.
// Each check returns the first problem as "path: what", or null. Pure.

/** Checks one value at `path`; returns the problem as "path: what", or null. */
export type FieldCheck = (v: unknown, path: string) => string | null;

/** `path.key`, or `key` at the root. */
export const at = (path: string, key: string): string => (path ? `${path}.${key}` : key);

export const anything: FieldCheck = () => null;

export const isBool: FieldCheck = (v, path) => (typeof v === 'boolean' ? null : `${path}: expected a boolean`);

/** A safe integer in [min, max]. */
export function isInt(min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): FieldCheck {
  const what = min === 0 && max === Number.MAX_SAFE_INTEGER ? 'an integer >= 0' : `an integer in [${min}, ${max}]`;
  return (v, path) => (Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max ? null : `${path}: expected ${what}`);
}

export const isCount = isInt(0);

/** A string of min..max characters (matching `re`, when given, described as `what`). */
export function isString(min: number, max: number, re?: RegExp, what?: string): FieldCheck {
  return (v, path) => {
    if (typeof v !== 'string' || v.length < min || v.length > max) return `${path}: expected a string of ${min}-${max} characters`;
    return re && !re.test(v) ? `${path}: expected ${what ?? re.source}` : null;
  };
}

export function oneOf(values: readonly string[]): FieldCheck {
  return (v, path) => (typeof v === 'string' && values.includes(v) ? null : `${path}: expected one of ${values.join(', ')}`);
}

export function nullable(check: FieldCheck): FieldCheck {
  return (v, path) => (v === null ? null : check(v, path));
}

/** May be absent (undefined). */
export function optional(check: FieldCheck): FieldCheck {
  return (v, path) => (v === undefined ? null : check(v, path));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A plain object with `fields` (each checked); other keys are refused unless `extra: 'allow'` (the caller then drops them). */
export function objectOf(fields: Record<string, FieldCheck>, extra: 'refuse' | 'allow' = 'refuse'): FieldCheck {
  return (v, path) => {
    if (!isObject(v)) return `${path || '(root)'}: expected an object`;
    if (extra === 'refuse') for (const k in v) if (!Object.hasOwn(fields, k)) return `${at(path, k)}: unknown key`;
    for (const k in fields) {
      const why = fields[k]!(v[k], at(path, k));
      if (why !== null) return why;
    }
    return null;
  };
}

export function arrayOf(max: number, item: FieldCheck): FieldCheck {
  return (v, path) => {
    if (!Array.isArray(v)) return `${path}: expected an array`;
    if (v.length > max) return `${path}: more than ${max} items`;
    for (let i = 0; i < v.length; i++) {
      const why = item(v[i], at(path, String(i)));
      if (why !== null) return why;
    }
    return null;
  };
}
