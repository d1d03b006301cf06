// `pgwatchdog restart`: starts the peer's next process (`start --takeover`, detached, so it
// outlives this command) and waits until it says how the takeover went, over an IPC channel.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Io } from './main.js';

/** The `pgwatchdog` launcher, from a checkout (src/cli) or an installed package (dist/src/cli). */
function launcher(): string {
  for (const rel of ['../../bin/pgwatchdog.js', '../../../bin/pgwatchdog.js']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new Error('cannot find bin/pgwatchdog.js next to this installation');
}

export async function restartPeer(file: string, name: string | undefined, io: Io): Promise<number> {
  const args = [launcher(), 'start', '-c', file, '--takeover', ...(name ? ['--name', name] : [])];
  // The new process keeps this command's stdout/stderr (its log goes where the old one's went
  // when both were started from the same place; a service manager has its own).
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const outcome = await new Promise<{ ok: boolean; reason: string }>((resolve) => {
    child.on('message', (m: { takeover?: { ok: boolean; reason: string } }) => {
      if (m.takeover) resolve(m.takeover);
    });
    child.on('exit', (code, sig) => resolve({ ok: false, reason: `the new process exited (${sig ?? `code ${code}`}) before taking over` }));
    child.on('error', (err) => resolve({ ok: false, reason: `could not start the new process: ${err.message}` }));
  });
  child.removeAllListeners('exit');
  if (child.connected) child.disconnect();
  child.unref();
  if (outcome.ok) {
    io.out(`restarted: new process ${child.pid} serves (${outcome.reason})`);
    return 0;
  }
  io.err(`restart failed: ${outcome.reason}; the running process keeps serving`);
  return 1;
}
