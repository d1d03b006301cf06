// The causal-read rule (src/proxy/causal.ts) as a table: the session's need, the registry's
// WAL samples of the primary and of the session's standby, and where the read goes and why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NO_NEED, committed, decideRead, parseReadAfterLsn, readAfterLsn, writeSent, type CausalNeed, type WalSample } from '../../src/proxy/causal.js';

const primary = (insertLsn: bigint | null, sampledAt: number | null): WalSample => ({ lsn: insertLsn, insertLsn, sampledAt });
const standby = (replay: bigint | null, sampledAt: number | null = 0): WalSample => ({ lsn: replay, insertLsn: null, sampledAt });
const need = (own: bigint, given: bigint, pendingSince: number | null): CausalNeed => ({ own, given, pendingSince });

test('decideRead: every branch, with its reason and the need it leaves', () => {
  const rows: { name: string; need: CausalNeed; primary: WalSample | undefined; standby: WalSample; target: 'standby' | 'primary'; reason: string; after: CausalNeed }[] = [
    { name: 'no write', need: NO_NEED, primary: primary(100n, 5), standby: standby(null), target: 'standby', reason: 'no write to wait for', after: NO_NEED },
    { name: 'write still running', need: need(0n, 0n, Infinity), primary: primary(100n, 50), standby: standby(1000n), target: 'primary', reason: 'write not committed yet', after: need(0n, 0n, Infinity) },
    { name: 'committed at 10, last primary sample sent at 9 (before the commit)', need: need(0n, 0n, 10), primary: primary(100n, 9), standby: standby(1000n), target: 'primary', reason: 'no primary WAL sample since the commit', after: need(0n, 0n, 10) },
    { name: 'sample sent at the same instant as the commit does not cover it', need: need(0n, 0n, 10), primary: primary(100n, 10), standby: standby(1000n), target: 'primary', reason: 'no primary WAL sample since the commit', after: need(0n, 0n, 10) },
    { name: 'no primary known', need: need(0n, 0n, 10), primary: undefined, standby: standby(1000n), target: 'primary', reason: 'no primary WAL sample since the commit', after: need(0n, 0n, 10) },
    { name: 'primary without an insert position', need: need(0n, 0n, 10), primary: primary(null, 20), standby: standby(1000n), target: 'primary', reason: 'no primary WAL sample since the commit', after: need(0n, 0n, 10) },
    { name: 'covered by a later sample, standby behind it', need: need(0n, 0n, 10), primary: primary(100n, 11), standby: standby(99n), target: 'primary', reason: 'standby behind the commit', after: need(100n, 0n, null) },
    { name: 'covered, standby exactly at it', need: need(0n, 0n, 10), primary: primary(100n, 11), standby: standby(100n), target: 'standby', reason: 'standby replayed past the commit', after: NO_NEED },
    { name: 'covered, standby replay unknown', need: need(0n, 0n, 10), primary: primary(100n, 11), standby: standby(null, null), target: 'primary', reason: 'standby replay position unknown', after: need(100n, 0n, null) },
    { name: 'an earlier resolved need is kept when the new sample is lower (cannot go back)', need: need(200n, 0n, 10), primary: primary(150n, 11), standby: standby(180n), target: 'primary', reason: 'standby behind the commit', after: need(200n, 0n, null) },
    { name: 'resolved need, standby catches up', need: need(200n, 0n, null), primary: primary(300n, 50), standby: standby(200n), target: 'standby', reason: 'standby replayed past the commit', after: NO_NEED },
    { name: 'client LSN ahead of the standby', need: need(0n, 500n, null), primary: primary(600n, 50), standby: standby(499n), target: 'primary', reason: 'standby behind the commit', after: need(0n, 500n, null) },
    { name: 'client LSN reached', need: need(0n, 500n, null), primary: undefined, standby: standby(500n), target: 'standby', reason: 'standby replayed past the commit', after: NO_NEED },
    { name: 'the larger of own and client LSN counts', need: need(700n, 500n, null), primary: primary(800n, 50), standby: standby(600n), target: 'primary', reason: 'standby behind the commit', after: need(700n, 500n, null) },
    { name: 'a client LSN with an unresolved commit waits for the sample first', need: need(0n, 5n, 10), primary: primary(100n, 3), standby: standby(1000n), target: 'primary', reason: 'no primary WAL sample since the commit', after: need(0n, 5n, 10) },
  ];
  for (const r of rows) {
    const d = decideRead(r.need, r.primary, r.standby);
    assert.equal(d.target, r.target, `${r.name}: target`);
    assert.equal(d.reason, r.reason, `${r.name}: reason`);
    assert.deepEqual(d.need, r.after, `${r.name}: need after`);
  }
});

test('a session\'s events: write sent, committed, read_after_lsn', () => {
  let n = writeSent(NO_NEED);
  assert.equal(n.pendingSince, Infinity);
  assert.equal(writeSent(n), n, 'a second write while one runs changes nothing');
  n = committed(n, 42);
  assert.equal(n.pendingSince, 42);
  assert.equal(committed(n, 50), n, 'an idle ReadyForQuery with no write since leaves the commit time');
  assert.equal(committed(NO_NEED, 50), NO_NEED, 'nothing written: nothing to wait for');
  // A later write before the first is resolved: the later commit time is the one to cover.
  n = committed(writeSent(n), 60);
  assert.equal(n.pendingSince, 60);
  n = readAfterLsn(NO_NEED, 0x10n);
  assert.deepEqual(n, { own: 0n, given: 0x10n, pendingSince: null });
  assert.equal(readAfterLsn(n, 0n), NO_NEED, "'0/0' clears the client's LSN");
});

test('parseReadAfterLsn takes PostgreSQL\'s LSN text and refuses anything else with the setting named', () => {
  assert.equal(parseReadAfterLsn('0/16B3748'), 0x16b3748n);
  assert.equal(parseReadAfterLsn(' 1/0 '), 1n << 32n);
  for (const bad of ['', 'x', '0/', '1/2/3', '123', 'FFFFFFFFF/0']) {
    assert.throws(() => parseReadAfterLsn(bad), /invalid value for parameter "pgwatchdog.read_after_lsn"/, bad);
  }
});
