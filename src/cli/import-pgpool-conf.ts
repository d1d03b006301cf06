// `pgwatchdog import-pgpool-conf pgpool.conf [-o FILE]`: the file side of the pure converter
// (config/import-pgpool.ts). Writes the YAML (to FILE or stdout), lists on stderr every setting
// not carried over and why, and checks the result as check-config would.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { ConfigError, parseConfig } from '../config/index.js';
import { describeSkipped, importPgpoolConf, PgpoolConfError, renderImport } from '../config/import-pgpool.js';
import { packageVersion } from '../version.js';

export interface ImportOptions {
  output?: string;
  force?: boolean;
}

export function importPgpoolConfCommand(source: string, opts: ImportOptions, io: { out: (s: string) => void; err: (s: string) => void }): number {
  let text: string;
  try {
    text = readFileSync(source, 'utf8');
  } catch (err) {
    io.err(`${source}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return 1;
  }
  if (opts.output !== undefined && existsSync(opts.output) && !opts.force) {
    io.err(`${opts.output}: exists; not overwritten (add --force to replace it)`);
    return 1;
  }
  let result;
  try {
    result = importPgpoolConf(text, source);
  } catch (err) {
    if (err instanceof PgpoolConfError) {
      io.err(`${source}: ${err.message}`);
      return 1;
    }
    throw err;
  }
  const yaml = renderImport(result, source, packageVersion());
  if (opts.output !== undefined) writeFileSync(opts.output, yaml);
  else io.out(yaml.trimEnd());

  const backends = (result.tree.backends as unknown[]).length;
  const peers = ((result.tree.watchdog as { peers?: unknown[] } | undefined)?.peers ?? []).length;
  io.err(
    `${source}: ${backends} backend${backends === 1 ? '' : 's'}, ${peers} watchdog peer${peers === 1 ? '' : 's'}; ${result.carried.length} settings carried over${opts.output ? ` → ${opts.output}` : ''}`,
  );
  if (result.skipped.length > 0) {
    io.err(`not carried over (${result.skipped.length}):`);
    for (const s of result.skipped) io.err(`  ${describeSkipped(s)}`);
  }
  if (result.notes.length > 0) {
    io.err('notes:');
    for (const n of result.notes) io.err(`  ${n}`);
  }
  try {
    parseConfig(result.tree, opts.output ?? source, {});
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(`the result does not pass check-config yet:\n${err.problems.map((p) => `  ${p}`).join('\n')}`);
    return 1;
  }
  return 0;
}
