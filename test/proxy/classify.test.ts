import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classify, type Classification } from '../../src/proxy/classify.js';

const WF = ['nextval', 'setval', 'pg_advisory_lock', 'my_writer', 'billing.charge', 'audit_*'];
const opts = { writeFunctions: WF };

type Case = [sql: string, target: Classification['target'], write: boolean, txn?: 'begin' | 'end'];

function check(cases: Case[], o = opts): void {
  for (const [sql, target, write, txn] of cases) {
    const r = classify(sql, o);
    assert.deepEqual(
      { target: r.target, write: r.write, txn: r.txn },
      { target, write, txn },
      `classify(${JSON.stringify(sql)})`,
    );
  }
}

test('plain reads go to a standby', () => {
  check([
    ['SELECT 1', 'standby', false],
    ['select * from t where id = $1', 'standby', false],
    ['  \n\tSELECT a, b FROM t ORDER BY a LIMIT 10', 'standby', false],
    ['SELECT 1;', 'standby', false],
    ['SELECT 1;;  ;', 'standby', false],
    [';SELECT 1', 'standby', false],
    ['WITH x AS (SELECT 1) SELECT * FROM x', 'standby', false],
    ['WITH RECURSIVE t(n) AS (VALUES (1) UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT sum(n) FROM t', 'standby', false],
    ['WITH x AS MATERIALIZED (SELECT 1) SELECT * FROM x', 'standby', false],
    ['VALUES (1, 2), (3, 4)', 'standby', false],
    ['TABLE t', 'standby', false],
    ['SHOW search_path', 'standby', false],
    ['SHOW ALL', 'standby', false],
    ['(SELECT 1) UNION (SELECT 2)', 'standby', false],
    ['SELECT count(*) FROM pgbench_accounts WHERE aid = 42', 'standby', false],
    ['SELECT abalance FROM pgbench_accounts WHERE aid = 1', 'standby', false],
    ['SELECT now(), current_user, version()', 'standby', false],
    ['SELECT update_time, inserted, deleted_at FROM t', 'standby', false],
    ['SELECT substring(name FROM 1 FOR 3) FROM t', 'standby', false],
    ['SELECT * FROM t WHERE a IN (SELECT b FROM u)', 'standby', false],
    ['SELECT nextval FROM t', 'standby', false], // a column, not a call
    ['SELECT "nextval" FROM t', 'standby', false],
    ['SELECT x::text, y::int[] FROM t', 'standby', false],
    ['SELECT $1::int + $2', 'standby', false],
    ['SELECT 1.5e10, .5, 0x1F', 'standby', false],
    ['SELECT ARRAY[1,2,3] @> ARRAY[1]', 'standby', false],
    ['SELECT \'a\' || \'b\'', 'standby', false],
    ['select pg_last_wal_replay_lsn()', 'standby', false],
    ['SELECT * FROM generate_series(1, 10) AS g(i)', 'standby', false],
    ['SELECT my_reader(1)', 'standby', false],
    ['SELECT audit(1)', 'standby', false], // "audit_*" needs the underscore
    ['SELECT charge(1)', 'primary', true], // unqualified: search_path may resolve billing.charge
    ['SELECT other.charge(1)', 'standby', false],
  ]);
});

test('keywords inside strings, comments and quoted identifiers do not count', () => {
  check([
    ["SELECT 'insert'", 'standby', false],
    ["SELECT 'delete from t; drop table x'", 'standby', false],
    ["SELECT 'it''s ; update t'", 'standby', false],
    ["SELECT E'it\\'s ; update t'", 'standby', false],
    ["SELECT e'\\\\' , 'x'", 'standby', false],
    ["SELECT U&'d\\0061t\\+000061 ; update'", 'standby', false],
    ["SELECT N'nat ; insert', B'101', X'1F'", 'standby', false],
    ['/* update */ SELECT 1', 'standby', false],
    ['/* nested /* comment ; delete */ still ; insert */ SELECT 1', 'standby', false],
    ['-- insert into t\nSELECT 1', 'standby', false],
    ['SELECT 1 -- ; DELETE FROM t', 'standby', false],
    ['SELECT 1 /* ; DELETE FROM t */', 'standby', false],
    ['SELECT $$ ; insert into t $$', 'standby', false],
    ['SELECT $tag$ ; $$ insert $$ ; $tag$', 'standby', false],
    ['SELECT $a$ nested $b$ ; delete $b$ $a$, 1', 'standby', false],
    ['SELECT "for", "update" FROM t', 'standby', false],
    ['SELECT "a;b" FROM "delete"', 'standby', false],
    ['SELECT "weird "" ; insert" FROM t', 'standby', false],
    ['SELECT U&"d\\0061t" FROM t', 'standby', false],
    ["SELECT 'nextval(' || 'x' || ')'", 'standby', false],
    ['SELECT a$b FROM t', 'standby', false], // $ inside an identifier is no dollar quote
    ['SELECT $1, $2 FROM t', 'standby', false],
    ["SELECT 'unterminated", 'standby', false],
    ['SELECT 1 /* unterminated', 'standby', false],
    ['SELECT $x$ unterminated', 'standby', false],
  ]);
});

