// One backend connection of a client session (a "leg": the primary, or the load-balance
// standby) as the session sees it: what the client is owed from it, what it swallows, and
// whether it is quiescent. It scans the backend's output (ScanSink) and tells its session
// about the messages the session must act on.
import * as codec from '../protocol/codec.js';
import type { ScanSink } from '../protocol/backend-scanner.js';
import { BE, TX } from '../protocol/messages.js';
import type { BackendConn } from './backend-conn.js';
import { neverRanFatal } from './never-ran.js';

/** What the session expects of one request's response on a leg. */
export interface Expect {
  readonly forward: boolean;
  /** An error in this response ends the session (startup SETs). */
  readonly fatalOnError?: boolean;
  /** The statements that re-create a moved session's state (session-state.ts replay). */
  readonly recreate?: boolean;
}
// Shared, immutable: queued once per request, so no allocation on the hot path.
export const FORWARD: Expect = Object.freeze({ forward: true });
export const SWALLOW: Expect = Object.freeze({ forward: false });
export const STARTUP_SET: Expect = Object.freeze({ forward: false, fatalOnError: true });
export const RECREATE: Expect = Object.freeze({ forward: false, fatalOnError: true, recreate: true });

export type Role = 'primary' | 'standby';

/** What a leg tells its session. */
export interface LegOwner {
  /** True when a leg other than `leg` still owes the client a response. */
  otherForwarding(leg: Leg): boolean;
  onReady(leg: Leg, status: number, head: Expect | undefined): void;
  onBackendErrorResponse(leg: Leg, fields: Record<string, string>, head: Expect | undefined): void;
  /** A NotificationResponse that arrived while the client waits on nobody (or another leg). */
  asyncToClient(leg: Leg, msg: Buffer): void;
  /**
   * The first reply to the unit kept on `leg` proves it never ran (never-ran.ts): true when
   * the session takes the unit back to send it again after moving; false, the client gets the
   * FATAL as before.
   */
  replayUnit(leg: Leg, unit: Buffer | Buffer[]): boolean;
}

export class Leg implements ScanSink {
  readonly queue: Expect[] = [];
  fwdPending = 0;
  swallowParse = 0;
  swallowClose = 0;
  copyIn = false;
  lastForwarded = false;
  /** Native forwarding left this connection's stream mid-message: it cannot be reused, and
   * nothing more can be framed to the client. */
  broken = false;
  /** Something ran here that may leave session state behind (SET, named statements, writes…). */
  dirty = false;
  /** The backend ended the session with this FATAL (or PANIC) error; `forwarded`: the client has it. */
  ended: { fields: Record<string, string>; forwarded: boolean } | undefined;
  out: Buffer[] = [];
  /** Statement names closed by the client but still existing here. */
  readonly stale = new Set<string>();
  /**
   * The client's messages of the last unit sent here while the session was idle (a Query, or
   * an extended batch with its Sync), until the first message of its reply: if that is the
   * postmaster-exit FATAL, the unit never ran and can be sent elsewhere (never-ran.ts). Set by
   * the session (keepUnit); views of client reads, kept from reuse (Session.inputRetained).
   */
  kept: Buffer | Buffer[] | undefined;
  /** The first reply message to `kept` is an ErrorResponse: not forwarded until read whole. */
  private holdingFirst = false;

  constructor(
    readonly session: LegOwner,
    readonly conn: BackendConn,
    readonly role: Role,
  ) {}

  expect(e: Expect): void {
    // Another request follows the kept unit: more than one is in flight, none is kept.
    this.kept = undefined;
    this.queue.push(e);
    if (e.forward) this.fwdPending++;
  }

  /**
   * Nothing is owed, queued, swallowed or half-read on this connection: it stands between two
   * requests at a message boundary. Native forwarding may take it then, and the pool may reuse
   * it after the session (the one rule for both).
   */
  quiescent(): boolean {
    return (
      !this.broken &&
      !this.conn.closed &&
      this.queue.length === 0 &&
      this.out.length === 0 &&
      !this.copyIn &&
      this.swallowParse === 0 &&
      this.swallowClose === 0 &&
      this.conn.scanner.atBoundary
    );
  }

