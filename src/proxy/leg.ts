// One backend connection of a client session (a "leg": the primary, or the load-balance
// standby) as the session sees it: what the client is owed from it, what it swallows, and
// whether it is quiescent. It scans the backend's output (ScanSink) and tells its session
// about the messages the session must act on.
import * as codec from '../protocol/codec.js';
import type { ScanSink } from '../protocol/backend-scanner.js';
import { BE, TX } from '../protocol/messages.js';
import type { BackendConn } from './backend-conn.js';

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

  constructor(
    readonly session: LegOwner,
    readonly conn: BackendConn,
    readonly role: Role,
  ) {}

  expect(e: Expect): void {
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