test('standard_conforming_strings off: backslash escapes a quote in plain strings', () => {
  // With it on, 'a\' ends at the second quote and "; DELETE" is a second statement.
  assert.deepEqual(classify("SELECT 'a\\'; DELETE FROM t; '", opts), { target: 'primary', write: true });
  assert.deepEqual(classify("SELECT 'a\\'; DELETE FROM t; '", { ...opts, standardConformingStrings: false }), { target: 'standby', write: false });
});

test('writes: DML, DDL, maintenance go to the primary and write', () => {
  check([
    ['INSERT INTO t VALUES (1)', 'primary', true],
    ['insert into t select * from u', 'primary', true],
    ['UPDATE t SET a = 1', 'primary', true],
    ['DELETE FROM t', 'primary', true],
    ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE', 'primary', true],
    ['CREATE TABLE t (id int)', 'primary', true],
    ['CREATE TEMP TABLE t AS SELECT 1', 'primary', true],
    ['ALTER TABLE t ADD COLUMN b int', 'primary', true],
    ['DROP TABLE t', 'primary', true],
    ['TRUNCATE t', 'primary', true],
    ['GRANT SELECT ON t TO bob', 'primary', true],
    ['REVOKE ALL ON t FROM bob', 'primary', true],
    ['COMMENT ON TABLE t IS \'x\'', 'primary', true],
    ['VACUUM t', 'primary', true],
    ['VACUUM (ANALYZE) t', 'primary', true],
    ['ANALYZE t', 'primary', true],
    ['CLUSTER t', 'primary', true],
    ['REINDEX TABLE t', 'primary', true],
    ['REFRESH MATERIALIZED VIEW v', 'primary', true],
    ['LOCK TABLE t IN ACCESS EXCLUSIVE MODE', 'primary', true],
    ['DO $$ BEGIN PERFORM 1; END $$', 'primary', true],
    ['CALL proc(1)', 'primary', true],
    ['NOTIFY chan, \'payload\'', 'primary', true],
    ['SECURITY LABEL ON TABLE t IS \'x\'', 'primary', true],
    ['IMPORT FOREIGN SCHEMA s FROM SERVER f INTO l', 'primary', true],
    ['REASSIGN OWNED BY a TO b', 'primary', true],
    ['WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x', 'primary', true],
    ['WITH x AS (SELECT 1), y AS (SELECT 2) DELETE FROM t USING x', 'primary', true],
    ['WITH x AS (SELECT 1) UPDATE t SET a = 1', 'primary', true],
  ]);
});

test('unknown or unparseable statements default to the primary', () => {
  check([
    ['FROBNICATE everything', 'primary', true],
    ["'just a string'", 'primary', true],
    ['42', 'primary', true],
    ['"quoted" thing', 'primary', true],
  ]);
});

