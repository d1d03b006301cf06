// What a client session has made of its backend connection that a fresh connection must be
// given again before the session can move there (a failover of the primary, a standby leaving
// service), and what makes that impossible. Pure: statement texts in, a record out; the
// session (session.ts) feeds it and replays it; an online restart (src/takeover) carries it.
//
// Re-created: session-level SET / RESET (RESET ALL, DISCARD ALL), SQL-level PREPARE /
// DEALLOCATE, LISTEN / UNLISTEN. Transactional effects inside a block (SET, LISTEN) are held
// until COMMIT and dropped by ROLLBACK; SET LOCAL and SET TRANSACTION never outlive the block.
// PREPARE and DEALLOCATE are not transactional in PostgreSQL, so they count at once.
// Blockers (the session cannot move; it ends with 57P01 and the log names the blocker):
// temporary objects (until DISCARD TEMP / ALL), session advisory locks (until
// pg_advisory_unlock_all or DISCARD ALL; a single pg_advisory_unlock is not counted),
// cursors WITH HOLD (until CLOSE / CLOSE ALL / DISCARD ALL), and session-level
// set_config(…, false) (its value is not tracked, so it is not lost silently either).
// Not tracked at all: settings changed inside functions or DO blocks, and the implicit
// transaction of a multi-statement query that fails (its SETs are recorded nonetheless).
// Named protocol-level statements are not here: the extended-protocol batcher keeps their
// Parse and re-Parses them on the connection that first lacks them (extended.ts).

export type Blocker = 'temporary objects' | 'advisory locks' | 'WITH HOLD cursors' | 'session-level set_config';

export interface SessionRecord {
  /** Session-level settings, in the order last set: lower-case name → the statement that sets it. */
  readonly sets: ReadonlyMap<string, string>;
  /** Channels listened to: channel (as PostgreSQL folds it) → its LISTEN statement. */
  readonly listens: ReadonlyMap<string, string>;
  /** SQL-level prepared statements: name (folded) → its PREPARE statement. */
  readonly prepared: ReadonlyMap<string, string>;
  readonly holdCursors: ReadonlySet<string>;
  readonly temp: boolean;
  readonly advisory: boolean;
  readonly setConfig: boolean;
  /** Transactional effects of the open transaction block, applied at COMMIT. */
  readonly pending: readonly Effect[];
}

type Effect = { kind: 'set'; name: string; sql: string | null } | { kind: 'resetAll' } | { kind: 'listen'; channel: string; sql: string | null } | { kind: 'unlistenAll' } | { kind: 'temp' };

export const EMPTY_RECORD: SessionRecord = Object.freeze({
  sets: new Map(),
  listens: new Map(),
  prepared: new Map(),
  holdCursors: new Set<string>(),
  temp: false,
  advisory: false,
  setConfig: false,
  pending: [],
});

/** Where the statement text starts, as the session knows it. */
export interface StatementContext {
  /** Inside a transaction block (BEGIN sent). */
  inTxn: boolean;
  /** The block has failed (its COMMIT rolls back). */
  failed: boolean;
}

// First words of statements that may change the record.
const STARTERS = new Set(['set', 'reset', 'listen', 'unlisten', 'prepare', 'deallocate', 'discard', 'create', 'declare', 'close']);
const CALLS = /advisory|set_config/i;

/**
 * A cheap first look (every write on the JavaScript path passes here): one statement whose
 * first word starts none of the above, calling nothing that matters, cannot change the record.
 * Anything else (a comment first, several statements, a block's effects pending) gets the full look.
 */
function mayChange(rec: SessionRecord, sql: string): boolean {
  if (rec.pending.length > 0) return true;
  let n = sql.length;
  const semi = sql.indexOf(';');
  if (semi >= 0) {
    // A trailing semicolon (pgbench sends one) is not a second statement.
    for (let k = semi + 1; k < n; k++) {
      const c = sql.charCodeAt(k);
      if (c > 32 && c !== 59) return true;
    }
    n = semi;
  }
  let i = 0;
  while (i < n && sql.charCodeAt(i) <= 32) i++;
  let w = i;
  for (; w < n; w++) {
    const c = sql.charCodeAt(w) | 0x20;
    if (c < 97 || c > 122) break;
  }
  if (w === i) return true; // not a plain word first (a comment, a parenthesis …)
  const first = sql.slice(i, w).toLowerCase();
  if (STARTERS.has(first)) return true;
  if (first === 'select' && /\binto\b/i.test(sql)) return true; // SELECT … INTO TEMP
  return sql.indexOf('(') >= 0 && CALLS.test(sql);
}

