#!/usr/bin/env node
// The CLI runs the TypeScript sources through tsx's loader: one way to run pgwatchdog,
// from a git checkout, from npm or in the Docker image, with no build step to forget.
import { register } from 'tsx/esm/api';
import { fileURLToPath } from 'node:url';

register();
const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const { run } = await import(main);
// Exit as soon as the command is done (a peer: once every part has stopped), rather than
// when the event loop happens to drain: an operator's stop must not wait on a stray handle.
process.exit(await run(process.argv.slice(2)));