test('SELECT that writes or locks goes to the primary', () => {
  check([
    ['SELECT * FROM t FOR UPDATE', 'primary', true],
    ['SELECT * FROM t WHERE id = 1 FOR UPDATE SKIP LOCKED', 'primary', true],
    ['SELECT * FROM t FOR SHARE', 'primary', true],
    ['SELECT * FROM t FOR NO KEY UPDATE', 'primary', true],
    ['SELECT * FROM t FOR KEY SHARE', 'primary', true],
    ['select * from t for update of t nowait', 'primary', true],
    ['SELECT * FROM (SELECT * FROM t FOR UPDATE) s', 'primary', true],
    ['SELECT * INTO new_t FROM t', 'primary', true],
    ['SELECT * INTO TEMP new_t FROM t', 'primary', true],
    ["select nextval('s')", 'primary', true],
    ["SELECT NEXTVAL('s')", 'primary', true],
    ["SELECT pg_catalog.nextval('s')", 'primary', true],
    ["SELECT \"nextval\"('s')", 'primary', true],
    ["SELECT \"pg_catalog\".\"nextval\"('s')", 'primary', true],
    ["SELECT nextval /* c */ ('s')", 'primary', true],
    ["SELECT setval('s', 10)", 'primary', true],
    ['SELECT my_writer(1)', 'primary', true],
    ['SELECT MY_WRITER(1)', 'primary', true],
    ['SELECT billing.charge(1)', 'primary', true],
    ['SELECT Billing.Charge(1)', 'primary', true],
    ['SELECT audit_log(1)', 'primary', true],
    ['SELECT pg_advisory_lock(1)', 'primary', true],
    ['SELECT pg_try_advisory_xact_lock(1)', 'primary', true], // builtin: advisory locks live on the primary
    ['SELECT lo_import(\'/tmp/x\')', 'primary', true],
    ["SELECT dblink_connect('c', 'dbname=x')", 'primary', true],
    ['SELECT lo_get(42)', 'primary', true],
    ['SELECT txid_current()', 'primary', true],
    ["SELECT pg_notify('c', 'x')", 'primary', true],
    ['SELECT a FROM t WHERE b = (SELECT nextval(\'s\'))', 'primary', true],
    ['VALUES (nextval(\'s\'))', 'primary', true],
    ['WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x', 'primary', true],
    ['WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM x', 'primary', true],
    ['WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT count(*) FROM x', 'primary', true],
    ['WITH a AS (SELECT 1), x AS MATERIALIZED (DELETE FROM t RETURNING *) SELECT 1', 'primary', true],
    ['WITH x AS NOT MATERIALIZED (DELETE FROM t RETURNING *) SELECT 1', 'primary', true],
  ]);
  // Session-bound reads: primary, but not a write.
  check([
    ["SELECT currval('s')", 'primary', false],
    ['SELECT lastval()', 'primary', false],
    ['SELECT pg_backend_pid()', 'primary', false],
    ['SELECT pg_current_wal_lsn()', 'primary', false],
  ]);
});

test('reads of one server\'s own state go where the session\'s state lives: the primary (NODE_LOCAL)', () => {
  check([
    // Views of this server's sessions, transactions, cursors, statements and locks.
    ['SELECT gid FROM pg_prepared_xacts', 'primary', false],
    ['SELECT * FROM pg_catalog.pg_prepared_xacts WHERE gid = $1', 'primary', false],
    ['SELECT name FROM pg_cursors', 'primary', false],
    ['select name from PG_CURSORS', 'primary', false],
    ['SELECT 1 FROM "pg_cursors" WHERE name = $1', 'primary', false],
    ['SELECT name, statement FROM pg_prepared_statements', 'primary', false],
    ['SELECT pid, state FROM pg_stat_activity WHERE pid <> $1', 'primary', false],
    ['SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation', 'primary', false],
    ['SELECT * FROM pg_stat_xact_user_tables', 'primary', false],
    ['SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()', 'primary', false],
    ['SELECT * FROM pg_backend_memory_contexts', 'primary', false],
    ['WITH a AS (SELECT * FROM pg_stat_activity) SELECT count(*) FROM a', 'primary', false],
    // Functions of the session's own server, transaction and connection.
    ['SELECT txid_current_if_assigned()', 'primary', false],
    ['SELECT pg_current_xact_id_if_assigned()', 'primary', false],
    ['SELECT txid_current_snapshot()', 'primary', false],
    ['SELECT pg_current_snapshot()', 'primary', false],
    ['SELECT inet_server_addr(), inet_server_port()', 'primary', false],
    ['SELECT inet_client_port()', 'primary', false],
    ['SELECT pg_stat_get_backend_pid(1)', 'primary', false],
    ['SELECT pg_stat_get_xact_numscans(16384)', 'primary', false],
    ['SELECT pg_blocking_pids(123)', 'primary', false],
    ['SELECT pg_listening_channels()', 'primary', false],
    ['SELECT pg_is_in_recovery()', 'primary', false],
    ['SELECT pg_my_temp_schema()', 'primary', false],
    ['SELECT pg_trigger_depth()', 'primary', false],
    // Server-wide statistics and catalogs stay balanced; a name in a string is no reference.
    ['SELECT * FROM pg_stat_user_tables', 'standby', false],
    ['SELECT * FROM pg_stat_database', 'standby', false],
    ['SELECT relname FROM pg_class', 'standby', false],
    ["SELECT 'pg_locks' AS name", 'standby', false],
    ['SELECT pg_locks_x FROM t', 'standby', false],
  ]);
});

