// Unit tests of the pure core: the Ready contract, pre-vote, messages, the log.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RaftNode, type RaftConfig } from '../../src/raft/core/raft.js';
import { RaftLog } from '../../src/raft/core/log.js';
import type { Entry, Message, Ready } from '../../src/raft/core/types.js';
import { SimCluster, type SimMessage } from '../../src/raft/sim/cluster.js';

type N = RaftNode<string, string>;
const cfg = (id: string, extra: Partial<RaftConfig> = {}): RaftConfig => ({
  id,
  peers: ['a', 'b', 'c'],
  electionTicks: 10,
  heartbeatTicks: 1,
  random: () => 0.99, // timeout 19 ticks: tests can tick 10 without a node campaigning
  ...extra,
});

/** Take a Ready, "persist" nothing, and advance; return it. */
function drain(n: N): Ready<string, string> {
  const rd = n.ready();
  n.advance(rd);
  return rd;
}

function ticks(n: N, k: number): void {
  for (let i = 0; i < k; i++) n.tick();
}

describe('raft core', () => {
  it('validates its configuration', () => {
    assert.throws(() => new RaftNode(cfg('z')), /not in peers/);
    assert.throws(() => new RaftNode(cfg('a', { heartbeatTicks: 10 })), /heartbeatTicks/);
    assert.throws(() => new RaftNode(cfg('a', { electionTicks: 1 })), /electionTicks/);
  });

  it('pre-vote changes no term or vote, on the candidate or the voters', () => {
    const a: N = new RaftNode(cfg('a'));
    const b: N = new RaftNode(cfg('b'));
    ticks(b, 10); // b's boot-time vote refusal window is over
    a.campaign();
    const rd = drain(a);
    assert.equal(a.role, 'pre-candidate');
    assert.equal(a.term, 0);
    assert.equal(rd.hardState, null, 'a pre-vote must not write the hard state');
    const req = rd.messages.find((m) => m.to === 'b') as Message<string, string>;
    assert.equal(req.type, 'preVote');
    assert.equal(req.term, 1);
    b.step(req);
    const rb = drain(b);
    assert.equal(b.term, 0);
    assert.equal(b.vote, null);
    assert.equal(rb.messages[0].type, 'preVoteResp');
    assert.equal((rb.messages[0] as { reject: boolean }).reject, false);
  });

  it('a granted vote leaves only in the Ready that persists it (persist before send)', () => {
    const a: N = new RaftNode(cfg('a', { preVote: false }));
    const b: N = new RaftNode(cfg('b', { preVote: false }));
    ticks(b, 10);
    a.campaign();
    const ra = drain(a);
    assert.deepEqual(ra.hardState, { term: 1, vote: 'a', commit: 0 }, 'candidate must persist its own vote before asking');
    b.step(ra.messages.find((m) => m.to === 'b') as Message<string, string>);
    assert.ok(b.hasReady());
    const rb = drain(b);
    assert.deepEqual(rb.hardState, { term: 1, vote: 'a', commit: 0 });
    assert.equal(rb.messages[0].type, 'voteResp');
    a.step(rb.messages[0]);
    const ra2 = drain(a);
    assert.equal(a.role, 'leader');
    assert.equal(ra2.softStateChanged, true);
    assert.deepEqual(ra2.entries, [{ term: 1, index: 1, data: null }], 'leader must append a no-op');
    assert.ok(ra2.messages.some((m) => m.type === 'app'), 'the no-op goes out at once');
    // and a heartbeat round, so the lease can start one round trip after the election
    const others = ra2.messages.filter((m) => m.type !== 'app');
    assert.ok(others.length > 0 && others.every((m) => m.type === 'heartbeat' && m.tick === a.tickNow()), JSON.stringify(others));
  });

  it("a new leader's first entry carries what firstEntry gives, else the no-op", () => {
    const a = new RaftNode<string, string>({ ...cfg('a'), peers: ['a'], firstEntry: (term) => `claim of term ${term}` });
    a.campaign();
    const rd = a.ready();
    assert.deepEqual(rd.entries, [{ term: 1, index: 1, data: 'claim of term 1' }]);
    const b = new RaftNode<string, string>({ ...cfg('b'), peers: ['b'], firstEntry: () => null });
    b.campaign();
    assert.deepEqual(b.ready().entries, [{ term: 1, index: 1, data: null }]);
  });

  it('refuses votes for an election timeout after boot and after hearing from a leader', () => {
    const b: N = new RaftNode(cfg('b', { preVote: false }));
    const vote = (term: number): Message<string, string> => ({ type: 'vote', from: 'a', to: 'b', term, index: 0, logTerm: 0, force: false });
    b.step(vote(1));
    assert.equal(b.term, 0, 'a freshly started node must not grant votes (it may have acked a lease before a crash)');
    assert.equal(drain(b).messages.length, 0);
    ticks(b, 10);
    b.step(vote(1));
    assert.equal(b.vote, 'a');
  });

  it('ignores messages from non-members and misrouted messages', () => {
    const b: N = new RaftNode(cfg('b', { preVote: false }));
    ticks(b, 10);
    b.step({ type: 'vote', from: 'intruder', to: 'b', term: 5, index: 9, logTerm: 9, force: true });
    b.step({ type: 'vote', from: 'a', to: 'c', term: 5, index: 9, logTerm: 9, force: true });
    assert.equal(b.term, 0);
    assert.equal(b.vote, null);
    assert.equal(b.hasReady(), false);
  });

  it('a single node elects itself and commits', () => {
    const a = new RaftNode<string, string>({ ...cfg('a'), peers: ['a'] });
    a.campaign();
    assert.deepEqual(drain(a).committedEntries.map((e) => e.data), [null]);
    assert.equal(a.role, 'leader');
    const pos = a.propose('x');
    assert.deepEqual(pos, { index: 2, term: 1 });
    const rd = drain(a);
    assert.deepEqual(rd.committedEntries.map((e) => e.data), ['x']);
    assert.equal(a.propose('y') !== null, true);
    assert.equal(new RaftNode<string, string>(cfg('b')).propose('z'), null, 'followers refuse proposals');
  });

  it('sends only plain JSON-serialisable messages', () => {
    const c = new SimCluster({ seed: 5, nodes: 3, compactEvery: 3 });
    let seen = 0;
    const types = new Set<string>();
    c.tap = (m: SimMessage) => {
      seen++;
      types.add(m.type);
      assert.deepEqual(JSON.parse(JSON.stringify(m)), m);
    };
    c.runTicks(30);
    const f = c.ids.find((id) => id !== c.leader()!.id)!;
    c.net.partition([[f]]);
    for (let i = 0; i < 20; i++) {
      c.propose();
      c.runTicks(1);
    }
    c.net.heal();
    c.runTicks(30);
    c.transferLeadership(c.leader()!.id, f);
    c.runTicks(30);
    assert.ok(seen > 100);
    for (const t of ['app', 'appResp', 'heartbeat', 'heartbeatResp', 'preVote', 'preVoteResp', 'vote', 'voteResp', 'snap', 'timeoutNow']) {
      assert.ok(types.has(t), `no ${t} message seen`);
    }
  });
});

