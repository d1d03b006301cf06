// The session-state record (src/proxy/session-state.ts) as a table: statements in, what a
// fresh connection must be given (replay) and what stops a move (blockers), out.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { EMPTY_RECORD, blockers, moveBlocker, noteStatements, recordFromWire, recordToWire, replay, type SessionRecord, type StatementContext } from '../../src/proxy/session-state.js';

const OUT: StatementContext = { inTxn: false, failed: false };
const IN: StatementContext = { inTxn: true, failed: false };

/** Runs statements one Query each; a leading `>` marks one sent inside a block, `!` inside a failed one. */
function run(...qs: string[]): SessionRecord {
  let r = EMPTY_RECORD;
  for (const q of qs) {
    const ctx = q.startsWith('>') ? IN : q.startsWith('!') ? { inTxn: true, failed: true } : OUT;
    r = noteStatements(r, q.replace(/^[>!]/, ''), ctx);
  }
  return r;
}

it('re-creates session-level SET, RESET, PREPARE, LISTEN, in the order last set', () => {
  const rows: [string, string[], string | undefined][] = [
    ['nothing', ['SELECT 1', 'INSERT INTO t VALUES (1)', "UPDATE t SET a = 'x'"], undefined],
    ['a SET', ["SET search_path TO app, public"], 'SET search_path TO app, public'],
    ['SET = and SET SESSION', ['SET work_mem = 1024', "SET SESSION application_name = 'x'"], "SET work_mem = 1024; SET SESSION application_name = 'x'"],
    ['the last SET of a name wins and moves last', ['SET a.b = 1', 'SET c.d = 2', 'SET a.b = 3'], 'SET c.d = 2; SET a.b = 3'],
    ['RESET forgets one', ['SET work_mem = 1024', 'SET statement_timeout = 5', 'RESET work_mem'], 'SET statement_timeout = 5'],
    ['RESET ALL forgets settings only', ['SET work_mem = 1024', 'LISTEN ch', 'RESET ALL'], 'LISTEN ch'],
    ['SET LOCAL, SET TRANSACTION, SET CONSTRAINTS are not session-level', ['>SET LOCAL work_mem = 1', '>SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', '>SET CONSTRAINTS ALL DEFERRED', 'COMMIT'], undefined],
    ['SET TIME ZONE, NAMES, SCHEMA, ROLE by their setting', ["SET TIME ZONE 'UTC'", "SET TIME ZONE 'Europe/Paris'", "SET NAMES 'UTF8'", "SET SCHEMA 'app'", 'SET ROLE app'], "SET TIME ZONE 'Europe/Paris'; SET NAMES 'UTF8'; SET SCHEMA 'app'; SET ROLE app"],
    ['SET pgwatchdog.… is the proxy\'s, not PostgreSQL\'s', ["SET pgwatchdog.read_after_lsn = '0/1'"], undefined],
    ['a multi-statement query', ['SET a.x = 1; SELECT 1; LISTEN "Mixed"'], 'SET a.x = 1; LISTEN "Mixed"'],
    ['SQL PREPARE, DEALLOCATE', ['PREPARE q1 AS SELECT 1', 'PREPARE q2 (int) AS SELECT $1', 'DEALLOCATE q1'], 'PREPARE q2 (int) AS SELECT $1'],
    ['DEALLOCATE ALL', ['PREPARE q1 AS SELECT 1', 'DEALLOCATE PREPARE ALL'], undefined],
    ['LISTEN, UNLISTEN one, UNLISTEN *', ['LISTEN a', 'LISTEN b', 'UNLISTEN a'], 'LISTEN b'],
    ['UNLISTEN *', ['LISTEN a', 'LISTEN b', 'UNLISTEN *'], undefined],
    ['a block that commits keeps its SET and LISTEN', ['BEGIN', '>SET work_mem = 64', '>LISTEN c', 'COMMIT'], 'SET work_mem = 64; LISTEN c'],
    ['a block that rolls back drops them', ['BEGIN', '>SET work_mem = 64', '>LISTEN c', 'ROLLBACK'], undefined],
    ['a failed block\'s COMMIT rolls back', ['BEGIN', '>SET work_mem = 64', '!COMMIT'], undefined],
    ['PREPARE in a rolled-back block stays (not transactional)', ['BEGIN', '>PREPARE q AS SELECT 2', 'ROLLBACK'], 'PREPARE q AS SELECT 2'],
    ['BEGIN; SET; COMMIT in one query', ['BEGIN; SET work_mem = 8; COMMIT'], 'SET work_mem = 8'],
    ['BEGIN; SET; ROLLBACK in one query', ['BEGIN; SET work_mem = 8; ROLLBACK'], undefined],
    ['DISCARD ALL forgets everything', ['SET work_mem = 1024', 'LISTEN a', 'PREPARE q AS SELECT 1', 'DISCARD ALL'], undefined],
    ['comments and strings do not confuse it', ["/* SET x.y = 1 */ SELECT 'LISTEN a; SET b.c = 2' -- LISTEN z"], undefined],
  ];
  for (const [what, qs, want] of rows) assert.equal(replay(run(...qs)), want, what);
});

