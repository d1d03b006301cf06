// The replicated cluster state: apply is pure, ordered, fenced, and says why on every branch.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { apply, clusterCommandSchema, initialState, openFailovers, restoreState, snapshotState, FINISHED_RECORDS_KEPT } from '../../src/cluster/state.js';
import { applyAll, upState } from './fixtures.js';

const started = (peer: string, ids: number[], seq = 1) =>
  ({ type: 'decision', peer, at: 10, decision: { type: 'failoverStarted', seq, kind: 'node_down', ids, term: 0, reason: 'consensus' } }) as const;
const finished = (peer: string, seq: number) =>
  ({ type: 'decision', peer, at: 20, decision: { type: 'failoverFinished', seq, ok: true, summary: 'done', newPrimary: 1 } }) as const;

describe('cluster state apply', () => {
  it('starts with every configured backend waiting, weights from the config, no primary', () => {
    const s = initialState({ backends: [{ weight: 1 }, { weight: 3 }] as never });
    assert.deepEqual(
      s.backends.map((b) => [b.status, b.role, b.weight]),
      [
        ['waiting', 'unknown', 1],
        ['waiting', 'unknown', 3],
      ],
    );
    assert.equal(s.primary, null);
    assert.equal(s.coordinator, null);
  });

  it('backend decisions set status and role, derive the primary, record the change', () => {
    const s = upState();
    assert.equal(s.primary, 0);
    const r = apply(s, { type: 'decision', peer: 'a', at: 5, decision: { type: 'backend', id: 0, status: 'down', reason: 'consensus down' } }, { index: s.index + 1, term: 2 });
    assert.ok(r.changed);
    assert.equal(r.state.primary, null);
    assert.deepEqual(r.state.backends[0].lastChange, { index: s.index + 1, term: 2, at: 5, reason: 'consensus down' });
    assert.match(r.reason, /backend 0: up\/primary -> down\/primary/);
    assert.equal(s.backends[0].status, 'up', 'the input state is not modified');
  });

  const table: { name: string; cmd: Parameters<typeof apply>[1]; reason: RegExp }[] = [
    { name: 'unknown backend', cmd: { type: 'decision', peer: 'a', at: 1, decision: { type: 'backend', id: 9, status: 'down', reason: 'x' } }, reason: /no backend 9/ },
    { name: 'same status', cmd: { type: 'decision', peer: 'a', at: 1, decision: { type: 'backend', id: 1, status: 'up', reason: 'x' } }, reason: /already up\/standby/ },
    { name: 'finish of no record', cmd: finished('a', 77), reason: /no failover record 77/ },
    { name: 'resume of no record', cmd: { type: 'failoverResumed', peer: 'b', at: 1, seq: 77, reason: 'x' }, reason: /no failover record 77 to resume/ },
    { name: 'start of an unknown backend', cmd: started('a', [5]), reason: /unknown backend 5/ },
    { name: 'de-escalation by a non-holder', cmd: { type: 'vip', peer: 'b', at: 1, holding: false }, reason: /holder on record is nobody/ },
    { name: 'repeated coordinator claim', cmd: { type: 'coordinator', peer: 'a', at: 1 }, reason: /already coordinator/ },
  ];
  for (const t of table) {
    it(`no-op with a reason: ${t.name}`, () => {
      const s = upState();
      const r = apply(s, t.cmd, { index: s.index + 1, term: 2 });
      assert.equal(r.changed, false);
      assert.match(r.reason, t.reason);
      assert.equal(r.state.index, s.index + 1, 'a no-op entry still advances the applied index');
      assert.deepEqual({ ...r.state, index: s.index, term: s.term }, s);
    });
  }

  it('an entry at or below the applied index is not applied twice', () => {
    const s = upState();
    const r = apply(s, started('a', [0]), { index: s.index, term: 2 });
    assert.equal(r.changed, false);
    assert.equal(r.state, s);
    assert.match(r.reason, /already applied/);
  });

  it('Raft no-op entries advance the index only', () => {
    const s = upState();
    const r = apply(s, null, { index: s.index + 1, term: 3 });
    assert.equal(r.changed, false);
    assert.equal(r.state.term, 3);
    assert.match(r.reason, /no-op of term 3/);
  });

  it('failover records: the log index is the cluster seq, the engine seq is kept apart', () => {
    let s = upState();
    s = applyAll(s, 2, started('a', [0], 1));
    const seqA = s.index;
    s = applyAll(s, 3, { type: 'coordinator', peer: 'b', at: 30 }, started('b', [1], 1)); // b's engine also starts at 1
    const seqB = s.index;
    assert.notEqual(seqA, seqB);
    assert.deepEqual(
      openFailovers(s).map((f) => [f.seq, f.engineSeq, f.runner, f.term]),
      [
        [seqA, 1, 'a', 2],
        [seqB, 1, 'b', 3],
      ],
    );
  });

  it('resume hands the record to the new coordinator and fences the old runner out', () => {
    let s = applyAll(upState(), 2, started('a', [0]));
    const seq = s.index;
    s = applyAll(s, 3, { type: 'coordinator', peer: 'b', at: 30 }, { type: 'failoverResumed', peer: 'b', at: 31, seq, reason: 'left open' });
    const rec = s.failovers[0];
    assert.deepEqual([rec.runner, rec.term, rec.resumes, rec.resumed?.at], ['b', 3, 1, 31]);
    const stale = apply(s, finished('a', seq), { index: s.index + 1, term: 3 });
    assert.equal(stale.changed, false);
    assert.match(stale.reason, /run by b, not a/);
    s = applyAll(s, 3, finished('b', seq));
    assert.deepEqual(s.failovers[0].finished, { index: s.index, at: 20, ok: true, summary: 'done', newPrimary: 1 });
    const again = apply(s, finished('b', seq), { index: s.index + 1, term: 3 });
    assert.equal(again.changed, false);
    assert.match(again.reason, /already finished/);
    const late = apply(s, { type: 'failoverResumed', peer: 'c', at: 40, seq, reason: 'x' }, { index: s.index + 1, term: 4 });
    assert.match(late.reason, /already finished/);
  });

  it('a record keeps its steps: begun, then done; a resume fences the old runner out of them', () => {
    const step = (peer: string, seq: number, name: 'promote' | 'failover_command', phase: 'begun' | 'done', extra: { ok?: boolean; result?: string } = {}) =>
      ({ type: 'decision', peer, at: 15, decision: { type: 'failoverStep', seq, step: name, backend: name === 'promote' ? 1 : 0, phase, ...extra } }) as const;
    let s = applyAll(upState(), 2, { type: 'decision', peer: 'a', at: 10, decision: { type: 'failoverStarted', seq: 1, kind: 'node_down', ids: [0], term: 2, reason: 'consensus', replaces: 0 } });
    const seq = s.index;
    assert.equal(s.failovers[0].replaces, 0);
    s = applyAll(s, 2, step('a', seq, 'promote', 'begun'), step('a', seq, 'promote', 'done', { ok: true, result: 'promoted' }), step('a', seq, 'failover_command', 'begun'));
    assert.deepEqual(
      s.failovers[0].steps.map((x) => [x.step, x.backend, x.phase, x.ok, x.result, x.peer, x.term, x.runs]),
      [
        ['promote', 1, 'done', true, 'promoted', 'a', 2, 1],
        ['failover_command', 0, 'begun', null, '', 'a', 2, 1],
      ],
    );
    // a step proposed by the old runner in its term, committed after the resume: ignored
    s = applyAll(s, 3, { type: 'failoverResumed', peer: 'b', at: 31, seq, reason: 'left open' });
    const stale = apply(s, step('a', seq, 'failover_command', 'done', { ok: true }), { index: s.index + 1, term: 3 });
    assert.equal(stale.changed, false);
    assert.match(stale.reason, /run by b in term 3, not a in term 3: step failover_command of backend 0 ignored/);
    s = applyAll(s, 3, step('b', seq, 'failover_command', 'begun'), step('b', seq, 'failover_command', 'done', { ok: true, result: 'exit 0' }));
    const fc = s.failovers[0].steps[1];
    assert.deepEqual([fc.phase, fc.peer, fc.term, fc.runs, fc.result], ['done', 'b', 3, 2, 'exit 0'], 'run again by the resumer: two runs on record');
    s = applyAll(s, 3, finished('b', seq));
    const after = apply(s, step('b', seq, 'promote', 'begun'), { index: s.index + 1, term: 3 });
    assert.match(after.reason, /already finished at entry \d+: step promote of backend 1 ignored/);
    // a snapshot from before steps were kept restores with none
    const old = JSON.parse(JSON.stringify(s)) as { failovers: Record<string, unknown>[] };
    delete old.failovers[0]!.steps;
    delete old.failovers[0]!.replaces;
    const restored = restoreState(old, { backends: s.backends.map(() => ({ weight: 1 })) as never });
    assert.deepEqual([restored.failovers[0]!.steps, restored.failovers[0]!.replaces], [[], null]);
  });

  it("a step keeps when its run began and ended (the proposer's clock); a run closed in a later term has no begin", () => {
    const step = (peer: string, at: number, seq: number, name: 'promote' | 'failover_command', phase: 'begun' | 'done') =>
      ({ type: 'decision', peer, at, decision: { type: 'failoverStep', seq, step: name, backend: 0, phase, ...(phase === 'done' ? { ok: true } : {}) } }) as const;
    let s = applyAll(upState(), 2, started('a', [0]));
    const seq = s.index;
    s = applyAll(s, 2, step('a', 100, seq, 'promote', 'begun'), step('a', 175, seq, 'promote', 'done'), step('a', 180, seq, 'failover_command', 'begun'));
    assert.deepEqual(s.failovers[0].steps.map((x) => [x.step, x.begunAt, x.doneAt]), [['promote', 100, 175], ['failover_command', 180, null]]);
    s = applyAll(s, 3, { type: 'failoverResumed', peer: 'b', at: 300, seq, reason: 'left open' }, step('b', 310, seq, 'failover_command', 'done'));
    assert.deepEqual([s.failovers[0].steps[1].begunAt, s.failovers[0].steps[1].doneAt], [null, 310], "closed by the resumer: not one run's duration");
    const old = JSON.parse(JSON.stringify(s)) as { failovers: { steps: Record<string, unknown>[] }[] };
    for (const x of old.failovers[0]!.steps) {
      delete x.begunAt;
      delete x.doneAt;
    }
    const restored = restoreState(old, { backends: s.backends.map(() => ({ weight: 1 })) as never });
    assert.deepEqual(restored.failovers[0]!.steps.map((x) => [x.begunAt, x.doneAt]), [[null, null], [null, null]], 'a snapshot from before times were kept restores without them');
  });

  it("an operator's detach stays on record while the backend is down, and attaching clears it", () => {
    let s = applyAll(upState(), 2, { type: 'decision', peer: 'a', at: 1, decision: { type: 'backend', id: 1, status: 'down', detachedBy: 'admin', reason: 'detach by admin' } });
    assert.equal(s.backends[1].detachedBy, 'admin');
    s = applyAll(s, 2, { type: 'decision', peer: 'a', at: 2, decision: { type: 'backend', id: 1, role: 'unknown', reason: 'role lost' } });
    assert.equal(s.backends[1].detachedBy, 'admin', 'a role change keeps it');
    s = applyAll(s, 2, { type: 'decision', peer: 'a', at: 3, decision: { type: 'backend', id: 1, status: 'up', role: 'standby', reason: 'attach' } });
    assert.equal('detachedBy' in s.backends[1], false);
  });

  it('coordinator and VIP holder are recorded with their term', () => {
    let s = applyAll(upState(), 5, { type: 'coordinator', peer: 'c', at: 50 }, { type: 'vip', peer: 'c', at: 51, holding: true });
    assert.deepEqual([s.coordinator?.peer, s.coordinator?.term, s.vipHolder?.peer, s.vipHolder?.term], ['c', 5, 'c', 5]);
    assert.equal(apply(s, { type: 'vip', peer: 'c', at: 51, holding: true }, { index: s.index + 1, term: 5 }).changed, false, 'a repeated claim in the same term changes nothing');
    const later = applyAll(s, 7, { type: 'vip', peer: 'c', at: 60, holding: true });
    assert.deepEqual([later.vipHolder?.peer, later.vipHolder?.term], ['c', 7], 'the same peer claims again in a later term');
    const other = applyAll(s, 8, { type: 'vip', peer: 'a', at: 61, holding: true });
    assert.deepEqual([other.vipHolder?.peer, other.vipHolder?.term], ['a', 8], 'a later claim replaces the holder on record');
    assert.equal(applyAll(other, 8, { type: 'vip', peer: 'c', at: 62, holding: false }).vipHolder?.peer, 'a', 'a release by a peer no longer on record changes nothing');
    s = applyAll(s, 5, { type: 'vip', peer: 'c', at: 52, holding: false });
    assert.equal(s.vipHolder, null);
  });

  it('keeps every open record but only the newest finished ones', () => {
    let s = upState();
    const open = applyAll(s, 2, started('a', [2]));
    s = open;
    for (let i = 0; i < FINISHED_RECORDS_KEPT + 10; i++) {
      s = applyAll(s, 2, started('a', [1], i + 2));
      s = applyAll(s, 2, finished('a', s.index));
    }
    assert.equal(s.failovers.filter((f) => f.finished).length, FINISHED_RECORDS_KEPT);
    assert.equal(openFailovers(s).length, 1);
    assert.equal(s.failovers[0].seq, open.index, 'the oldest record, still open, survives');
  });

  it('snapshots round-trip, are fitted to the config, and bad data is refused with the reason', () => {
    const s = applyAll(upState(), 2, started('a', [0]));
    const snap = JSON.parse(JSON.stringify(snapshotState(s)));
    assert.deepEqual(restoreState(snap, { backends: [{ weight: 1 }, { weight: 1 }, { weight: 2 }] as never }), s);
    const grown = restoreState(snap, { backends: [{ weight: 5 }, { weight: 1 }, { weight: 2 }, { weight: 1 }] as never });
    assert.deepEqual(
      grown.backends.map((b) => [b.status, b.weight]),
      [
        ['up', 5],
        ['up', 1],
        ['up', 2],
        ['waiting', 1],
      ],
    );
    assert.throws(() => restoreState({ ...snap, v: 2 }, { backends: [] as never }), /cluster state snapshot is invalid: v/);
  });

  it('the command schema accepts every command and refuses malformed ones', () => {
    for (const c of [started('a', [0]), finished('a', 3), { type: 'coordinator', peer: 'a', at: 1 }, { type: 'vip', peer: 'a', at: 1, holding: true }]) {
      assert.ok(clusterCommandSchema.safeParse(c).success, JSON.stringify(c));
    }
    for (const c of [
      { type: 'decision', peer: 'a', at: 1, decision: { type: 'backend', id: -1, reason: 'x' } },
      { type: 'decision', peer: 'a', at: 1, decision: { type: 'explode' } },
      { type: 'coordinator', peer: '', at: 1 },
      { type: 'coordinator', peer: 'a', at: 1, extra: true },
    ]) {
      assert.equal(clusterCommandSchema.safeParse(c).success, false, JSON.stringify(c));
    }
  });
});
