// The extended query protocol of one session: messages up to Sync (or Flush) form a batch
// sent to one leg, chosen when the batch is written: the primary if anything in it needs the
// primary, else the standby if a read prefers it. Names and routes are decoded once, when a
// message arrives. Named statements are remembered (a private copy of their Parse) so that a
// statement parsed on one leg can be re-Parsed on the other when a batch moves there.
import * as codec from '../protocol/codec.js';
import { ProtocolViolation } from '../protocol/frame-reader.js';
import { FE, TARGET } from '../protocol/messages.js';
import { FORWARD, SWALLOW, type Leg, type TxnState } from './leg.js';
import type { Route } from './router.js';
import type { SessionRecord } from './session-state.js';

/** What a batch asks of the routing gates (see Session.admit). */
export interface BatchNeeds {
  /** Something in it writes (the classifier's verdict, not merely "goes to the primary"). */
  write: boolean;
  needsPrimary: boolean;
  /** A read that would go to the standby. */
  wantsStandby: boolean;
  /** The batch began inside a transaction block. */
  inTxn: boolean;
}

/** The gates' answer for a batch: go (to the standby unless told to avoid it), wait, or the session answered it with an error. */
export type Admission = 'go' | 'avoidStandby' | 'wait' | 'refused';

/** What the batcher needs of its session. */
export interface BatchSession {
  readonly primary: Leg | undefined;
  readonly standby: Leg | undefined;
  readonly txn: TxnState;
  /** Client reads reuse their buffer: keep copies, not views, of what outlives a read. */
  readonly fastReads: boolean;
  canForwardOn(leg: Leg): boolean;
  standbyReadable(): boolean;
  countSelect(backendId: number): void;
  route(sql: string): Route;
  /** The session made state only the primary has: its reads stay there. */
  markPrimaryOnly(): void;
  /** Causal reads: a batch that may write (anything that needs the primary) went to the primary. */
  causalWriteSent(): void;
  /** Causal reads: `SET pgwatchdog.…` (taken by the proxy; the statement also goes on to PostgreSQL). */
  noteProxySetting(p: { name: string; value: string | null }): unknown;
  /** A statement ending the transaction went to the primary alone: close the standby's block too. */
  endStandbyTransaction(): void;
  /** The routing gates' verdict on a batch about to be written (gates.ts). */
  admit(needs: BatchNeeds): Admission;
  /** Answers a refused write: the error and/or ReadyForQuery. False: another leg still owes the client (try later). */
  answerRefused(error: boolean, ready: boolean): boolean;
  /** What the session has recorded of its state (session-state.ts), now. */
  readonly stateRecord: SessionRecord;
  /** May the batch about to go to `leg` at its Sync be kept until its reply starts (never-ran.ts)? */
  keepable(leg: Leg, inTxn: boolean): boolean;
  /** The batch just sent to `leg` is kept: its client messages, and the record before it began. */
  keepUnit(leg: Leg, unit: Buffer[], record: SessionRecord): void;
}

interface Statement {
  /** A private copy of the client's Parse message, to re-Parse on another leg. */
  parse: Buffer;
  legs: Set<Leg>;
  /** Runs on the primary (a write, or a statement the standby cannot run). */
  primary: boolean;
  /** The classifier's write verdict. */
  write: boolean;
}

/** A statement as it moves between processes (online restart): its Parse in base64. */
export interface MovedStatement {
  name: string;
  parse: string;
  primary: boolean;
  write: boolean;
  onPrimary: boolean;
  onStandby: boolean;
}

interface BatchEntry {
  msg: Buffer;
  /** Statement name (Parse, Bind, Describe/Close of a statement), else ''. */
  name: string;
  /** Portal name (Bind), else ''. */
  portal: string;
  /** Parse: the statement's route. */
  route: Route | undefined;
}