test('EXPLAIN runs nothing unless ANALYZE; EXPLAIN ANALYZE is classified by its statement', () => {
  check([
    ['EXPLAIN SELECT 1', 'standby', false],
    ['EXPLAIN INSERT INTO t VALUES (1)', 'standby', false],
    ['EXPLAIN VERBOSE DELETE FROM t', 'standby', false],
    ['EXPLAIN ANALYZE SELECT * FROM t', 'standby', false],
    ['EXPLAIN ANALYZE INSERT INTO t VALUES (1)', 'primary', true],
    ['explain analyse update t set a = 1', 'primary', true],
    ['EXPLAIN ANALYZE VERBOSE DELETE FROM t', 'primary', true],
    ["EXPLAIN ANALYZE SELECT nextval('s')", 'primary', true],
    ['EXPLAIN (ANALYZE) INSERT INTO t VALUES (1)', 'primary', true],
    ['EXPLAIN (ANALYZE true, BUFFERS) INSERT INTO t VALUES (1)', 'primary', true],
    ['EXPLAIN (FORMAT JSON, ANALYZE on) DELETE FROM t', 'primary', true],
    ['EXPLAIN (ANALYZE 1) DELETE FROM t', 'primary', true],
    ['EXPLAIN (ANALYZE false) DELETE FROM t', 'standby', false],
    ['EXPLAIN (ANALYZE off, COSTS off) DELETE FROM t', 'standby', false],
    ['EXPLAIN (ANALYZE 0) DELETE FROM t', 'standby', false],
    ['EXPLAIN (COSTS off) SELECT * FROM t FOR UPDATE', 'standby', false],
    ['EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE', 'primary', true],
  ]);
});

test('COPY: FROM writes; TO STDOUT reads on a standby; TO a file runs on the primary', () => {
  check([
    ['COPY t FROM STDIN', 'primary', true],
    ['COPY t (a, b) FROM STDIN WITH (FORMAT csv)', 'primary', true],
    ['copy t from \'/tmp/x\'', 'primary', true],
    ['COPY t TO STDOUT', 'standby', false],
    ['COPY t (a, b) TO STDOUT (FORMAT csv)', 'standby', false],
    ['COPY (SELECT * FROM t WHERE a > 1) TO STDOUT', 'standby', false],
    ['COPY (SELECT * FROM t FOR UPDATE) TO STDOUT', 'primary', true],
    ["COPY (SELECT nextval('s')) TO STDOUT", 'primary', true],
    ['COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT', 'primary', true],
    ['COPY (DELETE FROM t RETURNING *) TO STDOUT', 'primary', true],
    ['COPY (SELECT currval(\'s\')) TO STDOUT', 'primary', false],
    ["COPY t TO '/tmp/out.csv'", 'primary', false],
    ["COPY t TO PROGRAM 'gzip > /tmp/x'", 'primary', false],
    ['COPY (SELECT (1)) TO STDOUT', 'standby', false],
  ]);
});

