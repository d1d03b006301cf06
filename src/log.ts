// Logging: pino JSON lines, one object per event; pretty when stdout is a terminal.
// Level: PGWATCHDOG_LOG_LEVEL overrides the config's log.level.
import pino, { type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export function createLogger(opts: { level?: LevelWithSilent; name?: string; pretty?: boolean } = {}): Logger {
  const level = (process.env.PGWATCHDOG_LOG_LEVEL as LevelWithSilent | undefined) ?? opts.level ?? 'info';
  const pretty = opts.pretty ?? process.stdout.isTTY === true;
  const base = { name: opts.name ?? 'pgwatchdog' };
  // pino children copy the level when they are made; a reload must reach them all (setLogLevel).
  const children = new Set<WeakRef<Logger>>();
  const onChild = (child: Logger) => {
    children.add(new WeakRef(child));
    if (children.size % 1024 === 0) for (const r of children) if (r.deref() === undefined) children.delete(r);
  };
  const root = pretty
    ? pino({ level, base, onChild }, pino.transport({ target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } }))
    : pino({ level, base, onChild, timestamp: pino.stdTimeFunctions.isoTime });
  childrenOf.set(root, children);
  return root;
}

const childrenOf = new WeakMap<Logger, Set<WeakRef<Logger>>>();

/**
 * Sets the level of a logger made by createLogger and of every child made from it since
 * (config reload). PGWATCHDOG_LOG_LEVEL still wins: returns false, changing nothing, when it is set.
 */
export function setLogLevel(root: Logger, level: LevelWithSilent): boolean {
  if (process.env.PGWATCHDOG_LOG_LEVEL) return false;
  root.level = level;
  for (const r of childrenOf.get(root) ?? []) {
    const child = r.deref();
    if (child) child.level = level;
  }
  return true;
}

/** A logger that drops everything: for tests and library use without a sink. */
export const silentLogger: Logger = pino({ level: 'silent' });
