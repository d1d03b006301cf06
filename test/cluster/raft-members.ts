// Raft members as processes (raft-member.ts), for test/cluster/raft-runtime.test.ts. Each is a
// TestChild (test/support/child.ts): a member that dies without being told to fails whatever
// the test waits on at once — a request to it or any group wait — with its name, how it ended
// and its last stderr and log lines; every wait is bounded; and killAll() (the test file's
// afterEach) kills what is left even when a test was abandoned mid-way.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RaftRuntimeStatus } from '../../src/cluster/raft-runtime.js';
import type { PeerAddress } from '../../src/cluster/transport.js';
import { TestChild } from '../support/child.js';
import { addresses } from './helpers.js';
import type { MemberSetup, Request } from './raft-member.js';

const SCRIPT = new URL('./raft-member.ts', import.meta.url).pathname;
/** How long one request may take (a proposal commits within a few ticks; a hand-over is bounded by its own timeout). */
const REQUEST_MS = 10_000;
/** A member compiles its sources (tsx) before it is ready: slow on a loaded machine. */
const READY_MS = 60_000;

/** A proposal the member refused, with the leader it named. */
export class RefusedProposal extends Error {
  constructor(
    message: string,
    readonly leader: string | null,
  ) {
    super(message);
  }
}

/** A request without its id (ask() numbers it): Omit over each member of the union. */
type WithoutId<R> = R extends Request ? Omit<R, 'id'> : never;
type Ask = WithoutId<Request>;
type Answer = { reply: number; value?: unknown; error?: string; leader?: string | null };

export class Member {
  private nextId = 1;
  private readonly pending = new Map<number, (a: Answer) => void>();
  readonly child: TestChild;

  constructor(
    readonly name: string,
    readonly dir: string,
    private readonly group: Group,
    setup: MemberSetup,
  ) {
    const proc = spawn(process.execPath, ['--import', 'tsx', SCRIPT, JSON.stringify(setup)], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = new TestChild(`raft member ${name} (pid ${proc.pid})`, proc, (obj) => {
      if (typeof obj.reply !== 'number') return false;
      this.pending.get(obj.reply)?.(obj as Answer);
      this.pending.delete(obj.reply);
      return true;
    });
    proc.stdin!.on('error', () => undefined); // writing to a member that died: its end is reported instead
  }

  /** Log lines so far (pino objects). */
  get logs() {
    return this.child.logs;
  }

  ready(): Promise<unknown> {
    return this.group.guard(this.child.waitForLog((l) => l.msg === 'member ready', READY_MS));
  }

  private ask(q: Ask, timeoutMs = REQUEST_MS): Promise<Answer> {
    const id = this.nextId++;
    const answered = new Promise<Answer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.child.name}: no answer to ${q.op} within ${timeoutMs} ms; ${this.child.recent()}`));
      }, timeoutMs);
      this.pending.set(id, (a) => {
        clearTimeout(timer);
        resolve(a);
      });
    });
    this.child.proc.stdin!.write(`${JSON.stringify({ id, ...q })}\n`);
    return this.group.guard(answered);
  }

  async propose(value: number): Promise<{ index: number; term: number }> {
    const a = await this.ask({ op: 'propose', value });
    if (a.error !== undefined) throw new RefusedProposal(a.error, a.leader ?? null);
    return a.value as { index: number; term: number };
  }

  async status(): Promise<RaftRuntimeStatus> {
    return (await this.ask({ op: 'status' })).value as RaftRuntimeStatus;
  }

  async values(): Promise<number[]> {
    return (await this.ask({ op: 'values' })).value as number[];
  }

  async handOver(timeoutMs: number): Promise<boolean> {
    return (await this.ask({ op: 'handOver', timeoutMs }, timeoutMs + REQUEST_MS)).value as boolean;
  }

  /** A clean stop: the runtime and transport stop and the process exits 0. */
  async halt(): Promise<void> {
    if (this.child.end) return;
    this.child.expectEnd();
    this.child.proc.stdin!.write(`${JSON.stringify({ id: 0, op: 'halt' })}\n`);
    await Promise.race([this.child.ended, new Promise((r) => setTimeout(r, REQUEST_MS).unref())]);
    if (!this.child.end) await this.child.kill();
  }

  /** Makes the member throw from a timer, uncaught, as a bug in the runtime would (tests of this harness). */
  async crash(): Promise<void> {
    this.child.proc.stdin!.write(`${JSON.stringify({ id: 0, op: 'crash' })}\n`);
  }
}

export class Group {
  readonly members: Member[] = [];
  readonly dirs: string[] = [];

  private constructor(readonly peers: PeerAddress[]) {}

  /** Members `names` on fresh ports and dirs, started together; resolves once all are ready. */
  static async start(names: string[], priorities: Record<string, number> = {}, compactEvery = 1000): Promise<Group> {
    const g = new Group(await addresses(names));
    for (const n of names) g.spawn(n, mkdtempSync(join(tmpdir(), `pgwd-raft-${n}-`)), priorities, compactEvery);
    await Promise.all(g.members.map((m) => m.ready()));
    return g;
  }

  /** A member (again) on `dir`: a restart from its disk. */
  spawn(name: string, dir: string, priorities: Record<string, number> = {}, compactEvery = 1000): Member {
    const old = this.members.findIndex((m) => m.name === name);
    const m = new Member(name, dir, this, { name, peers: this.peers, dir, priorities, compactEvery });
    if (old >= 0) this.members[old] = m;
    else this.members.push(m);
    if (!this.dirs.includes(dir)) this.dirs.push(dir);
    return m;
  }

  /** `p`, unless a member dies unexpectedly first: then that member's crash, at once. */
  guard<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, ...this.members.map((m) => m.child.crashed)]);
  }

  /** Polls `pred` (every 50 ms) until true; fails after `timeoutMs` saying `what`, or at once on a crash. */
  async until(pred: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!(await this.guard(pred()))) {
      if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await this.guard(new Promise((r) => setTimeout(r, 50)));
    }
  }

  /** The one leader holding its lease among `among` (default: every live member). */
  async leader(among: Member[] = this.members.filter((m) => !m.child.end), timeoutMs = 5000): Promise<Member> {
    let found: Member | undefined;
    await this.until(
      async () => {
        const sts = await Promise.all(among.map((m) => m.status()));
        const ls = among.filter((_, i) => sts[i]!.role === 'leader' && sts[i]!.hasLease);
        found = ls.length === 1 ? ls[0] : undefined;
        return found !== undefined;
      },
      timeoutMs,
      `one leader with a lease among ${among.map((m) => m.name).join(', ')}`,
    );
    return found!;
  }

  /** Kills every member still running and removes the dirs: bounded, never throws. */
  async killAll(): Promise<void> {
    await Promise.all(this.members.map((m) => m.child.kill()));
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
  }
}
