// The configuration reference (docs/configuration.md) is generated from the schema; it must be
// current and describe every key, so an operator can trust it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { configReference, configRows, REFERENCE_FILE } from '../../scripts/config-reference.js';

test('docs/configuration.md is what the schema generates', () => {
  const committed = readFileSync(REFERENCE_FILE, 'utf8');
  assert.ok(committed === configReference(), 'docs/configuration.md is stale: run `npm run docs:config` and commit the result');
});

test('every key in the reference has a description', () => {
  const missing = configRows().filter((r) => !r.description).map((r) => r.path);
  assert.deepEqual(missing, [], `add .describe('…') to these keys in src/config/schema.ts, then npm run docs:config`);
});

test('every key of the annotated example (conf/pgwatchdog.yaml) is in the reference', () => {
  const paths = new Set(configRows().map((r) => r.path));
  const example = parse(readFileSync(new URL('../../conf/pgwatchdog.yaml', import.meta.url), 'utf8')) as Record<string, unknown>;
  const walk = (node: unknown, prefix: string): string[] => {
    if (Array.isArray(node)) return node.flatMap((item) => (item && typeof item === 'object' ? walk(item, `${prefix}[]`) : []));
    if (!node || typeof node !== 'object') return [];
    return Object.entries(node).flatMap(([k, v]) => {
      const p = prefix === '' ? k : `${prefix}.${k}`;
      return [p, ...(v && typeof v === 'object' && !p.endsWith('[].health_check') ? walk(v, p) : [])];
    });
  };
  const keys = walk(example, '').filter((p) => p.includes('.') || p.includes('['));
  assert.ok(keys.length > 50, `walked the example (${keys.length} keys)`);
  assert.deepEqual(keys.filter((k) => !paths.has(k)), []);
});