interface Batch {
  msgs: BatchEntry[];
  needPrimary: boolean;
  preferStandby: boolean;
  /** Something in the batch writes. */
  writes: boolean;
  /** The transaction state when the batch's first message came (TxnState). */
  inTxn: boolean;
  wrote: boolean;
  /** The session's record before the batch's first message (a batch that never ran goes back to it). */
  record: SessionRecord | undefined;
  /** Leg chosen once part of the batch was written (at Flush); the rest follows it. */
  pinned: Leg | undefined;
  /** The gates refused the batch at a Flush: the rest of it up to Sync is dropped. */
  refused: boolean;
  reads: number;
  /** Parses of statements every leg must run (SET, BEGIN, SAVEPOINT …), and of any other kind. */
  both: number;
  others: number;
  /** A Parse of a statement that ends the transaction (COMMIT, PREPARE TRANSACTION …). */
  endsTxn: boolean;
}

const NO_PARSE = Buffer.alloc(0);

export class ExtendedBatcher {
  private readonly stmts = new Map<string, Statement>();
  private readonly unnamed: Statement = { parse: NO_PARSE, legs: new Set(), primary: false, write: false };
  private readonly portals = new Map<string, Leg>();
  private readonly batch: Batch = { msgs: [], needPrimary: false, preferStandby: false, writes: false, inTxn: false, wrote: false, record: undefined, pinned: undefined, refused: false, reads: 0, both: 0, others: 0, endsTxn: false };

  constructor(private readonly s: BatchSession) {}

  /** Messages of the current batch are held (views of client reads, or a leg pinned). */
  get open(): boolean {
    return this.batch.msgs.length > 0 || this.batch.pinned !== undefined;
  }

  /** A leg was chosen for part of the batch (at Flush) and the rest must follow it. */
  get pinned(): boolean {
    return this.batch.pinned !== undefined;
  }

  /** Named statements the session holds (for moving it to another backend). */
  statementNames(): string[] {
    return [...this.stmts.keys()].filter((n) => n !== '');
  }

  /** The statements the session holds, for an online restart (takeover/): which leg has each. */
  exportStatements(): MovedStatement[] {
    const P = this.s.primary;
    const S = this.s.standby;
    return [...this.stmts].map(([name, st]) => ({ name, parse: st.parse.toString('base64'), primary: st.primary, write: st.write, onPrimary: P !== undefined && st.legs.has(P), onStandby: S !== undefined && st.legs.has(S) }));
  }

  /** The statements of a session moved in from another process (its legs are this session's now). */
  importStatements(list: readonly MovedStatement[]): void {
    for (const m of list) {
      const legs = new Set<Leg>();
      if (m.onPrimary && this.s.primary) legs.add(this.s.primary);
      if (m.onStandby && this.s.standby) legs.add(this.s.standby);
      const st: Statement = { parse: Buffer.from(m.parse, 'base64'), legs, primary: m.primary, write: m.write };
      if (m.name === '') {
        Object.assign(this.unnamed, st);
        this.stmts.set('', this.unnamed);
      } else this.stmts.set(m.name, st);
    }
  }

  /**
   * A connection left the session (lost, or replaced by a fresh one on another backend): no
   * statement lives there any more, so each is re-Parsed where it is next used; an unnamed
   * statement with no copy kept, and portals there, are gone.
   */
  forgetLeg(leg: Leg): void {
    for (const [name, st] of this.stmts) {
      st.legs.delete(leg);
      if (st.legs.size === 0 && st.parse === NO_PARSE) this.stmts.delete(name);
    }
    for (const [portal, l] of this.portals) if (l === leg) this.portals.delete(portal);
  }

  /**
   * The Parse of every named statement `leg` lacks, now (a session moved to a fresh
   * connection: native forwarding, which the session may go back to, sends Bind as it is).
   * Their ParseCompletes are swallowed; the caller follows them with a Sync.
   */
  reparseAll(leg: Leg): Buffer[] {
    const out: Buffer[] = [];
    for (const [name, st] of this.stmts) {
      if (name === '' || st.legs.has(leg)) continue;
      out.push(st.parse);
      leg.swallowParse++;
      st.legs.add(leg);
    }
    return out;
  }