test('session state goes to both; transactions are marked', () => {
  check([
    ["SET search_path = app, public", 'both', false],
    ["SET LOCAL statement_timeout = '5s'", 'both', false],
    ["SET SESSION application_name TO 'x'", 'both', false],
    ['SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY', 'both', false],
    ['SET TRANSACTION ISOLATION LEVEL REPEATABLE READ', 'both', false],
    ['SET TRANSACTION READ ONLY', 'both', false],
    ['RESET ALL', 'both', false],
    ['RESET search_path', 'both', false],
    ['DISCARD ALL', 'both', false],
    ['SAVEPOINT sp1', 'both', false],
    ['RELEASE SAVEPOINT sp1', 'both', false],
    ['RELEASE sp1', 'both', false],
    ['ROLLBACK TO SAVEPOINT sp1', 'both', false],
    ['ROLLBACK TO sp1', 'both', false],
    ['ROLLBACK WORK TO SAVEPOINT sp1', 'both', false],
    ['LOAD \'auto_explain\'', 'both', false],
    ['BEGIN', 'both', false, 'begin'],
    ['begin;', 'both', false, 'begin'],
    ['BEGIN WORK', 'both', false, 'begin'],
    ['BEGIN TRANSACTION', 'both', false, 'begin'],
    ['BEGIN ISOLATION LEVEL REPEATABLE READ', 'both', false, 'begin'],
    ['BEGIN READ ONLY', 'both', false, 'begin'],
    ['START TRANSACTION', 'both', false, 'begin'],
    ['START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY', 'both', false, 'begin'],
    ['COMMIT', 'both', false, 'end'],
    ['COMMIT WORK', 'both', false, 'end'],
    ['COMMIT AND NO CHAIN', 'both', false, 'end'],
    ['COMMIT AND CHAIN', 'both', false, 'begin'],
    ['END', 'both', false, 'end'],
    ['END TRANSACTION', 'both', false, 'end'],
    ['ROLLBACK', 'both', false, 'end'],
    ['ROLLBACK AND CHAIN', 'both', false, 'begin'],
    ['ABORT', 'both', false, 'end'],
  ]);
});

test('transaction modes a standby refuses pin the session to the primary', () => {
  // A hot standby refuses read-write mode and SERIALIZABLE ("cannot set transaction
  // read-write mode during recovery"), so these must not reach it.
  check([
    ['BEGIN READ WRITE', 'primary', true, 'begin'],
    ['BEGIN ISOLATION LEVEL SERIALIZABLE', 'primary', true, 'begin'],
    ['START TRANSACTION READ WRITE', 'primary', true, 'begin'],
    ['START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE', 'primary', true, 'begin'],
    ['SET TRANSACTION READ WRITE', 'primary', true],
    ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'primary', true],
    ["SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", 'primary', true],
  ]);
});

test('the same modes set through variables; session defaults a standby cannot honour', () => {
  check([
    ['SET transaction_read_only = off', 'primary', true],
    ["SET transaction_read_only TO 'false'", 'primary', true],
    ['SET transaction_read_only = on', 'both', false],
    ["SET transaction_isolation = 'serializable'", 'primary', true],
    ["SET LOCAL transaction_isolation TO 'repeatable read'", 'both', false],
    ['SET default_transaction_read_only = off', 'both', false], // accepted by a standby, later reads work
    ['SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', 'both', false],
  ]);
  // Accepted by a standby, but every later query there fails: the session must stop using it.
  assert.deepEqual(classify("SET default_transaction_isolation = 'serializable'", opts), { target: 'both', write: false, standbyUnusable: true });
  assert.deepEqual(classify('SET default_transaction_isolation TO SERIALIZABLE', opts), { target: 'both', write: false, standbyUnusable: true });
  assert.deepEqual(classify('SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE', opts), { target: 'both', write: false, standbyUnusable: true });
  assert.deepEqual(classify("SET default_transaction_isolation = 'read committed'", opts), { target: 'both', write: false });
  assert.deepEqual(classify("SET default_transaction_isolation = 'serializable'; SELECT 1", opts), { target: 'primary', write: false, standbyUnusable: true });
});

test('temporary objects exist on the primary only: the session must stop reading from the standby', () => {
  const temp = { target: 'primary', write: true, standbyUnusable: true };
  assert.deepEqual(classify('CREATE TEMP TABLE tt (id int)', opts), temp);
  assert.deepEqual(classify('create temporary table tt as select 1', opts), temp);
  assert.deepEqual(classify('CREATE GLOBAL TEMPORARY TABLE tt (id int)', opts), temp);
  assert.deepEqual(classify('CREATE OR REPLACE TEMP VIEW v AS SELECT 1', opts), temp);
  assert.deepEqual(classify('CREATE TEMP SEQUENCE s', opts), temp);
  assert.deepEqual(classify('CREATE TABLE pg_temp.tt (id int)', opts), temp);
  assert.deepEqual(classify('CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$', opts), temp);
  assert.deepEqual(classify('SELECT * INTO TEMP tt FROM t', opts), temp);
  assert.deepEqual(classify('SELECT * INTO TEMPORARY TABLE tt FROM t', opts), temp);
  assert.deepEqual(classify('CREATE TEMP TABLE tt (id int); SELECT 1', opts), { ...temp, target: 'primary' });
  // Not temporary:
  assert.deepEqual(classify('CREATE TABLE temps (id int)', opts), { target: 'primary', write: true });
  assert.deepEqual(classify('CREATE TABLE t (temp int)', opts), { target: 'primary', write: true });
  assert.deepEqual(classify('CREATE TABLE t (pg_temp int)', opts), { target: 'primary', write: true });
  assert.deepEqual(classify('CREATE INDEX temp ON t (a)', opts), { target: 'primary', write: true });
  assert.deepEqual(classify('SELECT * INTO tt FROM t', opts), { target: 'primary', write: true });
  assert.deepEqual(classify("SELECT 'CREATE TEMP TABLE x'", opts), { target: 'standby', write: false });
});

