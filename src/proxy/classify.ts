// SQL routing classification for read/write splitting, with pgpool-II's semantics:
//   standby — read-only, may be load-balanced;
//   primary — writes, locks, session-bound or unknown statements (unknown defaults here:
//             sending a write to a standby fails, sending a read to the primary only costs
//             balance);
//   both    — session state every backend of the session must share (SET, SAVEPOINT, BEGIN …).
// `write` tells the session to stick to the primary until the transaction ends, so a read
// after a write in the same transaction sees it.
//
// It runs on every statement, so it is one pass of a hand-written tokenizer (no regular
// expressions over the text, no token arrays): comments, strings (standard, E'', U&'',
// dollar-quoted) and quoted identifiers are skipped as units, so keywords inside them never
// count. Statements whose first keyword settles the answer are skipped to their end with a
// cheaper scan that only looks for ';'.

export type Target = 'standby' | 'primary' | 'both';

export interface Classification {
  target: Target;
  write: boolean;
  /** 'begin' when the statement opens a transaction block (COMMIT AND CHAIN too: it opens
   * the next one), 'end' when it closes one. ReadyForQuery's status stays authoritative. */
  txn?: 'begin' | 'end';
  /** For PREPARE / EXECUTE / DEALLOCATE: the prepared statement's name (lower-cased unless
   * quoted), so the session can route EXECUTE where PREPARE went. */
  prepared?: string;
  /** Set when the statement makes the session's standby unable to serve it any more, so the
   * session should send all further reads to the primary:
   * - a hot standby accepts `SET default_transaction_isolation = serializable` (or SET SESSION
   *   CHARACTERISTICS … SERIALIZABLE) but then fails every query with "cannot use
   *   serializable mode in a hot standby";
   * - a temporary object (CREATE TEMP …, SELECT … INTO TEMP, anything in pg_temp) exists on
   *   the primary only, and later reads of it would fail on the standby. */
  standbyUnusable?: true;
  /** `SHOW POOL_…` or `SHOW WATCHDOG_…` alone (the one place they are recognised): the
   * command's name, lower-cased (e.g. "pool_nodes"). The proxy answers the ones it knows
   * itself (show.ts). */
  showPool?: string;
  /** `SET pgwatchdog.<name> = '<value>'` (or TO): a setting of the proxy's own, which it
   * answers and never sends to PostgreSQL (causal.ts). `value` is the string's content, null
   * when the value is not one plain string. */
  proxySetting?: { name: string; value: string | null };
}

export interface ClassifyOptions {
  /** Functions that write: calls route to the primary (case-insensitive; "schema.name" or
   * "name"; a trailing '*' matches a prefix). */
  writeFunctions: readonly string[];
  /** The session's standard_conforming_strings (default on): when off, backslashes escape
   * quotes in plain '…' strings too. */
  standardConformingStrings?: boolean;
}

// ---- tokenizer ---------------------------------------------------------------------------

const enum Tok {
  EOF,
  Word, // unquoted identifier or keyword, lower-cased
  QIdent, // "quoted identifier", as written
  Str, // any string constant (skipped)
  Num,
  Param, // $1
  LParen,
  RParen,
  Semi,
  Comma,
  Dot,
  Op, // anything else, one character at a time
}

// Character classes by code (ASCII); everything >= 0x80 counts as an identifier letter, as
// in PostgreSQL's scanner.
const IDENT_START = new Uint8Array(128);
const IDENT_CONT = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z_]/.test(ch)) IDENT_START[c] = 1;
  if (/[A-Za-z0-9_$]/.test(ch)) IDENT_CONT[c] = 1;
}
const isIdentStart = (c: number) => c >= 128 || IDENT_START[c] === 1;
const isIdentCont = (c: number) => c >= 128 || IDENT_CONT[c] === 1;
const isDigit = (c: number) => c >= 48 && c <= 57;
const isSpace = (c: number) => c === 32 || (c >= 9 && c <= 13);

const QUOTE = 39; // '
const DQUOTE = 34; // "
const BACKSLASH = 92;
const DOLLAR = 36;

/** Whether s[start, end) is the keyword `w` (given in lower case), in any case. */
function keywordAt(s: string, start: number, end: number, w: string): boolean {
  if (end - start !== w.length) return false;
  for (let i = 0; i < w.length; i++) {
    const c = s.charCodeAt(start + i);
    const wc = w.charCodeAt(i);
    if (c !== wc && !(c >= 65 && c <= 90 && c + 32 === wc)) return false;
  }
  return true;
}

