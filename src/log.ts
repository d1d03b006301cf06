// Logging: pino JSON lines, one object per event; pretty when stdout is a terminal.
// Level: PGWATCHDOG_LOG_LEVEL overrides the config's log.level.
import pino, { type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export function createLogger(opts: { level?: LevelWithSilent; name?: string; pretty?: boolean } = {}): Logger {
  const level = (process.env.PGWATCHDOG_LOG_LEVEL as LevelWithSilent | undefined) ?? opts.level ?? 'info';
  const pretty = opts.pretty ?? process.stdout.isTTY === true;
  const base = { name: opts.name ?? 'pgwatchdog' };
  if (pretty) {
    return pino({ level, base }, pino.transport({ target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } }));
  }
  return pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime });
}

/** A logger that drops everything: for tests and library use without a sink. */
export const silentLogger: Logger = pino({ level: 'silent' });
