#!/usr/bin/env node
// The `pgwatchdog` command. An installed package ships the compiled JavaScript (dist/, built
// by `npm pack`'s prepack) and runs it under plain node. A git checkout has the TypeScript
// sources and runs them through tsx (a development dependency), so there is no build to
// forget while developing; the sources win there because dist/ may be stale.
// PGWATCHDOG_RUN=dist runs the compiled JavaScript from a checkout too: benchmarks measure what
// ships (tsx's output wraps every function it creates in a naming helper, which costs a
// restart's successor a third of its time adopting sessions).
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
let main = new URL('../dist/src/cli/main.js', import.meta.url);
if (existsSync(source) && process.env.PGWATCHDOG_RUN !== 'dist') {
  const { register } = await import('tsx/esm/api');
  register();
  main = source;
}
const { run } = await import(main.href);
// Exit as soon as the command is done (a peer: once every part has stopped), rather than
// when the event loop happens to drain: an operator's stop must not wait on a stray handle.
process.exit(await run(process.argv.slice(2)));
