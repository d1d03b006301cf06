// failover_command / follow_primary_command / failback_command: pgpool-compatible
// placeholder expansion (pure) and a runner with a timeout that logs exit code and output.
//
// Placeholders (DESIGN.md "Contracts users see"):
//   %d %h %p %D  failed (or attached, or following) node id, host, port, data dir
//   %m %H %r %R  new main node id, host, port, data dir (the promotion candidate)
//   %M           old main node id          %P  old primary node id
//   %N %S        old primary host, port    %T  Raft term (0 without a watchdog)
//   %%           a literal %
// Every value is substituted shell-escaped in single quotes, so a data dir with spaces or
// quotes reaches the script as one argument: write `%D`, not `'%D'` or "%D".
// An unknown placeholder (`%x`) is refused: the template is checked when the engine starts
// (validateTemplate), so a typo is reported at start rather than running a script with a
// literal "%x" during an outage. A trailing lone `%` is refused for the same reason.
// Unknown ids are -1 and unknown hosts/ports/dirs are empty strings, as in pgpool.
import { spawn } from 'node:child_process';
import type { Logger } from '../log.js';

export interface PlaceholderValues {
  failedId: number;
  failedHost: string;
  failedPort: number | null;
  failedDataDir: string;
  newMainId: number;
  newMainHost: string;
  newMainPort: number | null;
  newMainDataDir: string;
  oldMainId: number;
  oldPrimaryId: number;
  oldPrimaryHost: string;
  oldPrimaryPort: number | null;
  term: number;
}

const LETTERS: Record<string, (v: PlaceholderValues) => string | number | null> = {
  d: (v) => v.failedId,
  h: (v) => v.failedHost,
  p: (v) => v.failedPort,
  D: (v) => v.failedDataDir,
  m: (v) => v.newMainId,
  H: (v) => v.newMainHost,
  r: (v) => v.newMainPort,
  R: (v) => v.newMainDataDir,
  M: (v) => v.oldMainId,
  P: (v) => v.oldPrimaryId,
  N: (v) => v.oldPrimaryHost,
  S: (v) => v.oldPrimaryPort,
  T: (v) => v.term,
};

export const PLACEHOLDERS = Object.keys(LETTERS);

/** POSIX shell single-quoting: 'it'\''s' — safe for any byte string. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Problems with a template (unknown placeholders, trailing %), empty when it is fine. */
export function validateTemplate(template: string): string[] {
  const problems: string[] = [];
  for (let i = 0; i < template.length; i++) {
    if (template[i] !== '%') continue;
    const c = template[i + 1];
    if (c === undefined) problems.push(`a lone "%" ends the command (write %% for a literal %)`);
    else if (c !== '%' && !(c in LETTERS)) problems.push(`unknown placeholder "%${c}" at offset ${i} (known: ${PLACEHOLDERS.map((l) => `%${l}`).join(' ')} %%)`);
    i++;
  }
  return problems;
}

/** Expands every placeholder, shell-escaped. Throws on a template validateTemplate refuses. */
export function expandCommand(template: string, values: PlaceholderValues): string {
  const problems = validateTemplate(template);
  if (problems.length) throw new Error(`command template ${JSON.stringify(template)}: ${problems.join('; ')}`);
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const ch = template[i]!;
    if (ch !== '%') {
      out += ch;
      continue;
    }
    const c = template[++i]!;
    if (c === '%') out += '%';
    else {
      const v = LETTERS[c]!(values);
      out += shellQuote(v === null ? '' : String(v));
    }
  }
  return out;
}

export interface CommandResult {
  command: string;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  ok: boolean;
  output: string;
  durationMs: number;
}

const MAX_OUTPUT = 64 * 1024;

/** Runs `command` with /bin/sh; kills its whole process group after timeoutMs. Never throws:
 * the result says what happened, and it is logged with its exit code and output. */
export function runCommand(
  command: string,
  opts: { timeoutMs: number; logger: Logger; what: string; context?: Record<string, unknown>; env?: NodeJS.ProcessEnv },
): Promise<CommandResult> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    let output = '';
    let timedOut = false;
    let settled = false;
    const finish = (exitCode: number | null, signal: string | null, spawnError?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (spawnError) output += spawnError;
      const r: CommandResult = { command, exitCode, signal, timedOut, ok: exitCode === 0 && !timedOut, output, durationMs: Date.now() - t0 };
      const fields = { ...opts.context, command, exitCode, signal, timedOut, durationMs: r.durationMs, output: output.trimEnd() };
      if (r.ok) opts.logger.info(fields, `${opts.what} succeeded`);
      else opts.logger.error(fields, `${opts.what} failed${timedOut ? ` (timed out after ${opts.timeoutMs} ms)` : ''}`);
      resolve(r);
    };
    // detached: the command gets its own process group, so a timeout kills its children too.
    const child = spawn('/bin/sh', ['-c', command], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const collect = (d: Buffer) => {
      if (output.length < MAX_OUTPUT) output += d.toString('utf8').slice(0, MAX_OUTPUT - output.length);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const killGroup = (sig: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, sig);
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup('SIGTERM');
      setTimeout(() => killGroup('SIGKILL'), 2000).unref();
    }, opts.timeoutMs);
    child.on('error', (e) => finish(null, null, `cannot run /bin/sh: ${e.message}`));
    child.on('close', (code, signal) => finish(code, signal));
    // A background child left by the script may hold the pipes open: do not wait for it.
    child.on('exit', (code, signal) => setTimeout(() => finish(code, signal), 500).unref());
  });
}
