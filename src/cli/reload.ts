// `pgwatchdog reload`: asks a running peer to re-read its config file through its admin API
// (POST /v1/reload) and prints what was applied and what needs a restart. SIGHUP does the same
// (systemctl reload pgwatchdog), with the answer in the peer's log.
import type { ReloadView } from '../reload.js';

const DEFAULT_ADMIN = 'http://127.0.0.1:9898';
const show = (v: unknown) => JSON.stringify(v) ?? '(unset)';

export async function reloadCommand(admin: string | undefined, io: { out: (s: string) => void; err: (s: string) => void }): Promise<number> {
  const base = (admin ?? process.env.PGWATCHDOG_ADMIN ?? DEFAULT_ADMIN).replace(/\/$/, '');
  const token = process.env.PGWATCHDOG_TOKEN;
  let res: Response;
  try {
    res = await fetch(`${base}/v1/reload`, { method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    io.err(`pgwatchdog reload: cannot reach the admin API at ${base}: ${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message}`);
    return 1;
  }
  if (res.status === 404) {
    io.err(`pgwatchdog reload: the peer at ${base} has no POST /v1/reload; send it SIGHUP instead (systemctl reload pgwatchdog, or kill -HUP PID): its log names what changed`);
    return 1;
  }
  if (res.status === 401 || res.status === 403) {
    io.err(`pgwatchdog reload: ${res.status} from ${base}: set PGWATCHDOG_TOKEN to the peer's admin.token`);
    return 1;
  }
  let view: ReloadView;
  try {
    view = (await res.json()) as ReloadView;
  } catch {
    io.err(`pgwatchdog reload: ${res.status} from ${base}, not a reload answer`);
    return 1;
  }
  if (!view.ok) {
    io.err(`reload refused: ${view.file} is invalid; nothing changed:\n${view.problems.map((p) => `  ${p}`).join('\n')}`);
    return 1;
  }
  if (view.applied.length + view.needsRestart.length === 0) {
    io.out(`reloaded ${view.file}: nothing changed`);
    return 0;
  }
  io.out(`reloaded ${view.file}`);
  for (const c of view.applied) io.out(`  applied          ${c.key}: ${show(c.before)} → ${show(c.after)}`);
  for (const c of view.needsRestart) io.out(`  needs a restart  ${c.key}: ${show(c.before)} → ${show(c.after)} (${c.why})`);
  return 0;
}
