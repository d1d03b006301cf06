// The routing gates (backends/registry.ts RoutingGates) as one session applies them: a pure
// verdict per statement (or extended batch) and per new session's first checkout. Every
// branch says why. The session carries the verdict out: it sends, waits for the 'gates'
// event (or the hold's deadline) and asks again, or answers the refusal itself.
import type { PgErrorFields } from '../protocol/codec.js';
import type { RoutingGates } from '../backends/registry.js';

export interface StatementNeeds {
  /** The classifier says it writes. */
  write: boolean;
  /** It must run on the primary (a write, or anything the standby cannot run). */
  needsPrimary: boolean;
  /** A read the session would send to its load-balance standby. */
  wantsStandby: boolean;
  /** It starts inside a transaction block. */
  inTxn: boolean;
}

export interface SessionBackends {
  primary: number;
  standby: number | undefined;
}

export type GateVerdict =
  | { readonly action: 'go'; readonly reason: string }
  /** Read on the primary: the standby is held. */
  | { readonly action: 'avoidStandby'; readonly reason: string }
  /** Wait for the 'gates' event, or until `untilMs` (epoch ms), then ask again. */
  | { readonly action: 'wait'; readonly untilMs: number; readonly reason: string }
  /** Answer with refusalError(message). */
  | { readonly action: 'refuse'; readonly message: string; readonly reason: string };

const OPEN: GateVerdict = Object.freeze({ action: 'go', reason: 'no routing gate is set' });
const NOT_CONCERNED: GateVerdict = Object.freeze({ action: 'go', reason: 'no gate concerns the backends it needs' });
const IN_TXN: GateVerdict = Object.freeze({ action: 'go', reason: 'inside a transaction: a hold does not stop it' });

/** True when no gate is set at all (the common case, checked first). */
export function gatesOpen(g: RoutingGates): boolean {
  return g.held.length === 0 && g.refuseWrites === null;
}

/** The hold on backend `id` still in force at `now`, if any. */
export function activeHold(g: RoutingGates, id: number, now: number): { id: number; reason: string; untilMs: number } | undefined {
  for (const h of g.held) if (h.id === id && h.untilMs > now) return h;
  return undefined;
}

/**
 * What happens to a statement (or an extended batch up to Sync) about to be routed:
 *   - a write on a peer that refuses writes is refused, in a transaction or not;
 *   - inside a transaction nothing is held (it continues, or fails, as it would);
 *   - one that needs a held primary waits; a read whose standby is held goes to the primary
 *     unless that is held too, then waits.
 */
export function judgeStatement(g: RoutingGates, n: StatementNeeds, b: SessionBackends, now: number): GateVerdict {
  if (gatesOpen(g)) return OPEN;
  if (n.write && g.refuseWrites !== null) {
    return { action: 'refuse', message: `cannot execute a write on isolated pgwatchdog peer: ${g.refuseWrites}`, reason: `writes are refused: ${g.refuseWrites}` };
  }
  if (n.inTxn) return IN_TXN;
  if (g.held.length === 0) return NOT_CONCERNED;
  const onStandby = !n.needsPrimary && n.wantsStandby && b.standby !== undefined;
  if (onStandby) {
    const hs = activeHold(g, b.standby!, now);
    if (!hs) return NOT_CONCERNED;
    const hp = activeHold(g, b.primary, now);
    if (!hp) return { action: 'avoidStandby', reason: `standby ${hs.id} is held (${hs.reason}): the read goes to the primary` };
    return { action: 'wait', untilMs: Math.min(hs.untilMs, hp.untilMs), reason: `standby ${hs.id} and primary ${hp.id} are held (${hp.reason})` };
  }
  const hp = activeHold(g, b.primary, now);
  if (!hp) return NOT_CONCERNED;
  return { action: 'wait', untilMs: hp.untilMs, reason: `primary ${hp.id} is held (${hp.reason})` };
}

/**
 * Whether a new session may take its first backend connections now. `primary`: the routable
 * primary, if any. With no primary while a hold is in force, routing is about to change (a
 * failover): wait for it rather than fail. A held primary: wait.
 */
export function judgeCheckout(g: RoutingGates, primary: number | undefined, now: number): GateVerdict {
  if (g.held.length === 0) return OPEN;
  if (primary === undefined) {
    let until = 0;
    for (const h of g.held) if (h.untilMs > now && (until === 0 || h.untilMs < until)) until = h.untilMs;
    if (until === 0) return NOT_CONCERNED;
    return { action: 'wait', untilMs: until, reason: 'no primary is routable while a hold is in force (a failover is under way)' };
  }
  const hp = activeHold(g, primary, now);
  if (!hp) return NOT_CONCERNED;
  return { action: 'wait', untilMs: hp.untilMs, reason: `primary ${hp.id} is held (${hp.reason})` };
}

/** The error a refused write gets (PostgreSQL's own code for a write in a read-only transaction). */
export function refusalError(message: string): PgErrorFields {
  return { severity: 'ERROR', code: '25006', message, hint: 'Connect through the virtual IP (or another peer) to write.' };
}
