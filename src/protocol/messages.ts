// PostgreSQL protocol 3.0 message type bytes, named once (as PostgreSQL's protocol.h and
// pgbouncer's PqMsg_*), so code says FE.Parse or BE.ReadyForQuery, not 0x50 or TYPE.one.
const b = (c: string): number => c.charCodeAt(0);

/** Frontend (client → server) message types after startup. */
export const FE = {
  Query: b('Q'),
  Parse: b('P'),
  Bind: b('B'),
  Describe: b('D'),
  Close: b('C'),
  Execute: b('E'),
  Flush: b('H'),
  Sync: b('S'),
  Terminate: b('X'),
  FunctionCall: b('F'),
  CopyData: b('d'),
  CopyDone: b('c'),
  CopyFail: b('f'),
  /** PasswordMessage, SASLInitialResponse and SASLResponse share it. */
  Password: b('p'),
} as const;

/** Backend (server → client) message types. */
export const BE = {
  Authentication: b('R'),
  BackendKeyData: b('K'),
  ParameterStatus: b('S'),
  ReadyForQuery: b('Z'),
  ErrorResponse: b('E'),
  NoticeResponse: b('N'),
  NotificationResponse: b('A'),
  CopyInResponse: b('G'),
  CopyOutResponse: b('H'),
  CopyBothResponse: b('W'),
  CopyData: b('d'),
  CopyDone: b('c'),
  ParseComplete: b('1'),
  CloseComplete: b('3'),
} as const;

/** What Describe and Close name: a prepared statement or a portal. */
export const TARGET = { Statement: b('S'), Portal: b('P') } as const;

/** Transaction status in ReadyForQuery. */
export const TX = { Idle: b('I'), InBlock: b('T'), Failed: b('E') } as const;