test('two-phase commit, LISTEN, cursors', () => {
  check([
    ["PREPARE TRANSACTION 'gx1'", 'primary', true, 'end'],
    ["COMMIT PREPARED 'gx1'", 'primary', true],
    ["ROLLBACK PREPARED 'gx1'", 'primary', true],
    ['LISTEN chan', 'primary', false],
    ['UNLISTEN *', 'primary', false],
    ['DECLARE c CURSOR FOR SELECT 1', 'primary', false],
    ['FETCH 10 FROM c', 'primary', false],
    ['MOVE NEXT IN c', 'primary', false],
    ['CLOSE c', 'primary', false],
    ['CHECKPOINT', 'primary', false],
  ]);
});

test('PREPARE is classified by its statement and names it; EXECUTE goes to the primary', () => {
  assert.deepEqual(classify('PREPARE q1 AS SELECT * FROM t WHERE id = $1', opts), { target: 'standby', write: false, prepared: 'q1' });
  assert.deepEqual(classify('PREPARE q2 (int, text) AS INSERT INTO t VALUES ($1, $2)', opts), { target: 'primary', write: true, prepared: 'q2' });
  assert.deepEqual(classify('prepare Q3(int) as select nextval(\'s\')', opts), { target: 'primary', write: true, prepared: 'q3' });
  assert.deepEqual(classify('PREPARE "MixedCase" AS SELECT 1', opts), { target: 'standby', write: false, prepared: 'MixedCase' });
  assert.deepEqual(classify('PREPARE q4 AS SELECT 1 FOR UPDATE', opts), { target: 'primary', write: true, prepared: 'q4' });
  assert.deepEqual(classify('EXECUTE q1(42)', opts), { target: 'primary', write: false, prepared: 'q1' });
  assert.deepEqual(classify('DEALLOCATE q1', opts), { target: 'both', write: false, prepared: 'q1' });
  assert.deepEqual(classify('DEALLOCATE PREPARE q1', opts), { target: 'both', write: false, prepared: 'q1' });
  assert.deepEqual(classify('DEALLOCATE ALL', opts), { target: 'both', write: false });
  assert.deepEqual(classify('PREPARE broken', opts), { target: 'primary', write: true, prepared: 'broken' });
});

test('SELECT set_config changes session state: both', () => {
  check([
    ["SELECT set_config('search_path', 'app', false)", 'both', false],
    ["SELECT pg_catalog.set_config('work_mem', '64MB', true)", 'both', false],
    ["SELECT set_config('a.b', 'c', false), nextval('s')", 'primary', true],
  ]);
});

test('multi-statement strings go to the primary; a single trailing semicolon is one statement', () => {
  check([
    ['SELECT 1; SELECT 2', 'primary', false],
    ['SELECT 1;SELECT 2;', 'primary', false],
    ['SELECT 1; INSERT INTO t VALUES (1)', 'primary', true],
    ['INSERT INTO t VALUES (1); SELECT 1', 'primary', true],
    ['BEGIN; SELECT 1', 'primary', false, 'begin'],
    ['BEGIN; INSERT INTO t VALUES (1); COMMIT', 'primary', true, 'end'],
    ['SELECT 1; COMMIT', 'primary', false, 'end'],
    ['SET a = 1; SET b = 2', 'primary', false],
    ['SELECT 1 -- comment\n; -- another\n SELECT 2', 'primary', false],
    ['SELECT 1; /* only a comment */', 'standby', false],
    ['SELECT 1; -- trailing', 'standby', false],
  ]);
});

