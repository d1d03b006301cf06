#!/usr/bin/env node
// `npm install`'s build of the native addons (binding.gyp → build/Release/splice.node, the forwarding,
// and fdpass.node, the descriptor passing of the online restart).
// The addon is an optimisation: without it every session runs on the JavaScript path, with the
// same behaviour. So a machine without a C toolchain must still install: when the build cannot
// run or fails, this says so in one line and exits 0; the peer says so again at start.
// `npm run build:native` is the strict build for developers (it fails loudly).
import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const HINT = 'sessions will run on the JavaScript path; to enable it install g++, make and python3, then `npm rebuild pgwatchdog` (or `npm run build:native` in a checkout)';

function onPath(cmd) {
  // An absolute or relative command ($CC=/usr/bin/cc) is checked as given.
  const candidates = cmd.includes('/') ? [cmd] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, cmd));
  return candidates.some((p) => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** The first word of $CC/$CXX (they may carry flags), or any of the usual names. */
function tool(envVar, names) {
  const set = process.env[envVar]?.trim().split(/\s+/)[0];
  return set ? onPath(set) : names.some(onPath);
}

const missing = [];
if (!tool('CC', ['cc', 'gcc', 'clang'])) missing.push('a C compiler (cc)');
if (!tool('CXX', ['c++', 'g++', 'clang++'])) missing.push('a C++ compiler to link (g++)');
if (!onPath('make')) missing.push('make');
if (!(process.env.PYTHON ? onPath(process.env.PYTHON) : onPath('python3') || onPath('python'))) missing.push('python3');
if (missing.length > 0) {
  console.log(`pgwatchdog: native forwarding not built (missing ${missing.join(', ')}); ${HINT}`);
  process.exit(0);
}

// npm tells its scripts where its bundled node-gyp is; outside npm, node-gyp must be on PATH.
const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
if (r.status === 0) process.exit(0);
const log = join('build', 'native-build.log');
let where = `its output is in ${log}`;
try {
  mkdirSync('build', { recursive: true });
  writeFileSync(log, `$ ${cmd} ${args.join(' ')}\n${r.error ? `${r.error.message}\n` : ''}${r.stdout ?? ''}${r.stderr ?? ''}`);
} catch (err) {
  where = `its output could not be saved: ${err.message}`;
}
const how = r.error ? r.error.message : r.status !== null ? `exit code ${r.status}` : `signal ${r.signal}`;
console.log(`pgwatchdog: native forwarding not built (node-gyp rebuild failed: ${how}; ${where}); ${HINT}`);
process.exit(0);
