// Which first reply proves that PostgreSQL never read a request (proxy.failover_sessions: keep
// replays such a request on the new primary; native/splice.c's neverRan decides the same).
//
// After its postmaster is killed, a backend that waits to read its client (PostgreSQL's
// secure_read, src/backend/libpq/be-secure.c; secure_write has the same check) ends with
// FATAL 57P01 "terminating connection due to unexpected postmaster exit" instead of reading
// on. Outside those waits it does not look: a statement that is running runs on, and its
// output (ParseComplete, BindComplete, CommandComplete … every message but Flush and Sync
// answers with something) goes into the send buffer ahead of the FATAL, which is flushed after
// it. So when that FATAL is the FIRST message after a request was sent — the session idle
// before it, nothing else owed — no part of the request was executed, and sending it to the
// new primary runs it exactly once.
//
// Not the others, though they also say the server is going away:
// - 57P01 "terminating connection due to administrator command" (SIGTERM: a fast shutdown, or
//   pg_terminate_backend) is raised at any CHECK_FOR_INTERRUPTS, also while a statement runs
//   and after its transaction has committed locally (a commit waiting for a synchronous
//   standby is one): as a first reply it does not prove the statement did not run.
// - 57P02 (crash of another server process, or an immediate shutdown's SIGQUIT) is sent from a
//   signal handler at any moment, whatever the backend was doing.
// - 57P03 (cannot connect now) is only ever a reply to a connection's startup.
// The message is matched exactly: a server with a translated lc_messages sends another text,
// and its sessions fail such a statement as before (no replay) rather than guess.

export const POSTMASTER_EXIT_MESSAGE = 'terminating connection due to unexpected postmaster exit';

/** True when an ErrorResponse's fields are the postmaster-exit FATAL (see above). */
export function neverRanFatal(fields: Readonly<Record<string, string>>): boolean {
  return (fields.V ?? fields.S) === 'FATAL' && fields.C === '57P01' && fields.M === POSTMASTER_EXIT_MESSAGE;
}

/** The log line's reason when such a request is sent again after the move. */
export const REPLAY_REASON = 'statement never reached the dying server: replayed on the new primary';
