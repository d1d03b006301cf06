// Online restart from inside (SIGUSR2): the running peer starts its own successor
// (`start --takeover` with this process's own arguments) as its child. Under a service manager
// that keeps a service's processes in one group (systemd's cgroup), the successor then belongs
// to the service, where one started by `pgwatchdog restart` from a shell would not; with
// `--pid-file` the successor writes its pid as soon as it serves, before this process exits,
// so systemd (PIDFile=) follows the main process to it. The outcome is in the log (both
// processes write to the same output).
import { spawn } from 'node:child_process';
import { renameSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Logger } from '../log.js';

/** Pure: the successor's arguments: this process's own (after the node binary) with `--takeover`. */
export function successorArgs(argv: readonly string[]): string[] {
  const own = argv.slice(1);
  return own.includes('--takeover') ? own : [...own, '--takeover'];
}

/** Starts the successor; it inherits this process's output and outlives it. */
export function respawn(log: Logger): void {
  const args = [...process.execArgv, ...successorArgs(process.argv)];
  const child = spawn(process.execPath, args, { stdio: 'inherit' });
  child.on('error', (err) => log.error({ err: err.message }, 'could not start the successor process: this process keeps serving'));
  child.on('exit', (code, sig) => {
    if (code !== 0) log.warn({ pid: child.pid, code, signal: sig }, 'the successor process exited');
  });
  child.unref();
  log.info({ successor: child.pid, args }, 'online restart requested (SIGUSR2): successor process started');
}

/** Writes this process's pid to `file` (atomically: a reader sees the old pid or the new one). */
export function writePidFile(file: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${process.pid}\n`);
  renameSync(tmp, file);
}

/** Removes `file` if it still names this process (a successor may have written its own). */
export function removePidFile(file: string): void {
  try {
    if (readFileSync(file, 'utf8').trim() === String(process.pid)) rmSync(file, { force: true });
  } catch {
    // gone already
  }
}
