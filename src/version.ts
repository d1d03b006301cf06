// The pgwatchdog version, from package.json: printed by the CLI, gossiped by watchdog peers.
import { readFileSync } from 'node:fs';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