it('names what stops a move: temp objects, advisory locks, WITH HOLD cursors, set_config', () => {
  const rows: [string, string[], string[]][] = [
    ['plain session', ['SET work_mem = 1', 'SELECT pg_advisory_xact_lock(1)'], []],
    ['CREATE TEMP TABLE', ['CREATE TEMP TABLE t (a int)'], ['temporary objects']],
    ['CREATE TEMPORARY VIEW', ['CREATE OR REPLACE TEMPORARY VIEW v AS SELECT 1'], ['temporary objects']],
    ['CREATE GLOBAL TEMPORARY TABLE', ['create global temporary table t (a int)'], ['temporary objects']],
    ['CREATE TABLE pg_temp.t', ['CREATE TABLE pg_temp.t (a int)'], ['temporary objects']],
    ['SELECT INTO TEMP', ['SELECT 1 AS a INTO TEMP t'], ['temporary objects']],
    ['temp table in a rolled-back block', ['BEGIN', '>CREATE TEMP TABLE t (a int)', 'ROLLBACK'], []],
    ['DISCARD TEMP', ['CREATE TEMP TABLE t (a int)', 'DISCARD TEMP'], []],
    ['a plain table', ['CREATE TABLE temperature (a int)'], []],
    ['advisory lock', ['SELECT pg_advisory_lock(42)'], ['advisory locks']],
    ['try advisory lock shared', ['SELECT pg_try_advisory_lock_shared(1, 2)'], ['advisory locks']],
    ['unlock all', ['SELECT pg_advisory_lock(42)', 'SELECT pg_advisory_unlock_all()'], []],
    ['WITH HOLD cursor', ['BEGIN', '>DECLARE c CURSOR WITH HOLD FOR SELECT 1', 'COMMIT'], ['WITH HOLD cursors']],
    ['cursor without hold', ['BEGIN', '>DECLARE c NO SCROLL CURSOR FOR SELECT 1', 'COMMIT'], []],
    ['closed hold cursor', ['DECLARE c CURSOR WITH HOLD FOR SELECT 1', 'CLOSE c'], []],
    ['set_config(…, false)', ["SELECT set_config('app.user', '7', false)"], ['session-level set_config']],
    ['set_config(…, true)', ["SELECT set_config('app.user', '7', true)"], []],
    ['set_config with a parameter', ['SELECT set_config($1, $2, $3)'], ['session-level set_config']],
    ['everything', ['CREATE TEMP TABLE t (a int)', 'SELECT pg_advisory_lock(1)', 'DECLARE c CURSOR WITH HOLD FOR SELECT 1', "SELECT set_config('a.b', 'c', false)"], ['temporary objects', 'advisory locks', 'WITH HOLD cursors', 'session-level set_config']],
    ['DISCARD ALL clears them', ['CREATE TEMP TABLE t (a int)', 'SELECT pg_advisory_lock(1)', 'DISCARD ALL'], []],
  ];
  for (const [what, qs, want] of rows) assert.deepEqual(blockers(run(...qs)), want, what);
});

it('moveBlocker: the live state first, then what the record holds', () => {
  const I = 0x49;
  const T = 0x54;
  const idle = { txStatus: I, copy: false, inFlight: false };
  assert.equal(moveBlocker(EMPTY_RECORD, idle), undefined);
  assert.equal(moveBlocker(EMPTY_RECORD, { ...idle, txStatus: T }), 'inside a transaction');
  assert.equal(moveBlocker(EMPTY_RECORD, { ...idle, copy: true }), 'in COPY');
  assert.equal(moveBlocker(EMPTY_RECORD, { ...idle, inFlight: true }), 'a statement was running');
  assert.equal(moveBlocker(run('CREATE TEMP TABLE x (a int)'), idle), 'holds temporary objects');
});

it('unchanged by plain statements (the same object), and survives the wire', () => {
  const r = run('SET work_mem = 1', 'LISTEN a', 'PREPARE p AS SELECT 1', 'CREATE TEMP TABLE t (a int)');
  assert.equal(noteStatements(r, 'SELECT * FROM t WHERE a = 1', OUT), r);
  assert.equal(noteStatements(r, "UPDATE t SET a = 2", OUT).sets.size, 1);
  const back = recordFromWire(JSON.parse(JSON.stringify(recordToWire(r))));
  assert.equal(replay(back), replay(r));
  assert.deepEqual(blockers(back), blockers(r));
  assert.equal(recordFromWire(undefined), EMPTY_RECORD);
});