/** The record after the statements of `sql` (one Query, or one Parse) ran. Unchanged texts return `rec` itself. */
export function noteStatements(rec: SessionRecord, sql: string, ctx: StatementContext): SessionRecord {
  if (!mayChange(rec, sql)) return rec;
  let r: Mutable = thaw(rec);
  let inTxn = ctx.inTxn;
  let failed = ctx.failed;
  let changed = false;
  for (const st of statements(sql)) {
    const before = r;
    const out = noteOne(r, st, inTxn, failed);
    r = out.r;
    inTxn = out.inTxn;
    failed = out.failed;
    changed ||= r !== before || out.changed;
  }
  return changed ? freeze(r) : rec;
}

/** What stops the record from being re-created elsewhere (none: an empty list). */
export function blockers(rec: SessionRecord): Blocker[] {
  const b: Blocker[] = [];
  if (rec.temp) b.push('temporary objects');
  if (rec.advisory) b.push('advisory locks');
  if (rec.holdCursors.size > 0) b.push('WITH HOLD cursors');
  if (rec.setConfig) b.push('session-level set_config');
  return b;
}

/** The live state of a session's connection that decides whether it can move now. */
export interface LiveState {
  /** The transaction status of the last ReadyForQuery (I, T, E as a byte). */
  txStatus: number;
  copy: boolean;
  /** A request is on its way or its answer is owed. */
  inFlight: boolean;
}

const IDLE = 0x49; // 'I'

/** Why the session cannot move to a fresh connection now (undefined: it can). */
export function moveBlocker(rec: SessionRecord, live: LiveState): string | undefined {
  if (live.copy) return 'in COPY';
  if (live.txStatus !== IDLE) return 'inside a transaction';
  if (live.inFlight) return 'a statement was running';
  const b = blockers(rec);
  return b.length === 0 ? undefined : `holds ${b.join(', ')}`;
}

/** One Query text that re-creates the record on a fresh connection (after its startup SETs), or undefined when there is nothing to re-create. */
export function replay(rec: SessionRecord): string | undefined {
  const parts = [...rec.sets.values(), ...rec.prepared.values(), ...rec.listens.values()];
  return parts.length === 0 ? undefined : parts.join('; ');
}

/** The record as plain JSON (online restart: src/takeover). */
export interface RecordWire {
  sets: [string, string][];
  listens: [string, string][];
  prepared: [string, string][];
  holdCursors: string[];
  temp: boolean;
  advisory: boolean;
  setConfig: boolean;
}

export function recordToWire(r: SessionRecord): RecordWire {
  return { sets: [...r.sets], listens: [...r.listens], prepared: [...r.prepared], holdCursors: [...r.holdCursors], temp: r.temp, advisory: r.advisory, setConfig: r.setConfig };
}

/** (A session moves only between transactions: nothing is pending.) */
export function recordFromWire(w: RecordWire | undefined): SessionRecord {
  if (w === undefined) return EMPTY_RECORD;
  return freeze({ sets: new Map(w.sets), listens: new Map(w.listens), prepared: new Map(w.prepared), holdCursors: new Set(w.holdCursors), temp: w.temp, advisory: w.advisory, setConfig: w.setConfig, pending: [] });
}

// ---- one statement ---------------------------------------------------------------------------

interface Mutable {
  sets: Map<string, string>;
  listens: Map<string, string>;
  prepared: Map<string, string>;
  holdCursors: Set<string>;
  temp: boolean;
  advisory: boolean;
  setConfig: boolean;
  pending: Effect[];
}

function thaw(r: SessionRecord): Mutable {
  return { sets: new Map(r.sets), listens: new Map(r.listens), prepared: new Map(r.prepared), holdCursors: new Set(r.holdCursors), temp: r.temp, advisory: r.advisory, setConfig: r.setConfig, pending: [...r.pending] };
}

function freeze(r: Mutable): SessionRecord {
  return r;
}

interface Stmt {
  text: string;
  /** Words and other tokens; words lower-cased, quoted identifiers with their quotes. */
  toks: string[];
}

