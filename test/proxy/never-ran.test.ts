// The one first reply that proves PostgreSQL never read a request (src/proxy/never-ran.ts):
// the postmaster-exit FATAL, exactly; every other shutdown error may follow a statement that
// ran (or committed), so it is not replayed.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { neverRanFatal, POSTMASTER_EXIT_MESSAGE } from '../../src/proxy/never-ran.js';

const fatal = (C: string, M: string, extra: Record<string, string> = {}): Record<string, string> => ({ S: 'FATAL', V: 'FATAL', C, M, ...extra });

it('only the postmaster-exit FATAL (57P01) proves a request was never read', () => {
  const rows: [string, Record<string, string>, boolean][] = [
    ['postmaster exit (secure_read / secure_write)', fatal('57P01', POSTMASTER_EXIT_MESSAGE), true],
    ['postmaster exit, from a server before 9.6 (no V field)', { S: 'FATAL', C: '57P01', M: POSTMASTER_EXIT_MESSAGE }, true],
    ['postmaster exit, localized severity but V says FATAL', { S: 'FATAL', V: 'FATAL', C: '57P01', M: POSTMASTER_EXIT_MESSAGE, F: 'be-secure.c' }, true],
    ['administrator command: SIGTERM at any CHECK_FOR_INTERRUPTS, even after a commit', fatal('57P01', 'terminating connection due to administrator command'), false],
    ['immediate shutdown (SIGQUIT, from a signal handler)', fatal('57P01', 'terminating connection due to immediate shutdown command'), false],
    ['crash of another server process (57P02)', fatal('57P02', 'terminating connection because of crash of another server process'), false],
    ['cannot connect now (57P03: only at startup)', fatal('57P03', 'the database system is shutting down'), false],
    ['the same text as a mere ERROR', { S: 'ERROR', V: 'ERROR', C: '57P01', M: POSTMASTER_EXIT_MESSAGE }, false],
    ['the same text under another code', fatal('XX000', POSTMASTER_EXIT_MESSAGE), false],
    ['a translated message (lc_messages): not guessed', fatal('57P01', 'Verbindung wird abgebrochen wegen unerwartetem Ende des Postmasters'), false],
    ['the message with more after it', fatal('57P01', `${POSTMASTER_EXIT_MESSAGE} (and more)`), false],
    ['PANIC', { S: 'PANIC', V: 'PANIC', C: '57P01', M: POSTMASTER_EXIT_MESSAGE }, false],
    ['no fields', {}, false],
  ];
  for (const [why, fields, want] of rows) assert.equal(neverRanFatal(fields), want, why);
});