  /**
   * Named statements parsed by a unit that never ran and goes again (proxy/never-ran.ts):
   * forgotten, so that the Parse sent again makes them, and no re-Parse runs ahead of it.
   */
  unparse(msgs: readonly Buffer[]): void {
    for (const m of msgs) {
      if (m[0] !== FE.Parse) continue;
      const name = codec.readCString(m, 5)?.[0];
      if (name) this.stmts.delete(name);
    }
  }

  /** `recordBefore`: the session's record before this message (a Parse's route may have noted it). */
  private add(msg: Buffer, name = '', portal = '', route?: Route, recordBefore?: SessionRecord): void {
    const b = this.batch;
    if (b.msgs.length === 0 && b.pinned === undefined) {
      b.inTxn = this.s.txn.inTxn;
      b.wrote = this.s.txn.wrote;
      b.record = recordBefore ?? this.s.stateRecord;
    }
    b.msgs.push({ msg, name, portal, route });
  }

  parse(msg: Buffer): boolean {
    const name = codec.readCString(msg, 5);
    if (!name) throw new ProtocolViolation('invalid Parse message');
    const q = codec.readCString(msg, name[1]);
    if (!q) throw new ProtocolViolation('invalid Parse message');
    const before = this.s.stateRecord;
    const r = this.s.route(q[0]);
    const b = this.batch;
    this.add(msg, name[0], '', r, before);
    const toPrimary = r.target !== 'standby' || r.write;
    if (r.target === 'both') b.both++;
    else b.others++;
    if (toPrimary) b.needPrimary = true;
    else b.preferStandby = true;
    if (r.write) b.writes = true;
    if (r.read) b.reads++;
    if (r.standbyUnusable) this.s.markPrimaryOnly();
    if (r.proxySetting) this.s.noteProxySetting(r.proxySetting);
    if (this.s.txn.onRoute(r)) b.endsTxn = true;
    return true;
  }

  bind(msg: Buffer): boolean {
    const portal = codec.readCString(msg, 5);
    const stmt = portal && codec.readCString(msg, portal[1]);
    if (!stmt) throw new ProtocolViolation('invalid Bind message');
    this.add(msg, stmt[0], portal[0]);
    this.noteStatementUse(stmt[0]);
    return true;
  }

  describeOrClose(msg: Buffer): boolean {
    const kind = msg[5];
    const name = msg.length >= 7 ? codec.readCString(msg, 6) : null;
    if ((kind !== TARGET.Statement && kind !== TARGET.Portal) || !name) {
      throw new ProtocolViolation(`invalid ${msg[0] === FE.Describe ? 'Describe' : 'Close'} message`);
    }
    this.add(msg, name[0]);
    if (kind === TARGET.Statement && msg[0] === FE.Describe) this.noteStatementUse(name[0]);
    return true;
  }

  execute(msg: Buffer): boolean {
    // A named portal runs where it was bound.
    const portal = codec.readCString(msg, 5);
    if (!portal) throw new ProtocolViolation('invalid Execute message');
    const at = portal[0] === '' ? undefined : this.portals.get(portal[0]);
    if (at === this.s.primary) this.batch.needPrimary = true;
    else if (at && at === this.s.standby) this.batch.preferStandby = true;
    this.add(msg);
    return true;
  }

  private noteStatementUse(name: string): void {
    // A statement parsed earlier in this batch is routed by that Parse, not by its old version
    // (the message itself was just added, so the search stops before it).
    const msgs = this.batch.msgs;
    for (let i = msgs.length - 2; i >= 0; i--) if (msgs[i]!.msg[0] === FE.Parse && msgs[i]!.name === name) return;
    const st = this.stmts.get(name);
    if (!st) return;
    if (st.write) this.batch.writes = true;
    if (st.primary) this.batch.needPrimary = true;
    else if (this.s.standby && st.legs.has(this.s.standby) && !st.legs.has(this.s.primary!)) this.batch.preferStandby = true;
  }