function noteOne(r: Mutable, st: Stmt, inTxn: boolean, failed: boolean): { r: Mutable; inTxn: boolean; failed: boolean; changed: boolean } {
  const t = st.toks;
  const w0 = t[0] ?? '';
  const w1 = t[1] ?? '';
  const effect = (e: Effect): boolean => {
    if (inTxn) r.pending.push(e);
    else apply(r, e);
    return true;
  };
  let changed = false;
  switch (w0) {
    case 'begin':
    case 'start':
      return { r, inTxn: true, failed: false, changed };
    case 'commit':
    case 'end':
      if (w1 === 'prepared') break;
      if (!failed) for (const e of r.pending) apply(r, e);
      changed = r.pending.length > 0;
      r.pending = [];
      return { r, inTxn: false, failed: false, changed };
    case 'rollback':
    case 'abort':
      if (w1 === 'to' || w1 === 'prepared') break; // (to a savepoint: what came before it stays pending)
      changed = r.pending.length > 0;
      r.pending = [];
      return { r, inTxn: false, failed: false, changed };
    case 'prepare':
      if (w1 === 'transaction') {
        changed = r.pending.length > 0;
        r.pending = [];
        return { r, inTxn: false, failed: false, changed };
      }
      if (w1 !== '') {
        r.prepared.delete(fold(w1));
        r.prepared.set(fold(w1), st.text);
        changed = true;
      }
      break;
    case 'deallocate': {
      const name = w1 === 'prepare' ? (t[2] ?? '') : w1;
      if (name === 'all') r.prepared.clear();
      else r.prepared.delete(fold(name));
      changed = true;
      break;
    }
    case 'set':
      changed = noteSet(st, effect);
      break;
    case 'reset':
      if (w1 === 'all') changed = effect({ kind: 'resetAll' });
      else if (w1 !== '') changed = effect({ kind: 'set', name: settingName(t.slice(1)), sql: null });
      break;
    case 'discard':
      if (w1 === 'all') {
        // DISCARD ALL cannot run inside a block: everything goes at once.
        Object.assign(r, thaw(EMPTY_RECORD));
        changed = true;
      } else if (w1 === 'temp' || w1 === 'temporary') {
        r.temp = false;
        changed = true;
      }
      break;
    case 'listen':
      if (w1 !== '') changed = effect({ kind: 'listen', channel: fold(w1), sql: st.text });
      break;
    case 'unlisten':
      if (w1 === '*') changed = effect({ kind: 'unlistenAll' });
      else if (w1 !== '') changed = effect({ kind: 'listen', channel: fold(w1), sql: null });
      break;
    case 'declare': {
      // DECLARE name [BINARY] [ASENSITIVE|INSENSITIVE] [[NO] SCROLL] CURSOR {WITH|WITHOUT} HOLD FOR …
      const c = t.indexOf('cursor');
      if (c > 0 && t[c + 1] === 'with' && t[c + 2] === 'hold') {
        r.holdCursors.add(fold(w1));
        changed = true;
      }
      break;
    }
    case 'close':
      if (w1 === 'all') r.holdCursors.clear();
      else r.holdCursors.delete(fold(w1));
      changed = true;
      break;
    case 'create': {
      // CREATE [GLOBAL|LOCAL] {TEMP|TEMPORARY} …, or an object named pg_temp.…
      const head = t.slice(1, 4);
      if (head.includes('temp') || head.includes('temporary') || t.includes('pg_temp')) changed = effect({ kind: 'temp' });
      break;
    }
    default:
      break;
  }
  // Calls anywhere in the statement (SELECT pg_advisory_lock(1), SELECT set_config(…)).
  for (let i = 0; i + 1 < t.length; i++) {
    if (t[i + 1] !== '(') continue;
    const f = t[i]!;
    if (f === 'pg_advisory_lock' || f === 'pg_advisory_lock_shared' || f === 'pg_try_advisory_lock' || f === 'pg_try_advisory_lock_shared') {
      r.advisory = true;
      changed = true;
    } else if (f === 'pg_advisory_unlock_all') {
      r.advisory = false;
      changed = true;
    } else if (f === 'set_config' && !isLocalSetConfig(t, i + 1)) {
      r.setConfig = true;
      changed = true;
    }
  }
  // SELECT … INTO TEMP t
  if (w0 === 'select' && t.includes('into') && (t.includes('temp') || t.includes('temporary'))) {
    effect({ kind: 'temp' });
    changed = true;
  }
  if (w0 === 'commit' || w0 === 'end' || w0 === 'rollback' || w0 === 'abort') inTxn = false;
  return { r, inTxn, failed, changed };
}

/** set_config(name, value, is_local): true only when the third argument is literally true. */
function isLocalSetConfig(t: string[], open: number): boolean {
  let depth = 0;
  let commas = 0;
  for (let i = open; i < t.length; i++) {
    const x = t[i]!;
    if (x === '(') depth++;
    else if (x === ')') {
      if (--depth === 0) return false;
    } else if (x === ',' && depth === 1) commas++;
    else if (depth === 1 && commas === 2) return x === 'true' || x === "'t'" || x === "'true'" || x === "'on'";
  }
  return false;
}

