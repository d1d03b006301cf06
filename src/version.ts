// pgwatchdog's own version, read from its package.json. The file is found by walking up from
// this module because the same code runs from src/ (through tsx, in a checkout) and from
// dist/src/ (compiled, in an installed package), at different depths.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let versionCache: string | undefined;

export function packageVersion(): string {
  if (versionCache !== undefined) return versionCache;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const f = join(dir, 'package.json');
    if (existsSync(f)) {
      const pkg = JSON.parse(readFileSync(f, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'pgwatchdog' && typeof pkg.version === 'string') return (versionCache = pkg.version);
    }
    const up = dirname(dir);
    if (up === dir) return (versionCache = 'unknown');
    dir = up;
  }
}