/** The text of a token: words lower-cased, quoted identifiers unquoted as written. */
function tokenText(s: string, kind: Tok, start: number, end: number): string {
  if (kind === Tok.Word) return s.slice(start, end).toLowerCase();
  if (kind === Tok.QIdent) {
    const a = s.charCodeAt(start) === DQUOTE ? start + 1 : start + 3; // "x" or U&"x"
    const b = end > a && s.charCodeAt(end - 1) === DQUOTE ? end - 1 : end;
    const raw = s.slice(a, b);
    return raw.includes('""') ? raw.replaceAll('""', '"') : raw;
  }
  return s.slice(start, end);
}

/** A tokenizer reused across calls (classification is synchronous, so one is enough). The
 * current token is [start, end); its text is only built when asked for. */
class Lexer {
  s = '';
  pos = 0;
  kind: Tok = Tok.EOF;
  start = 0;
  end = 0;
  private backslashInPlainStrings = false;
  private cached: string | undefined;

  reset(s: string, backslashInPlainStrings: boolean): void {
    this.s = s;
    this.pos = 0;
    this.kind = Tok.EOF;
    this.backslashInPlainStrings = backslashInPlainStrings;
  }

  /** Word: lower-cased; QIdent: the identifier as written; otherwise the raw token. */
  get text(): string {
    if (this.cached === undefined) this.cached = tokenText(this.s, this.kind, this.start, this.end);
    return this.cached;
  }

  /** True when the current token is the (unquoted) keyword `w`. */
  is(w: string): boolean {
    return this.kind === Tok.Word && keywordAt(this.s, this.start, this.end, w);
  }

  /** Advances to the next token. */
  next(): Tok {
    this.cached = undefined;
    this.start = this.skipSpace(this.pos);
    const k = (this.kind = this.scan(this.start));
    this.end = this.pos;
    return k;
  }

  /** Skips white space and comments from p. */
  private skipSpace(p: number): number {
    const s = this.s;
    const len = s.length;
    while (p < len) {
      const c = s.charCodeAt(p);
      if (isSpace(c)) p++;
      else if (c === 45 /* - */ && s.charCodeAt(p + 1) === 45) {
        const nl = s.indexOf('\n', p + 2);
        p = nl < 0 ? len : nl + 1;
      } else if (c === 47 /* / */ && s.charCodeAt(p + 1) === 42 /* * */) p = this.skipBlockComment(p + 2);
      else break;
    }
    return p;
  }

  /** Scans the token at p (no white space there); sets pos after it. */
  private scan(p: number): Tok {
    const s = this.s;
    const len = s.length;
    if (p >= len) {
      this.pos = p;
      return Tok.EOF;
    }
    const c = s.charCodeAt(p);
    if (isIdentStart(c)) {
      const c1 = s.charCodeAt(p + 1);
      if (c1 === QUOTE) {
        // E'…' processes backslashes; B'', X'', N'' follow the plain-string rule.
        if (c === 101 || c === 69) {
          this.pos = this.skipString(p + 2, true);
          return Tok.Str;
        }
        if (c === 98 || c === 66 || c === 120 || c === 88 || c === 110 || c === 78) {
          this.pos = this.skipString(p + 2, this.backslashInPlainStrings);
          return Tok.Str;
        }
      } else if ((c === 117 || c === 85) && c1 === 38 /* & */) {
        const c2 = s.charCodeAt(p + 2);
        if (c2 === QUOTE) {
          this.pos = this.skipString(p + 3, false);
          return Tok.Str;
        }
        if (c2 === DQUOTE) {
          return this.quotedIdent(p + 2);
        }
      }
      let q = p + 1;
      while (q < len && isIdentCont(s.charCodeAt(q))) q++;
      this.pos = q;
      return Tok.Word;
    }
    switch (c) {
      case QUOTE:
        this.pos = this.skipString(p + 1, this.backslashInPlainStrings);
        return Tok.Str;
      case DQUOTE:
        return this.quotedIdent(p);
      case DOLLAR: {
        const c1 = s.charCodeAt(p + 1);
        if (isDigit(c1)) {
          let q = p + 2;
          while (q < len && isDigit(s.charCodeAt(q))) q++;
          this.pos = q;
          return Tok.Param;
        }
        // $tag$ … $tag$ (tag may be empty); a '$' that opens no tag is an operator char.
        let q = p + 1;
        if (q < len && c1 !== DOLLAR && isIdentStart(c1)) {
          q++;
          while (q < len && isIdentCont(s.charCodeAt(q)) && s.charCodeAt(q) !== DOLLAR) q++;
        }
        if (s.charCodeAt(q) === DOLLAR) {
          const tag = s.slice(p, q + 1);
          const end = s.indexOf(tag, q + 1);
          this.pos = end < 0 ? len : end + tag.length;
          return Tok.Str;
        }
        this.pos = p + 1;
        return Tok.Op;
      }
      case 40:
        this.pos = p + 1;
        return Tok.LParen;
      case 41:
        this.pos = p + 1;
        return Tok.RParen;
      case 59:
        this.pos = p + 1;
        return Tok.Semi;
      case 44:
        this.pos = p + 1;
        return Tok.Comma;
      case 46:
        if (!isDigit(s.charCodeAt(p + 1))) {
          this.pos = p + 1;
          return Tok.Dot;
        }
        break;
    }
    if (isDigit(c) || c === 46) {
      let q = p + 1;
      while (q < len) {
        const d = s.charCodeAt(q);
        if (isDigit(d) || d === 46 || (d < 128 && IDENT_CONT[d] === 1 && d !== DOLLAR)) q++;
        else break;
      }
      this.pos = q;
      return Tok.Num;
    }
    this.pos = p + 1;
    return Tok.Op;
  }

