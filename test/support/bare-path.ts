// A PATH without a C toolchain, for the tests that install pgwatchdog where one is missing.
import { mkdirSync, realpathSync, symlinkSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

/** A directory holding only `node` and `sh`: no cc, g++, make or python3. */
export function barePathDir(parent: string): string {
  const bin = join(parent, 'bare-bin');
  mkdirSync(bin, { recursive: true });
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  return bin;
}

/** npm's own script (npm-cli.js), to run npm with `node` when npm itself is not on PATH. */
export function npmCli(): string {
  return realpathSync(spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim());
}