function noteSet(st: Stmt, effect: (e: Effect) => boolean): boolean {
  const t = st.toks;
  let i = 1;
  if (t[i] === 'local') return false; // ends with the transaction
  if (t[i] === 'transaction' || t[i] === 'constraints') return false;
  if (t[i] === 'session') {
    i++;
    if (t[i] === 'characteristics') return effect({ kind: 'set', name: 'session characteristics', sql: st.text });
    if (t[i] === 'authorization') return effect({ kind: 'set', name: 'session authorization', sql: st.text });
  }
  const rest = t.slice(i);
  if (rest[0] === 'time' && rest[1] === 'zone') return effect({ kind: 'set', name: 'timezone', sql: st.text });
  if (rest[0] === 'names') return effect({ kind: 'set', name: 'client_encoding', sql: st.text });
  if (rest[0] === 'schema') return effect({ kind: 'set', name: 'search_path', sql: st.text });
  if (rest[0] === 'role') return effect({ kind: 'set', name: 'role', sql: st.text });
  const name = settingName(rest);
  if (name === '' || name.startsWith('pgwatchdog.')) return false; // the proxy's own settings are not PostgreSQL's
  return effect({ kind: 'set', name, sql: st.text });
}

/** A setting's name from the tokens that start with it (name, or class.name). */
function settingName(t: string[]): string {
  let n = fold(t[0] ?? '');
  if (t[1] === '.' && t[2] !== undefined) n += '.' + fold(t[2]);
  return n;
}

function apply(r: Mutable, e: Effect): void {
  switch (e.kind) {
    case 'set':
      r.sets.delete(e.name);
      if (e.sql !== null) r.sets.set(e.name, e.sql);
      // RESET SESSION AUTHORIZATION resets the role too, as PostgreSQL does.
      if (e.name === 'session authorization' && e.sql === null) r.sets.delete('role');
      break;
    case 'resetAll':
      // RESET ALL leaves session authorization and the transaction characteristics' siblings
      // alone only in part; a fresh connection with its startup SETs is the same state.
      r.sets.clear();
      break;
    case 'listen':
      r.listens.delete(e.channel);
      if (e.sql !== null) r.listens.set(e.channel, e.sql);
      break;
    case 'unlistenAll':
      r.listens.clear();
      break;
    case 'temp':
      r.temp = true;
      break;
  }
}

/** An identifier as PostgreSQL folds it: quoted kept as written, else lower case (tokens are lowered already). */
function fold(tok: string): string {
  return tok.startsWith('"') ? tok.slice(1, -1).replace(/""/g, '"') : tok;
}

// ---- statements and tokens -------------------------------------------------------------------

/** Splits a text into statements (at top-level semicolons) with their tokens. */
function statements(sql: string): Stmt[] {
  const out: Stmt[] = [];
  let toks: string[] = [];
  let start = 0;
  let i = 0;
  const n = sql.length;
  const end = (at: number): void => {
    if (toks.length > 0) out.push({ text: sql.slice(start, at).trim(), toks });
    toks = [];
    start = at + 1;
  };
  while (i < n) {
    const c = sql[i]!;
    if (c === ' ' || c === '\n' || c === '\t' || c === '\r' || c === '\f') {
      i++;
    } else if (c === '-' && sql[i + 1] === '-') {
      while (i < n && sql[i] !== '\n') i++;
    } else if (c === '/' && sql[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      }
    } else if (c === ';') {
      end(i);
      i++;
    } else if (c === "'" || c === '"') {
      const s = i++;
      // E'…' escapes are rare in the statements looked at here; a backslash before a quote only
      // ends a token early, which at worst leaves a statement unrecognised.
      while (i < n) {
        if (sql[i] === c) {
          if (sql[i + 1] === c) i += 2;
          else break;
        } else i++;
      }
      i++;
      toks.push(sql.slice(s, i));
    } else if (c === '$') {
      // $tag$ … $tag$ (dollar quoting), or $1.
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 64));
      if (m) {
        const close = sql.indexOf(m[0], i + m[0].length);
        const stop = close < 0 ? n : close + m[0].length;
        toks.push(sql.slice(i, stop));
        i = stop;
      } else {
        const s = i++;
        while (i < n && /[0-9]/.test(sql[i]!)) i++;
        toks.push(sql.slice(s, i));
      }
    } else if (/[A-Za-z_\u0080-\uffff]/.test(c)) {
      const s = i++;
      while (i < n && /[A-Za-z0-9_$\u0080-\uffff]/.test(sql[i]!)) i++;
      toks.push(sql.slice(s, i).toLowerCase());
    } else if (/[0-9]/.test(c)) {
      const s = i++;
      while (i < n && /[0-9.eE]/.test(sql[i]!)) i++;
      toks.push(sql.slice(s, i));
    } else {
      toks.push(c);
      i++;
    }
  }
  end(n);
  return out;
}