  /** Position after a nested block comment starting after its opening. Unterminated: end. */
  private skipBlockComment(p: number): number {
    const s = this.s;
    let depth = 1;
    while (p < s.length) {
      const c = s.charCodeAt(p);
      if (c === 42 && s.charCodeAt(p + 1) === 47) {
        p += 2;
        if (--depth === 0) return p;
      } else if (c === 47 && s.charCodeAt(p + 1) === 42) {
        p += 2;
        depth++;
      } else p++;
    }
    return p;
  }

  /** Position after a '…' string whose body starts at p. Unterminated: end. */
  private skipString(p: number, backslash: boolean): number {
    const s = this.s;
    const len = s.length;
    if (!backslash) {
      for (;;) {
        const q = s.indexOf("'", p);
        if (q < 0) return len;
        if (s.charCodeAt(q + 1) === QUOTE) p = q + 2;
        else return q + 1;
      }
    }
    while (p < len) {
      const c = s.charCodeAt(p);
      if (c === BACKSLASH) p += 2;
      else if (c === QUOTE) {
        if (s.charCodeAt(p + 1) === QUOTE) p += 2;
        else return p + 1;
      } else p++;
    }
    return len;
  }

  /** A "quoted identifier" whose opening quote is at p. Unterminated: to the end. */
  private quotedIdent(p: number): Tok {
    const s = this.s;
    p++;
    for (;;) {
      const q = s.indexOf('"', p);
      if (q < 0) {
        p = s.length;
        break;
      }
      if (s.charCodeAt(q + 1) === DQUOTE) p = q + 2;
      else {
        p = q + 1;
        break;
      }
    }
    this.pos = p;
    return Tok.QIdent;
  }
}

// ---- function lists ------------------------------------------------------------------------

interface FunctionRules {
  names: Set<string>; // unqualified
  qualified: Set<string>; // schema.name
  unqualifiedOfQualified: Set<string>; // name part of qualified entries (search_path may pick them)
  prefixes: string[];
}

// Functions that must run on the primary whatever the configuration says, and whether they
// write. Sequences and xid assignment fail on a standby; advisory locks and pg_backend_pid()
// must meet the session's primary connection (drivers compare the pid with BackendKeyData);
// currval/lastval only make sense where nextval ran; dblink connections are session state
// on the connection that opened them.
const BUILTIN_WRITE = ['nextval', 'setval', 'txid_current', 'pg_current_xact_id', 'pg_notify', 'pg_switch_wal', 'pg_create_restore_point',
  'pg_create_physical_replication_slot', 'pg_create_logical_replication_slot', 'pg_drop_replication_slot', 'lo_*', 'pg_advisory_*', 'pg_try_advisory_*', 'dblink*'];
const BUILTIN_PRIMARY = new Set(['currval', 'lastval', 'pg_backend_pid', 'pg_current_wal_lsn', 'pg_current_wal_insert_lsn', 'pg_current_wal_flush_lsn',
  'pg_cancel_backend', 'pg_terminate_backend',
  // NODE_LOCAL functions: they describe the server that runs them — its sessions, the session's
  // transaction and connection, its role — and the session's server is its primary (the one
  // whose pid the client was given). On a standby they would describe another server.
  'txid_current_if_assigned', 'pg_current_xact_id_if_assigned', 'txid_current_snapshot', 'pg_current_snapshot',
  'inet_server_addr', 'inet_server_port', 'inet_client_addr', 'inet_client_port', 'pg_blocking_pids', 'pg_safe_snapshot_blocking_pids',
  'pg_listening_channels', 'pg_notification_queue_usage', 'pg_is_in_recovery', 'pg_my_temp_schema', 'pg_trigger_depth',
  'pg_stat_get_activity', 'pg_lock_status', 'pg_cursor', 'pg_prepared_statement', 'pg_prepared_xact', 'pg_get_backend_memory_contexts']);
