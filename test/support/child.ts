// A child process a test drives (a pgwatchdog peer, a Raft member): its stdout read as JSON log
// lines, the tail of its stderr kept, and its end known at once. A test waiting on a child that
// died must fail then, saying which child, how it ended and what it last said, not wait for a
// timeout (or forever); and whatever it started must be killed even when the test is abandoned.
import type { ChildProcess } from 'node:child_process';

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export interface ChildEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const STDERR_KEPT = 8192;
const live = new Set<ChildProcess>();
let hooked = false;

export class TestChild {
  readonly logs: LogLine[] = [];
  /** Resolves with how the process ended. */
  readonly ended: Promise<ChildEnd>;
  /** Rejects, with the context, as soon as the process ends unless expectEnd() was called
   * first; never settles otherwise. */
  readonly crashed: Promise<never>;
  end: ChildEnd | undefined;
  /** Set once the process has ended without expectEnd(): the error `crashed` rejects with. */
  crash: Error | undefined;
  private stderr = '';
  private expected = false;
  private readonly waiters = new Set<(l: LogLine) => void>();

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
    /** A stdout line that is not a log line for the caller (a reply); true when taken. */
    private readonly take: (line: Record<string, unknown>) => boolean = () => false,
  ) {
    if (!hooked) {
      hooked = true;
      // However the test process ends, no child outlives it.
      process.on('exit', () => {
        for (const p of live) p.kill('SIGKILL');
      });
    }
    live.add(proc);
    let buf = '';
    proc.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const text = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.line(text);
      }
    });
    proc.stderr?.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-STDERR_KEPT)));
    this.ended = new Promise((resolve) =>
      proc.on('exit', (code, signal) => {
        live.delete(proc);
        this.end = { code, signal };
        // Its last words (a crash's stack) may still be in the pipes: wait for them to close,
        // but not for long, since a command it started may hold them open.
        const t = setTimeout(() => resolve(this.end!), 200);
        proc.once('close', () => {
          clearTimeout(t);
          resolve(this.end!);
        });
      }),
    );
    // An end the test asked for never settles it: waits raced against it go on.
    this.crashed = this.ended.then((e) => {
      if (this.expected) return new Promise<never>(() => undefined);
      this.crash = new Error(`${this.name} exited unexpectedly (${describeEnd(e)}); ${this.recent()}`);
      throw this.crash;
    });
    this.crashed.catch(() => undefined); // only those who race it hear of it
  }

  /** The end that follows is the test's doing (stop, kill -9, a takeover): not a crash. */
  expectEnd(): void {
    this.expected = true;
  }

  /** The last stderr lines and log lines, for an error message. */
  recent(stderrLines = 15, logLines = 15): string {
    const err = this.stderr.trimEnd().split('\n').slice(-stderrLines).join('\n');
    return `last stderr lines:\n${err || '(none)'}\nlast log lines:\n${this.logs.slice(-logLines).map((x) => JSON.stringify(x)).join('\n') || '(none)'}`;
  }

  /** `p`, unless the child crashes first: then the crash's error, at once. */
  guard<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.crashed]);
  }

  /** The first log line (seen already or to come) that matches; fails on timeout or when the child ends first. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs: number): Promise<LogLine> {
    const seen = this.logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      const done = (err: Error | undefined, l?: LogLine) => {
        clearTimeout(timer);
        if (!this.waiters.delete(w)) return;
        if (err) reject(err);
        else resolve(l!);
      };
      const w = (l: LogLine) => pred(l) && done(undefined, l);
      const timer = setTimeout(() => done(new Error(`${this.name}: no matching log line within ${timeoutMs} ms; ${this.recent()}`)), timeoutMs);
      this.waiters.add(w);
      void this.ended.then((e) => done(new Error(`${this.name} ended (${describeEnd(e)}) before the expected log line; ${this.recent()}`)));
    });
  }

  /** SIGKILL, and wait (bounded) for the end. */
  async kill(): Promise<void> {
    this.expectEnd();
    if (this.end) return;
    this.proc.kill('SIGKILL');
    await Promise.race([this.ended, new Promise((r) => setTimeout(r, 5000).unref())]);
  }

  private line(text: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const obj = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
    if (obj && this.take(obj)) return;
    const l: LogLine = obj && typeof obj.msg === 'string' ? (obj as LogLine) : { level: 30, msg: text };
    this.logs.push(l);
    for (const w of [...this.waiters]) w(l);
  }
}

export function describeEnd(e: ChildEnd): string {
  return e.signal ? `killed by ${e.signal}` : `exit code ${e.code}`;
}