describe('raft log', () => {
  const ents = (...terms: number[]): Entry<string>[] => terms.map((t, i) => ({ index: i + 1, term: t, data: `e${i + 1}` }));

  it('appends, detects conflicts and truncates the conflicting suffix only', () => {
    const log = RaftLog.restore<string, string>(null, ents(1, 1, 2, 2), 0);
    assert.equal(log.unstableFrom, 5);
    assert.equal(log.maybeAppend(2, 1, [{ index: 3, term: 3, data: 'x' }]), 3);
    assert.equal(log.lastIndex(), 3);
    assert.equal(log.term(3), 3);
    assert.equal(log.unstableFrom, 3, 'the rewritten entry must be persisted again');
    assert.equal(log.maybeAppend(3, 2, []), null, 'mismatching previous term must be refused');
    // A stale, shorter append does not truncate matching entries after it.
    assert.equal(log.maybeAppend(1, 1, [{ index: 2, term: 1, data: 'e2' }]), 2);
    assert.equal(log.lastIndex(), 3);
  });

  it('finds the backtracking point by term', () => {
    const log = RaftLog.restore<string, string>(null, ents(1, 1, 1, 4, 4, 5, 5, 6, 6, 6), 0);
    assert.deepEqual(log.findConflictByTerm(10, 3), { index: 3, term: 1 });
    assert.deepEqual(log.findConflictByTerm(10, 6), { index: 10, term: 6 });
    assert.deepEqual(log.findConflictByTerm(7, 4), { index: 5, term: 4 });
    assert.deepEqual(log.findConflictByTerm(10, 0), { index: 0, term: 0 });
  });

  it('refuses to rewrite committed entries', () => {
    const log = RaftLog.restore<string, string>(null, ents(1, 1, 1), 2);
    assert.throws(() => log.maybeAppend(1, 1, [{ index: 2, term: 2, data: 'x' }]), /committed/);
  });

  it('compacts and keeps serving terms at the snapshot boundary', () => {
    const log = RaftLog.restore<string, string>(null, ents(1, 1, 2, 2, 3), 4);
    log.applied = 4;
    log.compact({ meta: { index: 3, term: 2, peers: [] }, data: 's' });
    assert.equal(log.firstIndex(), 4);
    assert.equal(log.term(3), 2);
    assert.equal(log.term(2), undefined);
    assert.equal(log.entry(4)?.data, 'e4');
    assert.throws(() => log.compact({ meta: { index: 5, term: 3, peers: [] }, data: 's' }), /applied/);
  });
});