const BUILTIN_PRIMARY_PREFIXES = ['pg_stat_get_backend_', 'pg_stat_get_xact_'];
// NODE_LOCAL relations: views of one server's own sessions, transactions, cursors, prepared
// statements and locks (drivers recovering two-phase transactions read pg_prepared_xacts; some
// check pg_cursors before CLOSE). Reads of them go to the primary, like the functions above.
const NODE_LOCAL_RELATIONS = new Set(['pg_prepared_xacts', 'pg_cursors', 'pg_prepared_statements', 'pg_stat_activity', 'pg_locks',
  'pg_stat_ssl', 'pg_stat_gssapi', 'pg_backend_memory_contexts']);
const NODE_LOCAL_RELATION_PREFIX = 'pg_stat_xact_';

function isPrimaryFunction(name: string): boolean {
  if (BUILTIN_PRIMARY.has(name)) return true;
  for (const p of BUILTIN_PRIMARY_PREFIXES) if (name.startsWith(p)) return true;
  return false;
}

/** Whether the token s[start, end) names a NODE_LOCAL relation (checked cheaply: most words do not start with pg_). */
function isNodeLocalRelation(s: string, kind: Tok, start: number, end: number): boolean {
  const a = kind === Tok.QIdent ? start + 1 : start;
  if (end - a < 8 || (s.charCodeAt(a) | 0x20) !== 0x70 || (s.charCodeAt(a + 1) | 0x20) !== 0x67 || s.charCodeAt(a + 2) !== 0x5f) return false;
  const name = tokenText(s, kind, start, end);
  return NODE_LOCAL_RELATIONS.has(name) || name.startsWith(NODE_LOCAL_RELATION_PREFIX);
}

const rulesCache = new WeakMap<readonly string[], FunctionRules>();

function compileRules(list: readonly string[]): FunctionRules {
  let r = rulesCache.get(list);
  if (r) return r;
  r = { names: new Set(), qualified: new Set(), unqualifiedOfQualified: new Set(), prefixes: [] };
  for (const raw of [...BUILTIN_WRITE, ...list]) {
    const f = raw.trim().toLowerCase();
    if (f.endsWith('*')) r.prefixes.push(f.slice(0, -1));
    else if (f.includes('.')) {
      r.qualified.add(f);
      r.unqualifiedOfQualified.add(f.slice(f.lastIndexOf('.') + 1));
    } else r.names.add(f);
  }
  rulesCache.set(list, r);
  return r;
}

/**
 * Every function whose call can make a read more (a write, a node-local read, set_config), as
 * unqualified lower-case names and name prefixes — a superset of what the classifier checks,
 * for native forwarding (splice.c), which sends a statement calling any of them to JavaScript.
 */
export function callsThatMatter(writeFunctions: readonly string[]): { names: string[]; prefixes: string[] } {
  const r = compileRules(writeFunctions);
  const unqualified = (f: string) => f.slice(f.lastIndexOf('.') + 1);
  const names = new Set([...r.names, ...r.unqualifiedOfQualified, ...BUILTIN_PRIMARY, 'set_config']);
  const prefixes = new Set([...r.prefixes.map(unqualified), ...BUILTIN_PRIMARY_PREFIXES]);
  return { names: [...names], prefixes: [...prefixes] };
}

function isWriteFunction(rules: FunctionRules, name: string, schema: string | undefined): boolean {
  if (rules.names.has(name)) return true;
  if (schema === undefined ? rules.unqualifiedOfQualified.has(name) : rules.qualified.has(`${schema}.${name}`)) return true;
  for (const p of rules.prefixes) if (name.startsWith(p)) return true;
  return false;
}

// ---- the classifier --------------------------------------------------------------------------

const STANDBY: Classification = { target: 'standby', write: false };
const WRITE: Classification = { target: 'primary', write: true };
const PRIMARY_READ: Classification = { target: 'primary', write: false };
const BOTH: Classification = { target: 'both', write: false };


interface QueryFlags {
  write: boolean;
  primary: boolean;
  setConfig: boolean;
  temp?: boolean;
}

const WRITE_TEMP: Classification = { target: 'primary', write: true, standbyUnusable: true };

class Classifier {
  rules: FunctionRules = compileRules([]);

  constructor(private readonly lx: Lexer) {}

  /** Skips to the end of the statement (';' or end of text). */
  private skipRest(): void {
    const lx = this.lx;
    let k = lx.kind;
    while (k !== Tok.Semi && k !== Tok.EOF) k = lx.next();
  }