  /** Flush (`isSync` false) or Sync: writes the batch to its leg. False: not yet (ordering, or a gate holds it). */
  flush(msg: Buffer, isSync: boolean): boolean {
    const s = this.s;
    const b = this.batch;
    if (b.refused) {
      // The gates refused this batch at a Flush (the client has the error): the rest of it
      // goes nowhere, and its Sync is answered with ReadyForQuery alone.
      if (!isSync) {
        b.msgs = [];
        return true;
      }
      if (!s.answerRefused(false, true)) return false;
      this.reset();
      return true;
    }
    if (b.msgs.length === 0 && !isSync) return true; // nothing to push out
    let leg = b.pinned;
    let keep = false;
    if (!leg) {
      const a = s.admit({ write: b.writes, needsPrimary: b.needPrimary || b.msgs.length === 0, wantsStandby: !b.needPrimary && b.preferStandby, inTxn: b.inTxn });
      if (a === 'wait') return false;
      if (a === 'refused') {
        // What the batch's Parses predicted (a BEGIN in it) never ran.
        s.txn.restore(b.inTxn, b.wrote);
        if (!s.answerRefused(true, isSync)) return false;
        this.forgetRefused();
        if (isSync) this.reset();
        else {
          b.msgs = [];
          b.refused = true;
        }
        return true;
      }
      if (isSync && s.standby && a === 'go' && b.both > 0 && b.others === 0 && this.selfContained()) return this.toBoth(msg);
      leg = a === 'go' && !b.needPrimary && b.preferStandby && s.standbyReadable() ? s.standby! : s.primary!;
      if (b.msgs.length === 0 && isSync) leg = s.primary!;
      if (!s.canForwardOn(leg)) return false;
      keep = isSync && s.keepable(leg, b.inTxn);
      leg.expect(FORWARD);
      if (b.reads > 0) for (let i = 0; i < b.reads; i++) s.countSelect(leg.conn.backendId);
    }
    if (keep) s.keepUnit(leg, [...b.msgs.map((e) => e.msg), msg], b.record ?? s.stateRecord);
    for (const e of b.msgs) this.emit(leg, e);
    leg.out.push(msg);
    // Anything the batch needs the primary for may write (an EXECUTE, a CALL, a function).
    if ((b.writes || b.needPrimary) && leg === s.primary) s.causalWriteSent();
    if (b.endsTxn && leg === s.primary) {
      b.endsTxn = false;
      s.endStandbyTransaction();
    }
    if (isSync) {
      this.reset();
    } else {
      b.msgs = [];
      b.pinned = leg;
      b.reads = 0;
    }
    return true;
  }

  private reset(): void {
    const b = this.batch;
    b.msgs.length = 0;
    b.needPrimary = false;
    b.preferStandby = false;
    b.writes = false;
    b.inTxn = false;
    b.wrote = false;
    b.pinned = undefined;
    b.refused = false;
    b.reads = 0;
    b.both = 0;
    b.others = 0;
    b.endsTxn = false;
  }

  /**
   * The gates refused the batch, which the client will see fail at its first message. Named
   * statements it parsed are remembered nonetheless, on no leg: a driver that counts them as
   * prepared gets them re-Parsed where they are first used.
   */
  private forgetRefused(): void {
    for (const e of this.batch.msgs) {
      if (e.msg[0] !== FE.Parse || e.name === '') continue;
      const r = e.route!;
      this.stmts.set(e.name, { parse: Buffer.from(e.msg), legs: new Set(), primary: r.target !== 'standby' || r.write, write: r.write });
    }
  }

