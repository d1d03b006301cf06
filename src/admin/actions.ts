// Operator actions on backends (attach, detach, promote) run through the failover engine's
// public methods only, with progress reported as it happens: the request queued, started,
// each backend state change it makes (from the registry's change events, with their
// reasons), then the result with every step and its duration. The CLI's `promote` and the
// dashboard show these live.
import type { BackendChange, BackendRegistry } from '../backends/registry.js';
import type { FailoverEngine, FailoverResult } from '../failover/index.js';

export type BackendAction = 'attach' | 'detach' | 'promote';

/** The part of the engine the admin API uses. */
export type FailoverPort = Pick<FailoverEngine, 'attach' | 'detach' | 'promote' | 'status' | 'on' | 'off'>;

export type Progress =
  | { type: 'queued'; seq: number | null; action: BackendAction; backend: number; at: string }
  | { type: 'started'; seq: number; at: string }
  | { type: 'change'; backend: number; status: string; role: string; was: { status: string; role: string }; reason: string; at: string };

/** How often a running action looks whether the engine has started it (it emits no event for that). */
const START_POLL_MS = 100;

export async function runBackendAction(
  engine: FailoverPort,
  registry: BackendRegistry,
  action: BackendAction,
  id: number,
  opts: { switchover?: boolean },
  progress: (p: Progress) => void = () => undefined,
): Promise<FailoverResult> {
  const onChange = (c: BackendChange) => {
    if (c.before.status === c.after.status && c.before.role === c.after.role) return;
    progress({ type: 'change', backend: c.id, status: c.after.status, role: c.after.role, was: { status: c.before.status, role: c.before.role }, reason: c.reason, at: new Date().toISOString() });
  };
  registry.on('change', onChange);
  let poll: NodeJS.Timeout | undefined;
  try {
    const pending = action === 'attach' ? engine.attach(id) : action === 'detach' ? engine.detach(id) : engine.promote(id, { switchover: opts.switchover ?? false });
    // request() queues synchronously: the newest queued item is ours.
    const seq = engine.status().queue.at(-1)?.seq ?? null;
    progress({ type: 'queued', seq, action, backend: id, at: new Date().toISOString() });
    if (seq !== null) {
      const look = () => {
        if (engine.status().active?.seq === seq) {
          progress({ type: 'started', seq, at: new Date().toISOString() });
          clearInterval(poll);
        }
      };
      poll = setInterval(look, START_POLL_MS);
      look();
    }
    return await pending;
  } finally {
    clearInterval(poll);
    registry.off('change', onChange);
  }
}