  /** Classifies the statement whose first token is current; leaves the lexer on ';' or EOF. */
  statement(): Classification {
    const lx = this.lx;
    const k = lx.kind;
    if (k === Tok.LParen) return this.query(false);
    if (k !== Tok.Word) {
      this.skipRest();
      return WRITE; // unrecognised
    }
    switch (lx.text) {
      case 'select':
      case 'with':
      case 'values':
      case 'table':
        return this.query(false);
      case 'show':
        return this.show();
      case 'explain':
        return this.explain();
      case 'copy':
        return this.copy();
      case 'set':
        return this.set();
      case 'reset':
      case 'discard':
      case 'savepoint':
      case 'release':
      case 'load':
        this.skipRest();
        return BOTH;
      case 'deallocate':
        return this.deallocate();
      case 'begin':
      case 'start':
        return this.begin();
      case 'commit':
      case 'end':
      case 'abort':
        return this.commit();
      case 'rollback':
        return this.rollback();
      case 'prepare':
        return this.prepare();
      case 'execute':
        return this.execute();
      case 'listen':
      case 'unlisten':
      case 'declare':
      case 'fetch':
      case 'move':
      case 'close':
      case 'checkpoint':
        this.skipRest();
        return PRIMARY_READ;
      case 'create':
        return this.create();
      default:
        // DML, DDL, VACUUM, ANALYZE, LOCK, NOTIFY, DO, CALL, GRANT, … and anything unknown.
        this.skipRest();
        return WRITE;
    }
  }

  /** SELECT / WITH / VALUES / TABLE (current token is its first): scans for anything that
   * makes it more than a read. With stopAtParen, ends at the ')' closing an enclosing '('. */
  private query(stopAtParen: boolean): Classification {
    const f = this.scanQuery(stopAtParen);
    return f.write ? (f.temp ? WRITE_TEMP : WRITE) : f.primary ? PRIMARY_READ : f.setConfig ? BOTH : STANDBY;
  }

  private scanQuery(stopAtParen: boolean): QueryFlags {
    const lx = this.lx;
    const src = lx.s;
    const flags: QueryFlags = { write: false, primary: false, setConfig: false };
    // The last three tokens (kind and span), enough for "schema . func (" and "as ( insert".
    let k1 = Tok.EOF, s1 = 0, e1 = 0, k2 = Tok.EOF, s2 = 0, e2 = 0, k3 = Tok.EOF, s3 = 0, e3 = 0;
    let depth = 0;
    let afterFor = 0; // 1: after FOR; 2: after FOR NO / FOR KEY
    let k: Tok = lx.kind;
    for (;;) {
      if (k === Tok.Semi || k === Tok.EOF) break;
      if (k === Tok.Word) {
        const n = lx.end - lx.start; // most words are none of these keywords: test length first
        if (afterFor === 1) {
          if (lx.is('update') || lx.is('share')) flags.write = true;
          afterFor = lx.is('no') || lx.is('key') ? 2 : 0;
        } else if (afterFor === 2) {
          if (lx.is('update') || lx.is('share') || lx.is('key')) flags.write = true;
          afterFor = 0;
        } else if (n === 3 && lx.is('for')) afterFor = 1;
        else if (n === 4 && lx.is('into')) {
          flags.write = true; // SELECT INTO creates a table: a temporary one?
          if (lx.next() === Tok.Word && (lx.is('temp') || lx.is('temporary') || lx.is('pg_temp'))) flags.temp = true;
        }
        else if ((n === 6 || n === 5) && (lx.is('insert') || lx.is('update') || lx.is('delete') || lx.is('merge'))) {
          // A data-modifying CTE "AS ( INSERT", or a WITH's main statement ") DELETE".
          if (
            (k1 === Tok.LParen && k2 === Tok.Word && (keywordAt(src, s2, e2, 'as') || keywordAt(src, s2, e2, 'materialized'))) ||
            (k1 === Tok.RParen && depth === 0)
          ) {
            flags.write = true;
          }
        }
      } else {
        afterFor = 0;
        if (k === Tok.LParen) {
          depth++;
          if (k1 === Tok.Word || k1 === Tok.QIdent) {
            // A function call: only now is the name's text built.
            const name = tokenText(src, k1, s1, e1).toLowerCase();
            const schema = k2 === Tok.Dot && (k3 === Tok.Word || k3 === Tok.QIdent) ? tokenText(src, k3, s3, e3).toLowerCase() : undefined;
            if (isWriteFunction(this.rules, name, schema)) flags.write = true;
            else if (isPrimaryFunction(name)) flags.primary = true;
            else if (name === 'set_config') flags.setConfig = true;
          }
        } else if (k === Tok.RParen) {
          if (depth === 0 && stopAtParen) return flags;
          depth--;
        }
      }
      if ((k === Tok.Word || k === Tok.QIdent) && !flags.primary && isNodeLocalRelation(src, k, lx.start, lx.end)) flags.primary = true;
      if (flags.write) {
        // Nothing can make it less than a write: skip the rest (or to the enclosing ')').
        if (stopAtParen) this.skipToCloseParen(depth);
        else this.skipRest();
        return flags;
      }
      k3 = k2;
      s3 = s2;
      e3 = e2;
      k2 = k1;
      s2 = s1;
      e2 = e1;
      k1 = k;
      s1 = lx.start;
      e1 = lx.end;
      k = lx.next();
    }
    return flags;
  }

