#!/usr/bin/env node
// Runs every test/**/*.test.ts with node's built-in runner (TypeScript through tsx).
// Node 20's --test does not glob .ts files itself, so the list is built here.
//   --unit        only tests that need no PostgreSQL (files not under test/integration)
//   any other args are path filters: substrings a test file's path must contain.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const unitOnly = args.includes('--unit');
const filters = args.filter((a) => !a.startsWith('--'));

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out;
}

let files = walk(join(root, 'test')).sort();
if (unitOnly) files = files.filter((f) => !f.includes('integration'));
if (filters.length) files = files.filter((f) => filters.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error('run-tests: no test files matched');
  process.exit(1);
}
const r = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter', 'spec', '--test-concurrency', process.env.TEST_CONCURRENCY ?? '2', ...files],
  { cwd: root, stdio: 'inherit' },
);
process.exit(r.status ?? 1);
