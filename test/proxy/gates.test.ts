// The routing gates' rule (src/proxy/gates.ts) as a table: what a statement or a new
// session's first checkout does under each gate, and why.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { judgeCheckout, judgeStatement, refusalError, type StatementNeeds } from '../../src/proxy/gates.js';
import { OPEN_GATES, type RoutingGates } from '../../src/backends/registry.js';

const NOW = 1_000_000;
const LATER = NOW + 30_000;
const hold = (...ids: number[]): RoutingGates => ({ held: ids.map((id) => ({ id, reason: `failover of ${id}`, untilMs: LATER })), refuseWrites: null });
const refuse: RoutingGates = { held: [], refuseWrites: 'cut off from the majority for 12 s' };

const write: StatementNeeds = { write: true, needsPrimary: true, wantsStandby: false, inTxn: false };
const set: StatementNeeds = { write: false, needsPrimary: true, wantsStandby: false, inTxn: false };
const read: StatementNeeds = { write: false, needsPrimary: false, wantsStandby: true, inTxn: false };
const readOnPrimary: StatementNeeds = { write: false, needsPrimary: false, wantsStandby: false, inTxn: false };
const inTxn = (n: StatementNeeds): StatementNeeds => ({ ...n, inTxn: true });
const lb = { primary: 0, standby: 1 };
const pinned = { primary: 0, standby: undefined };

it('statements under each gate: go, read elsewhere, wait or refuse (with a reason every time)', () => {
  const rows: [string, RoutingGates, StatementNeeds, { primary: number; standby: number | undefined }, string][] = [
    ['no gate: a write goes', OPEN_GATES, write, lb, 'go'],
    ['no gate: a read goes', OPEN_GATES, read, lb, 'go'],
    ['primary held: a write waits', hold(0), write, lb, 'wait'],
    ['primary held: a SET (both) waits', hold(0), set, lb, 'wait'],
    ['primary held: a read on the standby goes', hold(0), read, lb, 'go'],
    ['primary held: a read on a pinned session waits', hold(0), readOnPrimary, pinned, 'wait'],
    ['primary held: a write in a transaction goes', hold(0), inTxn(write), lb, 'go'],
    ['primary held: a read in a transaction goes', hold(0), inTxn(readOnPrimary), pinned, 'go'],
    ['standby held: a read goes to the primary', hold(1), read, lb, 'avoidStandby'],
    ['standby held: a write goes', hold(1), write, lb, 'go'],
    ['both held: a read waits', hold(0, 1), read, lb, 'wait'],
    ['another backend held: nothing waits', hold(2), write, lb, 'go'],
    ['writes refused: a write is refused', refuse, write, lb, 'refuse'],
    ['writes refused: a write in a transaction is refused', refuse, inTxn(write), pinned, 'refuse'],
    ['writes refused: a read goes', refuse, read, lb, 'go'],
    ['writes refused: a read on a pinned session goes', refuse, readOnPrimary, pinned, 'go'],
    ['writes refused: a SET goes', refuse, set, lb, 'go'],
    ['writes refused and primary held: a write is refused, not held', { ...hold(0), refuseWrites: 'isolated' }, write, lb, 'refuse'],
  ];
  for (const [what, g, n, b, want] of rows) {
    const v = judgeStatement(g, n, b, NOW);
    assert.equal(v.action, want, what);
    assert.ok(v.reason.length > 0, `${what}: a reason`);
    if (v.action === 'wait') assert.equal(v.untilMs, LATER, `${what}: until the hold's deadline`);
  }
});

it('a hold past its deadline holds nothing', () => {
  const g: RoutingGates = { held: [{ id: 0, reason: 'failover', untilMs: NOW }], refuseWrites: null };
  assert.equal(judgeStatement(g, write, lb, NOW).action, 'go');
  assert.equal(judgeStatement(g, write, lb, NOW - 1).action, 'wait');
});

it('a refused write gets SQLSTATE 25006 with the reason and where to write instead', () => {
  const v = judgeStatement(refuse, write, lb, NOW);
  assert.equal(v.action, 'refuse');
  const e = refusalError(v.action === 'refuse' ? v.message : '');
  assert.equal(e.code, '25006');
  assert.equal(e.severity, 'ERROR');
  assert.equal(e.message, 'cannot execute a write on isolated pgwatchdog peer: cut off from the majority for 12 s');
  assert.equal(e.hint, 'Connect through the virtual IP (or another peer) to write.');
});

it('a new session waits before its first checkout while its primary is held, or while no primary is routable under a hold', () => {
  assert.equal(judgeCheckout(OPEN_GATES, 0, NOW).action, 'go');
  assert.equal(judgeCheckout(OPEN_GATES, undefined, NOW).action, 'go', 'no hold, no primary: fail as before (57P03)');
  assert.equal(judgeCheckout(hold(0), 0, NOW).action, 'wait');
  assert.equal(judgeCheckout(hold(1), 0, NOW).action, 'go', 'a held standby is simply not chosen');
  const v = judgeCheckout(hold(0), undefined, NOW);
  assert.equal(v.action, 'wait');
  assert.match(v.reason, /failover/);
  assert.equal(judgeCheckout(refuse, 0, NOW).action, 'go', 'refusing writes does not stop sessions from starting');
});