  /** From the token after the current one, skips to the ')' that closes `depth` open levels
   * plus the enclosing one (or to ';'/EOF); the lexer is left on it. */
  private skipToCloseParen(depth: number): void {
    const lx = this.lx;
    let k = lx.next();
    for (;;) {
      if (k === Tok.Semi || k === Tok.EOF) return;
      if (k === Tok.LParen) depth++;
      else if (k === Tok.RParen && depth-- === 0) return;
      k = lx.next();
    }
  }

  /** SHOW name: a read, and SHOW POOL_… or WATCHDOG_… a command of the proxy's own. */
  private show(): Classification {
    const lx = this.lx;
    const k = lx.next();
    const name = k === Tok.Word && (lx.text.startsWith('pool_') || lx.text.startsWith('watchdog_')) ? lx.text : undefined;
    this.skipRest();
    return name === undefined ? STANDBY : { target: 'standby', write: false, showPool: name };
  }

  /** EXPLAIN [ (options) ] [ANALYZE] [VERBOSE] stmt: without ANALYZE nothing runs, so any
   * statement may be explained on a standby; with it, the statement runs. */
  private explain(): Classification {
    const lx = this.lx;
    let analyze = false;
    let k = lx.next();
    if (k === Tok.LParen) {
      // (option [value], …)
      let opt = '';
      let value = '';
      for (k = lx.next(); k !== Tok.RParen && k !== Tok.Semi && k !== Tok.EOF; k = lx.next()) {
        if (k === Tok.Comma) {
          if (opt === 'analyze' || opt === 'analyse') analyze = value !== 'false' && value !== 'off' && value !== '0';
          opt = value = '';
        } else if (opt === '') opt = lx.text;
        else value = lx.text;
      }
      if (opt === 'analyze' || opt === 'analyse') analyze = value !== 'false' && value !== 'off' && value !== '0';
      if (k === Tok.RParen) k = lx.next();
    } else {
      while (k === Tok.Word && (lx.text === 'analyze' || lx.text === 'analyse' || lx.text === 'verbose')) {
        if (lx.text !== 'verbose') analyze = true;
        k = lx.next();
      }
    }
    if (!analyze) {
      this.skipRest();
      return STANDBY;
    }
    const inner = this.statement();
    return { target: inner.target === 'both' ? 'primary' : inner.target, write: inner.write };
  }

  /** COPY … FROM writes; COPY … TO STDOUT reads (a table, or a query classified as such);
   * COPY … TO a server file or program runs on the primary. */
  private copy(): Classification {
    const lx = this.lx;
    let k = lx.next();
    let inner: QueryFlags = { write: false, primary: false, setConfig: false };
    if (k === Tok.LParen) {
      k = lx.next();
      if (k === Tok.LParen || (k === Tok.Word && (lx.text === 'select' || lx.text === 'with' || lx.text === 'values' || lx.text === 'table'))) {
        inner = this.scanQuery(true);
      } else {
        inner.write = true; // INSERT/UPDATE/DELETE … RETURNING
        this.skipToCloseParen(0);
      }
      k = lx.kind === Tok.RParen ? lx.next() : lx.kind;
    }
    // Table name and column list, then FROM or TO.
    let depth = 0;
    for (; k !== Tok.Semi && k !== Tok.EOF; k = lx.next()) {
      if (k === Tok.LParen) depth++;
      else if (k === Tok.RParen) depth--;
      else if (depth === 0 && k === Tok.Word && (lx.text === 'from' || lx.text === 'to')) break;
    }
    if (k !== Tok.Word || lx.text === 'from') {
      this.skipRest();
      return WRITE;
    }
    k = lx.next();
    const toStdout = k === Tok.Word && lx.text === 'stdout';
    this.skipRest();
    if (inner.write) return WRITE;
    if (!toStdout || inner.primary) return PRIMARY_READ;
    return inner.setConfig ? PRIMARY_READ : STANDBY;
  }

