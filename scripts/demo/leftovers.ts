// What a demo run leaves if it is killed with -9 (or the machine loses power), and how the next
// run removes it. Everything a run starts lives under one directory (the PostgreSQL servers'
// data, the peers' configs, Raft logs and VIP markers), recorded in a state file before
// anything is started there. A process belongs to the run when its command line names that
// directory (`postgres -D DIR/…`, `pgwatchdog start -c DIR/…`), so the cleanup finds even a
// process started after the last time the state file was written, and never kills another
// program's process whose pid happens to be reused.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// One state file per checkout: demos of two checkouts on one machine (worktrees, a CI runner
// next to a developer) neither refuse nor clean up each other.
const CHECKOUT = fileURLToPath(new URL('../..', import.meta.url));
export const STATE_FILE = join(tmpdir(), `pgwatchdog-demo-${createHash('sha256').update(CHECKOUT).digest('hex').slice(0, 12)}.json`);

interface DemoState {
  /** The demo script's own pid, to tell a crashed run from one still running. */
  pid?: number;
  /** Directories whose processes are killed and which are removed. */
  dirs: string[];
}

function cmdline(pid: number | string): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/** Pids of the processes whose command line names `dir` (or something under it). */
export function processesUnder(dir: string): number[] {
  const marker = dir.endsWith('/') ? dir : `${dir}/`;
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid)
    .filter((d) => cmdline(d).includes(marker))
    .map(Number);
}

export function recordRun(dir: string): void {
  writeFileSync(STATE_FILE, JSON.stringify({ pid: process.pid, dirs: [dir] } satisfies DemoState));
}

export function forgetRun(): void {
  rmSync(STATE_FILE, { force: true });
}

export type Leftovers = { kind: 'none' } | { kind: 'running'; pid: number } | { kind: 'removed'; processes: number; dirs: number };

/** Removes what a previous run left; refuses (kind `running`) while that run is still alive. */
export async function cleanLeftovers(): Promise<Leftovers> {
  if (!existsSync(STATE_FILE)) return { kind: 'none' };
  let state: DemoState;
  try {
    state = JSON.parse(readFileSync(STATE_FILE, 'utf8')) as DemoState;
    if (!Array.isArray(state.dirs)) throw new Error('no dirs');
  } catch {
    forgetRun();
    return { kind: 'none' };
  }
  if (state.pid !== undefined && /demo/.test(cmdline(state.pid))) return { kind: 'running', pid: state.pid };
  let processes = 0;
  for (const dir of state.dirs) {
    for (const pid of processesUnder(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
        processes++;
      } catch {
        // gone meanwhile
      }
    }
  }
  // Removing a directory a dying server still writes to could leave part of it behind.
  const deadline = Date.now() + 5000;
  while (state.dirs.some((d) => processesUnder(d).length > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const d of state.dirs) rmSync(d, { recursive: true, force: true });
  forgetRun();
  return { kind: 'removed', processes, dirs: state.dirs.length };
}
