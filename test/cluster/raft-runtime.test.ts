// The Raft runtime over real sockets and real disks: three members, each its own process
// (raft-members.ts), so a member that crashes fails the test at once with its exit and last
// lines instead of leaving it waiting, and cleanup kills whatever is left.
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Group, RefusedProposal } from './raft-members.js';

const groups: Group[] = [];
async function group(names: string[], priorities: Record<string, number> = {}, compactEvery = 1000): Promise<Group> {
  const g = await Group.start(names, priorities, compactEvery);
  groups.push(g);
  return g;
}
// Runs after every test, passed, failed or abandoned (a timeout, a crash): nothing outlives it.
afterEach(async () => {
  await Promise.all(groups.splice(0).map((g) => g.killAll()));
});

const upTo = (n: number, from = 1) => Array.from({ length: n - from + 1 }, (_, i) => i + from);

// A backstop: every wait below is bounded on its own; a test still running after this fails.
describe('raft runtime', { timeout: 120_000 }, () => {
  it('elects one leader, commits proposals everywhere in order, refuses proposals on followers', async () => {
    const g = await group(['a', 'b', 'c']);
    const l = await g.leader();
    assert.ok((await l.status()).termCommitted);
    for (const i of upTo(20)) await l.propose(i);
    await g.until(async () => (await Promise.all(g.members.map((m) => m.values()))).every((v) => v.length === 20), 5000, 'every member applies 20 entries');
    for (const m of g.members) assert.deepEqual(await m.values(), upTo(20), m.name);
    const f = g.members.find((m) => m !== l)!;
    await assert.rejects(f.propose(99), (err: unknown) => err instanceof RefusedProposal && err.leader === l.name && /not the leader/.test(err.message));
  });

  it('a new leader takes over when the leader dies; the old one rejoins from its disk and catches up (through a snapshot)', async () => {
    const g = await group(['a', 'b', 'c'], {}, 5);
    const l1 = await g.leader();
    for (const i of upTo(7)) await l1.propose(i);
    const term1 = (await l1.status()).term;
    await l1.halt();
    const l2 = await g.leader(g.members.filter((m) => m !== l1));
    assert.ok((await l2.status()).term > term1);
    for (const i of upTo(20, 8)) await l2.propose(i);
    const back = g.spawn(l1.name, l1.dir, {}, 5);
    await back.ready();
    await g.until(async () => (await back.values()).length === 20, 5000, 'the rejoined member catches up');
    assert.deepEqual(await back.values(), upTo(20));
    assert.notEqual((await back.status()).role, 'leader');
  });

  it('a pending proposal is rejected with the reason when leadership is lost', async () => {
    const g = await group(['a', 'b', 'c']);
    const l = await g.leader();
    for (const m of g.members) if (m !== l) await m.halt();
    await assert.rejects(l.propose(1), (err: unknown) => err instanceof RefusedProposal && /leadership lost/.test(err.message));
  });

  it('handOver picks the highest-priority connected peer', async () => {
    const g = await group(['a', 'b', 'c'], { a: 1, b: 5, c: 3 });
    const l = await g.leader();
    await l.propose(1);
    const expect = l.name === 'b' ? 'c' : 'b';
    assert.equal(await l.handOver(3000), true);
    assert.equal((await g.leader()).name, expect);
  });

  it('handOver gives leadership away without an election', async () => {
    const g = await group(['a', 'b', 'c']);
    const l = await g.leader();
    await l.propose(1);
    const marks = g.members.map((m) => m.logs.length);
    assert.equal(await l.handOver(3000), true);
    const l2 = await g.leader(g.members.filter((m) => m !== l));
    // the successor campaigned on the leader's word (timeoutNow), not after an election
    // timeout: nobody went through a pre-vote round
    g.members.forEach((m, i) => assert.ok(!m.logs.slice(marks[i]).some((x) => x.msg === 'raft role changed' && x.role === 'pre-candidate'), m.name));
    assert.equal((await l2.status()).term, (await l.status()).term);
    await l2.propose(2);
  });

  it('a member that crashes fails what the test waits on at once, with its exit and last lines; cleanup kills the rest', async () => {
    const g = await group(['a', 'b', 'c']);
    const l = await g.leader();
    const f = g.members.find((m) => m !== l)!;
    await f.crash();
    const t0 = Date.now();
    // A wait that would otherwise last its whole timeout: no member ever applies 1000 entries.
    const err = await g.until(async () => (await l.values()).length === 1000, 60_000, 'a thousand entries').then(
      () => assert.fail('the wait ended without the crash'),
      (e: Error) => e,
    );
    assert.ok(Date.now() - t0 < 5000, `failed ${Date.now() - t0} ms after the crash`);
    assert.match(err.message, new RegExp(`^raft member ${f.name} \\(pid \\d+\\) exited unexpectedly \\(exit code 1\\)`));
    assert.match(err.message, /last stderr lines:\n(.|\n)*deliberate crash of member/);
    assert.match(err.message, /last log lines:\n\{/);
    await g.killAll();
    for (const m of g.members) assert.ok(m.child.end, `${m.name} is gone`);
  });
});