  /** SET goes to every backend of the session; SET TRANSACTION modes a standby refuses
   * (READ WRITE, SERIALIZABLE, SNAPSHOT) go to the primary and pin the session to it. */
  private set(): Classification {
    const lx = this.lx;
    let k = lx.next();
    if (k === Tok.Word && (lx.text === 'local' || lx.text === 'session')) {
      k = lx.next();
      if (lx.is('characteristics')) {
        // SET SESSION CHARACTERISTICS AS TRANSACTION …: defaults for later transactions.
        return this.transactionModes(lx.next(), true) ? { target: 'both', write: false, standbyUnusable: true } : BOTH;
      }
    }
    if (k === Tok.Word && lx.text === 'pgwatchdog') return this.proxySetting();
    if (k === Tok.Word && lx.text === 'transaction') {
      const m = this.transactionModes(lx.next());
      return m ? WRITE : BOTH;
    }
    // The same modes set through their variables.
    if (k === Tok.Word && (lx.text === 'transaction_read_only' || lx.text === 'transaction_isolation' || lx.text === 'default_transaction_isolation')) {
      const name = lx.text;
      let value = '';
      for (k = lx.next(); k !== Tok.Semi && k !== Tok.EOF; k = lx.next()) {
        if (k === Tok.Word || k === Tok.Str || k === Tok.Num) value = lx.text.replaceAll("'", '').toLowerCase();
      }
      if (name === 'transaction_read_only') return value === 'off' || value === 'false' || value === '0' || value === 'no' ? WRITE : BOTH;
      if (value !== 'serializable') return BOTH;
      return name === 'transaction_isolation' ? WRITE : { target: 'both', write: false, standbyUnusable: true };
    }
    this.skipRest();
    return BOTH;
  }

  /** SET pgwatchdog.name {=|TO} 'value' (the lexer is on `pgwatchdog`). */
  private proxySetting(): Classification {
    const lx = this.lx;
    if (lx.next() !== Tok.Dot || lx.next() !== Tok.Word) {
      this.skipRest();
      return BOTH;
    }
    const name = lx.text;
    let k = lx.next();
    if (k === Tok.Word && lx.text === 'to') k = lx.next();
    else if (k === Tok.Op && lx.text === '=') k = lx.next();
    else k = Tok.EOF;
    let value: string | null = null;
    if (k === Tok.Str) {
      const raw = lx.text;
      if (raw.length >= 2 && raw.startsWith("'") && raw.endsWith("'")) value = raw.slice(1, -1).replaceAll("''", "'");
      k = lx.next();
    }
    if (k !== Tok.Semi && k !== Tok.EOF) value = null;
    this.skipRest();
    return { target: 'both', write: false, proxySetting: { name, value } };
  }

  /** Scans transaction modes to the end of the statement; true if a standby cannot run them
   * (with onlySerializable, true for SERIALIZABLE only: a READ WRITE default is harmless). */
  private transactionModes(k: Tok, onlySerializable = false): boolean {
    const lx = this.lx;
    let prev = '';
    let primaryOnly = false;
    for (; k !== Tok.Semi && k !== Tok.EOF; k = lx.next()) {
      if (k !== Tok.Word) continue;
      const t = lx.text;
      if (t === 'serializable' || (!onlySerializable && ((prev === 'read' && t === 'write') || t === 'snapshot'))) primaryOnly = true;
      prev = t;
    }
    return primaryOnly;
  }

  private begin(): Classification {
    const lx = this.lx;
    let k = lx.next();
    if (k === Tok.Word && (lx.text === 'work' || lx.text === 'transaction')) k = lx.next();
    const primaryOnly = this.transactionModes(k);
    return primaryOnly ? { target: 'primary', write: true, txn: 'begin' } : { target: 'both', write: false, txn: 'begin' };
  }

  private commit(): Classification {
    const lx = this.lx;
    const k = lx.next();
    if (k === Tok.Word && lx.text === 'prepared') {
      this.skipRest();
      return WRITE; // COMMIT PREPARED: outside any transaction block
    }
    return this.chainOrEnd(k);
  }

  private rollback(): Classification {
    const lx = this.lx;
    let k = lx.next();
    if (k === Tok.Word && lx.text === 'prepared') {
      this.skipRest();
      return WRITE;
    }
    if (k === Tok.Word && (lx.text === 'work' || lx.text === 'transaction')) k = lx.next();
    if (k === Tok.Word && lx.text === 'to') {
      this.skipRest();
      return BOTH; // ROLLBACK TO SAVEPOINT: the transaction goes on
    }
    return this.chainOrEnd(k);
  }

  private chainOrEnd(k: Tok): Classification {
    const lx = this.lx;
    let prev = '';
    let chain = false;
    for (; k !== Tok.Semi && k !== Tok.EOF; k = lx.next()) {
      if (k !== Tok.Word) continue;
      if (lx.text === 'chain' && prev !== 'no') chain = true;
      prev = lx.text;
    }
    return { target: 'both', write: false, txn: chain ? 'begin' : 'end' };
  }

