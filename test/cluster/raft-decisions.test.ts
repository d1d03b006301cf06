// RaftDecisions: the engine's decisions become Raft proposals, its seqs the cluster's.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RaftDecisions } from '../../src/cluster/raft-decisions.js';
import type { RaftRuntime } from '../../src/cluster/raft-runtime.js';
import { apply, initialState, type ClusterCommand, type ClusterState } from '../../src/cluster/state.js';
import { expandVipCommand } from '../../src/cluster/vip-runner.js';

/** A runtime stand-in that commits every proposal at once, as a leader of term 3 would. */
function fakeRuntime(): { rt: RaftRuntime<ClusterCommand, ClusterState>; state: () => ClusterState; log: ClusterCommand[] } {
  let s = initialState({ backends: [{ weight: 1 }, { weight: 1 }] as never });
  let index = 0;
  const log: ClusterCommand[] = [];
  const rt = {
    propose: (cmd: ClusterCommand) => {
      log.push(cmd);
      index++;
      s = apply(s, cmd, { index, term: 3 }).state;
      return Promise.resolve({ index, term: 3 });
    },
    status: () => ({ term: 3 }),
  } as unknown as RaftRuntime<ClusterCommand, ClusterState>;
  return { rt, state: () => s, log };
}

describe('RaftDecisions', () => {
  it('keys failover records by their log index and finishes them by it', async () => {
    const f = fakeRuntime();
    const d = new RaftDecisions('pgwd1', f.rt, f.state);
    assert.equal(d.term(), 3);
    const seq = d.nextSeq();
    await d.record({ type: 'backend', id: 1, status: 'up', role: 'standby', reason: 'found' });
    await d.record({ type: 'failoverStarted', seq, kind: 'node_down', ids: [0], term: 3, reason: 'down by consensus' });
    await d.record({ type: 'backend', id: 0, status: 'down', detachedBy: 'failover', reason: 'down by consensus' });
    await d.record({ type: 'failoverFinished', seq, ok: true, summary: 'done', newPrimary: 1 });
    const rec = f.state().failovers[0]!;
    assert.equal(rec.seq, 2, 'the cluster seq is the index failoverStarted committed at');
    assert.equal(rec.engineSeq, seq);
    assert.equal(rec.finished?.ok, true);
    assert.equal(f.state().backends[0]!.status, 'down');
    assert.ok(d.nextSeq() > seq, 'engine seqs keep growing past the recorded ones');
  });

  it('turns the engine start of a resumed failover into failoverResumed of the open record', async () => {
    const f = fakeRuntime();
    // another coordinator started failover 1 in an earlier term and died
    await f.rt.propose({ type: 'decision', peer: 'pgwd2', at: 1, decision: { type: 'failoverStarted', seq: 7, kind: 'node_down', ids: [0], term: 2, reason: 'r' } });
    const d = new RaftDecisions('pgwd1', f.rt, f.state);
    d.resumeNext(1, 'left open by pgwd2');
    const seq = d.nextSeq();
    assert.equal(seq, 8);
    await d.record({ type: 'failoverStarted', seq, kind: 'node_down', ids: [0], term: 3, reason: 'resumed' });
    await d.record({ type: 'failoverFinished', seq, ok: true, summary: 'done', newPrimary: 1 });
    assert.deepEqual(f.log.map((c) => (c.type === 'decision' ? c.decision.type : c.type)), ['failoverStarted', 'failoverResumed', 'failoverFinished']);
    const rec = f.state().failovers[0]!;
    assert.equal(rec.runner, 'pgwd1');
    assert.equal(rec.resumes, 1);
    assert.equal(rec.finished?.ok, true);
  });

  it('refuses to finish a failover whose start it never recorded', async () => {
    const f = fakeRuntime();
    const d = new RaftDecisions('pgwd1', f.rt, f.state);
    await assert.rejects(d.record({ type: 'failoverFinished', seq: 5, ok: true, summary: 'x', newPrimary: null }), /failover 5 has no failover record/);
  });
});

describe('VIP command templates', () => {
  it('expands %V and %I shell-quoted and %% as a percent sign', () => {
    assert.equal(expandVipCommand('/x/esc.sh %V %I 100%%', { address: '10.0.0.1/24', interface: "eth0'x" }), `/x/esc.sh '10.0.0.1/24' 'eth0'\\''x' 100%`);
  });
});
