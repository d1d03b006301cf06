// `pgwatchdog demo`: runs the demo script (scripts/demo.ts, through tsx) of a git checkout. The
// demo builds its PostgreSQL servers with the test bed, which an installed package does not
// ship, so there it says where to run it from.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export async function demoCommand(args: string[], io: { err: (s: string) => void }): Promise<number> {
  // src/cli → the checkout's root; compiled (dist/src/cli) there is no scripts/demo.ts to find.
  const script = fileURLToPath(new URL('../../scripts/demo.ts', import.meta.url));
  if (!existsSync(script)) {
    io.err('pgwatchdog demo runs from a git checkout of pgwatchdog: git clone <repository> && cd pgwatchdog && npm ci && npm run demo');
    return 2;
  }
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { stdio: 'inherit' });
  // Ctrl-C reaches the demo through the terminal; a signal sent to this process alone is passed on.
  const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    return await new Promise<number>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal === 'SIGINT' ? 130 : 1))));
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}
