// The Raft runtime over real sockets and real disks: three runtimes in this process.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskStorage } from '../../src/raft/index.js';
import { ProposalError, RaftRuntime, type StateMachine } from '../../src/cluster/raft-runtime.js';
import type { PeerAddress } from '../../src/cluster/transport.js';
import { addresses, transport, until } from './helpers.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

class Numbers implements StateMachine<number, number[]> {
  values: number[] = [];
  apply(cmd: number) {
    this.values.push(cmd);
  }
  snapshot() {
    return [...this.values];
  }
  restore(s: number[]) {
    this.values = [...s];
  }
}

interface Member {
  name: string;
  rt: RaftRuntime<number, number[]>;
  sm: Numbers;
  t: ReturnType<typeof transport>;
  dir: string;
}

async function member(name: string, peers: PeerAddress[], dir: string, priorities: Record<string, number> = {}, compactEvery = 1000): Promise<Member> {
  // Generous timing (election timeout 1-2 s): the machine running the tests is shared and
  // loaded; a stall longer than the election timeout is a real loss of quorum to Raft.
  const t = transport(name, peers, { pingIntervalMs: 250 });
  await t.start();
  const sm = new Numbers();
  const rt = new RaftRuntime<number, number[]>({
    self: name,
    peers: peers.map((p) => ({ name: p.name, priority: priorities[p.name] ?? 0 })),
    tickMs: 50,
    electionTicks: 20,
    heartbeatTicks: 1,
    storage: new DiskStorage<number, number[]>(dir),
    transport: t,
    machine: sm,
    logger: t.captured.logger,
    compactEvery,
  });
  rt.start();
  return { name, rt, sm, t, dir };
}

async function group(names: string[], priorities: Record<string, number> = {}, compactEvery = 1000) {
  const peers = await addresses(names);
  const ms: Member[] = [];
  for (const n of names) {
    const dir = mkdtempSync(join(tmpdir(), `pgwd-raft-${n}-`));
    dirs.push(dir);
    ms.push(await member(n, peers, dir, priorities, compactEvery));
  }
  return { peers, ms };
}

async function halt(m: Member) {
  m.rt.stop();
  await m.t.close();
}

async function leaderOf(ms: Member[], timeoutMs = 5000): Promise<Member> {
  let l: Member | undefined;
  await until(() => {
    const ls = ms.filter((m) => m.rt.status().role === 'leader' && m.rt.status().hasLease);
    l = ls.length === 1 ? ls[0] : undefined;
    return l !== undefined;
  }, timeoutMs, 'one leader with a lease');
  return l!;
}

describe('raft runtime', () => {
  it('elects one leader, commits proposals everywhere in order, refuses proposals on followers', async () => {
    const { ms } = await group(['a', 'b', 'c']);
    try {
      const l = await leaderOf(ms);
      const st = l.rt.status();
      assert.ok(st.termCommitted);
      for (let i = 1; i <= 20; i++) await l.rt.propose(i);
      await until(() => ms.every((m) => m.sm.values.length === 20));
      for (const m of ms) assert.deepEqual(m.sm.values, Array.from({ length: 20 }, (_, i) => i + 1), m.name);
      const f = ms.find((m) => m !== l)!;
      await assert.rejects(f.rt.propose(99), (err: unknown) => err instanceof ProposalError && err.leader === l.name && /not the leader/.test(err.message));
    } finally {
      for (const m of ms) await halt(m);
    }
  });

  it('a new leader takes over when the leader dies; the old one rejoins from its disk and catches up (through a snapshot)', async () => {
    const { peers, ms } = await group(['a', 'b', 'c'], {}, 5);
    try {
      const l1 = await leaderOf(ms);
      for (let i = 1; i <= 7; i++) await l1.rt.propose(i);
      await halt(l1);
      const rest = ms.filter((m) => m !== l1);
      const l2 = await leaderOf(rest);
      assert.ok(l2.rt.status().term > l1.rt.status().term);
      for (let i = 8; i <= 20; i++) await l2.rt.propose(i);
      const back = await member(l1.name, peers, l1.dir, {}, 5);
      ms[ms.indexOf(l1)] = back;
      await until(() => back.sm.values.length === 20, 5000, 'rejoined peer catches up');
      assert.deepEqual(back.sm.values, Array.from({ length: 20 }, (_, i) => i + 1));
      assert.notEqual(back.rt.status().role, 'leader');
    } finally {
      for (const m of ms) await halt(m);
    }
  });

  it('a pending proposal is rejected with the reason when leadership is lost', async () => {
    const { ms } = await group(['a', 'b', 'c']);
    try {
      const l = await leaderOf(ms);
      for (const m of ms) if (m !== l) await halt(m);
      await assert.rejects(l.rt.propose(1), (err: unknown) => err instanceof ProposalError && /leadership lost/.test(err.message));
    } finally {
      for (const m of ms) await halt(m);
    }
  });

  it('handOver picks the highest-priority connected peer', async () => {
    const { ms } = await group(['a', 'b', 'c'], { a: 1, b: 5, c: 3 });
    try {
      const l = await leaderOf(ms);
      await l.rt.propose(1);
      const expect = l.name === 'b' ? 'c' : 'b';
      assert.equal(await l.rt.handOver(3000), true);
      const l2 = await leaderOf(ms);
      assert.equal(l2.name, expect);
    } finally {
      for (const m of ms) await halt(m);
    }
  });

  it('handOver gives leadership away without an election', async () => {
    const { ms } = await group(['a', 'b', 'c']);
    try {
      const l = await leaderOf(ms);
      await l.rt.propose(1);
      const marks = ms.map((m) => m.t.captured.lines.length);
      assert.equal(await l.rt.handOver(3000), true);
      const l2 = await leaderOf(ms.filter((m) => m !== l), 5000);
      // the successor campaigned on the leader's word (timeoutNow), not after an election
      // timeout: nobody went through a pre-vote round
      ms.forEach((m, i) => assert.ok(!m.t.captured.lines.slice(marks[i]).some((x) => x.msg === 'raft role changed' && x.role === 'pre-candidate'), m.name));
      assert.equal(l2.rt.status().term, l.rt.status().term);
      await l2.rt.propose(2);
    } finally {
      for (const m of ms) await halt(m);
    }
  });
});