  /** True when every statement the batch binds or describes is parsed in the batch itself. */
  private selfContained(): boolean {
    const msgs = this.batch.msgs;
    for (let i = 0; i < msgs.length; i++) {
      const e = msgs[i]!;
      const t = e.msg[0];
      if (t !== FE.Bind && !(t === FE.Describe && e.msg[5] === TARGET.Statement)) continue;
      let found = false;
      for (let j = 0; j < i && !found; j++) found = msgs[j]!.msg[0] === FE.Parse && msgs[j]!.name === e.name;
      if (!found) return false;
    }
    return true;
  }

  /**
   * A batch of statements every leg must run (SET, BEGIN, SAVEPOINT … through the extended
   * protocol, as JDBC and other drivers send them): the primary answers the client, the
   * standby runs the same messages and its answers are swallowed.
   */
  private toBoth(sync: Buffer): boolean {
    const P = this.s.primary!;
    const S = this.s.standby!;
    if (!this.s.canForwardOn(P)) return false;
    const b = this.batch;
    P.expect(FORWARD);
    S.expect(SWALLOW);
    for (const e of b.msgs) this.emit(S, e);
    for (const e of b.msgs) this.emit(P, e);
    // Both legs now hold the batch's statements.
    for (const e of b.msgs) {
      if (e.msg[0] !== FE.Parse) continue;
      this.stmts.get(e.name)?.legs.add(S);
      S.stale.delete(e.name);
    }
    P.out.push(sync);
    S.out.push(sync);
    this.reset();
    return true;
  }

  /** Writes one extended-protocol message to `leg`, re-Parsing statements that live elsewhere. */
  private emit(leg: Leg, e: BatchEntry): void {
    const m = e.msg;
    const type = m[0]!;
    const name = e.name;
    if (type === FE.Parse) {
      const r = e.route!;
      const primary = r.target !== 'standby' || r.write;
      if (name === '') {
        // The unnamed statement is replaced by every Parse: reuse its record, and keep a view
        // of the client's bytes rather than a copy (it is re-Parsed rarely, if ever) — unless
        // client reads reuse their buffer (fastReads): then a copy.
        if (r.stateful) leg.dirty = true;
        const u = this.unnamed;
        // Kept only to re-Parse on the other leg: a session on the primary alone has none.
        u.parse = this.s.standby === undefined ? NO_PARSE : this.s.fastReads ? Buffer.from(m) : m;
        u.legs.clear();
        u.legs.add(leg);
        u.primary = primary;
        u.write = r.write;
        this.stmts.set('', u);
      } else {
        leg.dirty = true;
        if (leg.stale.has(name)) this.injectClose(leg, name);
        const old = this.stmts.get(name);
        if (old) for (const l of old.legs) if (l !== leg) l.stale.add(name);
        this.stmts.set(name, { parse: Buffer.from(m), legs: new Set([leg]), primary, write: r.write });
      }
      leg.out.push(m);
      return;
    }
    if (type === FE.Bind || (type === FE.Describe && m[5] === TARGET.Statement)) {
      if (type === FE.Bind && e.portal !== '') {
        this.portals.set(e.portal, leg);
        leg.dirty = true;
      }
      const st = this.stmts.get(name);
      if (st && !st.legs.has(leg)) {
        if (name !== '') leg.dirty = true;
        if (name !== '' && leg.stale.has(name)) this.injectClose(leg, name);
        leg.out.push(st.parse);
        leg.swallowParse++;
        st.legs.add(leg);
      }
      leg.out.push(m);
      return;
    }
    if (type === FE.Close && m[5] === TARGET.Statement) {
      const st = this.stmts.get(name);
      if (st) {
        for (const l of st.legs) if (l !== leg) l.stale.add(name);
        this.stmts.delete(name);
      }
      leg.stale.delete(name);
    }
    leg.out.push(m);
  }

  private injectClose(leg: Leg, name: string): void {
    leg.out.push(codec.closeStatement(name));
    leg.swallowClose++;
    leg.stale.delete(name);
  }
}