test('SQL-standard function bodies keep their semicolons inside one statement', () => {
  check([
    ['CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END', 'primary', true],
    ['CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; SELECT 1', 'primary', true],
    ["CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql", 'primary', true],
  ]);
  // The END inside the body must not read as a transaction end.
  assert.equal(classify('CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END', opts).txn, undefined);
});

test('empty and comment-only queries: any backend answers', () => {
  check([
    ['', 'standby', false],
    ['   ', 'standby', false],
    [';', 'standby', false],
    ['-- nothing', 'standby', false],
    ['/* nothing */', 'standby', false],
  ]);
});

test('the built-in write functions apply even with an empty list', () => {
  check(
    [
      ["SELECT nextval('s')", 'primary', true],
      ['SELECT my_writer(1)', 'standby', false],
    ],
    { writeFunctions: [] },
  );
});

test('results are fresh objects: mutating one does not affect the next', () => {
  const a = classify('SELECT 1', opts);
  a.target = 'primary';
  assert.equal(classify('SELECT 1', opts).target, 'standby');
});

test('never throws, whatever the input', () => {
  const junk = ["'", '"', '$', '$$', '$a', '/*', '--', 'E\'', 'U&', 'U&"', '(', ')', ')))', '((((', 'EXPLAIN (', 'COPY (', 'PREPARE x (', 'SET', 'BEGIN ATOMIC', 'CREATE FUNCTION BEGIN ATOMIC', '\u0000\uFFFF', 'ü', 'SELECT ü(1)'];
  for (const s of junk) assert.doesNotThrow(() => classify(s, opts), JSON.stringify(s));
  // Random byte soup built from SQL fragments.
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const parts = ['SELECT', ' ', "'", '"', '$$', '$t$', '(', ')', ';', '--', '\n', '/*', '*/', 'E', "\\'", 'for', 'update', 'nextval', '.', ','];
  for (let i = 0; i < 2000; i++) {
    let s = '';
    for (let j = 0; j < 12; j++) s += parts[Math.floor(rnd() * parts.length)];
    const r = classify(s, opts);
    assert.ok(r.target === 'standby' || r.target === 'primary' || r.target === 'both');
  }
});

test('SHOW POOL_… is recognised here, in any case and spacing, alone', () => {
  const pool = (sql: string) => classify(sql, opts).showPool;
  assert.equal(pool('SHOW POOL_NODES'), 'pool_nodes');
  assert.equal(pool('  show\n\tPool_Version ;'), 'pool_version');
  assert.equal(pool('/* c */ SHOW pool_whatever'), 'pool_whatever');
  assert.equal(pool('SHOW search_path'), undefined);
  assert.equal(pool('SHOW "pool_nodes"'), undefined);
  assert.equal(pool('SHOW POOL_NODES; SELECT 1'), undefined);
  assert.equal(pool('SELECT 1'), undefined);
});

test('SET pgwatchdog.… is the proxy\'s own setting, recognised alone, with its string value', () => {
  const ps = (sql: string) => classify(sql, opts).proxySetting;
  assert.deepEqual(ps("SET pgwatchdog.read_after_lsn = '0/16B3748'"), { name: 'read_after_lsn', value: '0/16B3748' });
  assert.deepEqual(ps("set session PgWatchdog.Read_After_Lsn to '1/0' ;"), { name: 'read_after_lsn', value: '1/0' });
  assert.deepEqual(ps("SET pgwatchdog.other = 'x'"), { name: 'other', value: 'x' });
  assert.deepEqual(ps('SET pgwatchdog.read_after_lsn = 12'), { name: 'read_after_lsn', value: null }, 'not a string: a bad value');
  assert.deepEqual(ps("SET pgwatchdog.read_after_lsn = 'a' 'b'"), { name: 'read_after_lsn', value: null });
  assert.equal(classify("SET pgwatchdog.read_after_lsn = '0/1'", opts).target, 'both');
  assert.equal(ps("SET pgwatchdog.read_after_lsn = '0/1'; SELECT 1"), undefined, 'inside a multi-statement query it is PostgreSQL\'s');
  assert.equal(ps("SET search_path = 'x'"), undefined);
  assert.equal(ps("SET \"pgwatchdog\".read_after_lsn = '0/1'"), undefined);
});
