#!/usr/bin/env node
// The CLI runs the TypeScript sources through tsx's loader: one way to run pgwatchdog,
// from a git checkout, from npm or in the Docker image, with no build step to forget.
import { register } from 'tsx/esm/api';
import { fileURLToPath } from 'node:url';

register();
const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const { run } = await import(main);
// Exit when the command is done: a peer that has stopped its parts must not linger on a
// socket that a part failed to close (that is a bug to fix, but not the operator's wait).
process.exit(await run(process.argv.slice(2)));