  private nameAt(k: Tok): string | undefined {
    return k === Tok.Word || k === Tok.QIdent ? this.lx.text : undefined;
  }

  /** PREPARE TRANSACTION ends the transaction block on the primary; PREPARE name AS stmt is
   * classified by its statement. */
  private prepare(): Classification {
    const lx = this.lx;
    let k = lx.next();
    if (k === Tok.Word && lx.text === 'transaction') {
      this.skipRest();
      return { target: 'primary', write: true, txn: 'end' };
    }
    const name = this.nameAt(k);
    k = lx.next();
    if (k === Tok.LParen) {
      this.skipToCloseParen(0); // the parameter type list
      k = lx.kind === Tok.RParen ? lx.next() : lx.kind;
    }
    if (name === undefined || k !== Tok.Word || lx.text !== 'as') {
      this.skipRest();
      return { ...WRITE, ...(name !== undefined ? { prepared: name } : {}) };
    }
    lx.next();
    const inner = this.statement();
    return { target: inner.target, write: inner.write, ...(inner.txn ? { txn: inner.txn } : {}), ...(name !== undefined ? { prepared: name } : {}) };
  }

  private execute(): Classification {
    const name = this.nameAt(this.lx.next());
    this.skipRest();
    return name !== undefined ? { target: 'primary', write: false, prepared: name } : PRIMARY_READ;
  }

  private deallocate(): Classification {
    const lx = this.lx;
    let k = lx.next();
    if (k === Tok.Word && lx.text === 'prepare') k = lx.next();
    const name = this.nameAt(k);
    this.skipRest();
    return name !== undefined && name !== 'all' ? { target: 'both', write: false, prepared: name } : BOTH;
  }

  /** CREATE is a write; only its end needs care: a SQL-standard function body (BEGIN ATOMIC
   * … END) holds ';'s that must not split the statement. */
  private create(): Classification {
    const lx = this.lx;
    let prev = '';
    let temp = false;
    let prefix = true; // still in CREATE [OR REPLACE] [GLOBAL|LOCAL] [TEMP[ORARY]]
    let n = 0;
    let k = lx.next();
    for (; k !== Tok.Semi && k !== Tok.EOF; k = lx.next(), n++) {
      if (k === Tok.Word) {
        if (prefix) {
          if (lx.is('temp') || lx.is('temporary')) temp = true;
          else if (!(lx.is('or') || lx.is('replace') || lx.is('global') || lx.is('local'))) prefix = false;
        }
        if (prev === 'begin' && lx.is('atomic')) {
          this.skipAtomicBody();
          return temp ? WRITE_TEMP : WRITE;
        }
        prev = lx.text;
      } else {
        prefix = false;
        // An object created in pg_temp: "pg_temp ." among the first tokens (the name).
        if (k === Tok.Dot && n < 8 && prev === 'pg_temp') temp = true;
        prev = '';
      }
    }
    return temp ? WRITE_TEMP : WRITE;
  }

  private skipAtomicBody(): void {
    const lx = this.lx;
    let cases = 0;
    for (let k = lx.next(); k !== Tok.EOF; k = lx.next()) {
      if (k !== Tok.Word) continue;
      if (lx.text === 'case') cases++;
      else if (lx.text === 'end') {
        if (cases === 0) {
          lx.next();
          this.skipRest();
          return;
        }
        cases--;
      }
    }
  }
}

// One of each, reused: classification is synchronous and never re-entered.
const lexer = new Lexer();
const classifier = new Classifier(lexer);

/** Classifies one simple-protocol query string (or one Parse's statement) for routing. */
export function classify(sql: string, opts: ClassifyOptions): Classification {
  const lx = lexer;
  lx.reset(sql, opts.standardConformingStrings === false);
  const c = classifier;
  c.rules = compileRules(opts.writeFunctions);
  let count = 0;
  let first: Classification = STANDBY; // the empty query: any backend answers it
  let write = false;
  let txn: 'begin' | 'end' | undefined;
  let standbyUnusable = false;
  for (let k = lx.next(); k !== Tok.EOF; k = lx.next()) {
    if (k === Tok.Semi) continue;
    const r = c.statement();
    count++;
    if (count === 1) first = r;
    write ||= r.write;
    if (r.txn) txn = r.txn;
    if (r.standbyUnusable) standbyUnusable = true;
    if (lx.kind === Tok.EOF) break;
  }
  if (count <= 1) return { ...first }; // a copy: the shared constants must not be mutated
  // Several statements run as one implicit transaction on one backend: the primary.
  const multi: Classification = { target: 'primary', write };
  if (txn) multi.txn = txn;
  if (standbyUnusable) multi.standbyUnusable = true;
  return multi;
}