  onHeader(type: number): boolean {
    if (this.kept !== undefined) {
      // The reply to the kept unit starts. An ErrorResponse may prove it never ran: read first.
      if (type === BE.ErrorResponse) {
        this.holdingFirst = true;
        this.lastForwarded = false;
        return false;
      }
      this.kept = undefined;
    }
    let fwd: boolean;
    if (type === BE.ParseComplete && this.swallowParse > 0) {
      this.swallowParse--;
      fwd = false;
    } else if (type === BE.CloseComplete && this.swallowClose > 0) {
      this.swallowClose--;
      fwd = false;
    } else {
      const head = this.queue[0];
      if (head) fwd = head.forward;
      // An ErrorResponse nobody asked for is the backend ending the session (FATAL): the
      // session decides what the client gets (legLost), so it is not forwarded here.
      else fwd = this.role === 'primary' && type !== BE.NotificationResponse && type !== BE.ErrorResponse && !this.session.otherForwarding(this);
    }
    this.lastForwarded = fwd;
    return fwd;
  }

  onMessage(type: number, buf: Buffer, s: number, e: number): void {
    const sess = this.session;
    switch (type) {
      case BE.ReadyForQuery: {
        const status = buf[s]!;
        this.conn.txStatus = status;
        this.copyIn = false;
        const head = this.queue.shift();
        if (head?.forward) this.fwdPending--;
        sess.onReady(this, status, head);
        break;
      }
      case BE.ParameterStatus:
        this.conn.onParameterStatus(buf, s, e);
        break;
      case BE.ErrorResponse: {
        // After an error the server skips everything up to Sync, including re-Parses and
        // Closes the proxy injected: none of their replies will come.
        this.swallowParse = 0;
        this.swallowClose = 0;
        const fields = codec.parseErrorFields(buf.subarray(s, e));
        if (this.holdingFirst) this.firstReplyError(fields, buf, s, e);
        const severity = fields.V ?? fields.S;
        if (severity === 'FATAL' || severity === 'PANIC') this.ended = { fields, forwarded: this.lastForwarded };
        sess.onBackendErrorResponse(this, fields, this.queue[0]);
        break;
      }
      case BE.CopyInResponse:
      case BE.CopyBothResponse:
        this.copyIn = true;
        break;
      case BE.NotificationResponse:
        if (!this.lastForwarded && this.role === 'primary') {
          // A notification while the client waits on nobody (or on the standby): rebuild it.
          const msg = Buffer.allocUnsafe(e - s + 5);
          msg[0] = BE.NotificationResponse;
          msg.writeInt32BE(e - s + 4, 1);
          buf.copy(msg, 5, s, e);
          sess.asyncToClient(this, msg);
        }
        break;
      default:
        break;
    }
  }

  /** The first reply to the kept unit is this ErrorResponse (held by onHeader). */
  private firstReplyError(fields: Record<string, string>, buf: Buffer, s: number, e: number): void {
    this.holdingFirst = false;
    const unit = this.kept!;
    this.kept = undefined;
    // The session took the unit back: the FATAL is the backend's own end, not the unit's reply.
    if (neverRanFatal(fields) && this.session.replayUnit(this, unit)) return;
    // Any other error is the unit's reply after all: the client gets it, as it would have.
    const msg = Buffer.allocUnsafe(e - s + 5);
    msg[0] = BE.ErrorResponse;
    msg.writeInt32BE(e - s + 4, 1);
    buf.copy(msg, 5, s, e);
    this.lastForwarded = true;
    this.conn.out(msg);
  }
}

/**
 * The session's transaction state, kept in one place: predicted from each statement's route
 * as it is sent (so a read right after BEGIN … a write stays on the primary before any answer
 * comes), and confirmed by the primary's ReadyForQuery.
 */
export class TxnState {
  /** Inside a transaction block (or about to be: BEGIN is on its way). */
  inTxn = false;
  /** Something in this transaction wrote (or may have): everything stays on the primary until it ends. */
  wrote = false;

  /** A statement with this route is being sent. True when it ends the transaction. */
  onRoute(r: { write: boolean; txn?: 'begin' | 'end' }): boolean {
    if (r.txn === 'begin') this.inTxn = true;
    if (r.write && this.inTxn) this.wrote = true;
    if (r.txn !== 'end') return false;
    this.inTxn = false;
    this.wrote = false;
    return true;
  }

  /** A batch that was predicted (onRoute) is dropped unsent: back to where it began. */
  restore(inTxn: boolean, wrote: boolean): void {
    this.inTxn = inTxn;
    this.wrote = wrote;
  }

  /** A request that may write (a function call) is being sent. */
  onWrite(): void {
    if (this.inTxn) this.wrote = true;
  }

  /** The primary said ReadyForQuery with this status. */
  onPrimaryReady(status: number): void {
    this.inTxn = status !== TX.Idle;
    if (!this.inTxn) this.wrote = false;
  }
}
