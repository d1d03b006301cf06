// Synchronous replication management (failover.synchronous: auto), the pure part: parse
// synchronous_standby_names and decide whether to clear it (too few synchronous standbys
// stream, so every commit on the primary would wait forever) or restore the saved value
// (enough of them stream again).

export interface SyncSpec {
  method: 'first' | 'any';
  num: number;
  /** Standby names as PostgreSQL compares them (case-insensitive unless quoted); "*" matches any. */
  names: { name: string; quoted: boolean }[];
}

/** Parses synchronous_standby_names; null when it is empty (no synchronous replication).
 * Forms: `FIRST n (a, b)`, `ANY n (a, b)`, `n (a, b)` (= FIRST), `a, b` (= FIRST 1 (a, b)). */
export function parseSyncNames(text: string): SyncSpec | null {
  const s = text.trim();
  if (s === '') return null;
  const m = /^(?:(first|any)\s+)?(\d+)\s*\((.*)\)$/is.exec(s);
  let method: 'first' | 'any' = 'first';
  let num = 1;
  let list = s;
  if (m) {
    method = (m[1]?.toLowerCase() as 'first' | 'any' | undefined) ?? 'first';
    num = Number(m[2]);
    list = m[3]!;
  }
  const names: SyncSpec['names'] = [];
  const re = /\s*(?:"((?:[^"]|"")*)"|([^,\s]+))\s*(?:,|$)/gy;
  let mm: RegExpExecArray | null;
  while (re.lastIndex < list.length && (mm = re.exec(list)) !== null) {
    if (mm[1] !== undefined) names.push({ name: mm[1].replace(/""/g, '"'), quoted: true });
    else names.push({ name: mm[2]!, quoted: false });
  }
  if (names.length === 0) throw new Error(`cannot parse synchronous_standby_names "${text}"`);
  return { method, num, names };
}

/** How many of the streaming standbys (by application_name) count as synchronous for spec. */
export function countSyncStreaming(spec: SyncSpec, streaming: readonly string[]): number {
  let n = 0;
  for (const app of streaming) {
    if (spec.names.some((x) => x.name === '*' || (x.quoted ? x.name === app : x.name.toLowerCase() === app.toLowerCase()))) n++;
  }
  return n;
}

export type SyncAction =
  | { action: 'none'; reason: string }
  | { action: 'clear'; saved: string; reason: string }
  | { action: 'restore'; value: string; reason: string };

/**
 * current: the primary's synchronous_standby_names now; saved: what we cleared earlier
 * (null if we cleared nothing); streaming: application_names of standbys whose walsender is
 * in state "streaming".
 */
export function decideSync(current: string, saved: string | null, streaming: readonly string[]): SyncAction {
  const spec = parseSyncNames(current);
  if (spec) {
    const n = countSyncStreaming(spec, streaming);
    if (n < spec.num) {
      return { action: 'clear', saved: current, reason: `${n} of the ${spec.num} synchronous standby(s) required by "${current}" stream (streaming: ${streaming.join(', ') || 'none'}): commits would wait forever` };
    }
    return { action: 'none', reason: `${n} synchronous standby(s) stream, ${spec.num} required` };
  }
  if (saved !== null && saved.trim() !== '') {
    const want = parseSyncNames(saved)!;
    const n = countSyncStreaming(want, streaming);
    if (n >= want.num) return { action: 'restore', value: saved, reason: `${n} standby(s) named in "${saved}" stream again (${want.num} required)` };
    return { action: 'none', reason: `synchronous replication stays off: ${n} of ${want.num} standby(s) named in "${saved}" stream` };
  }
  return { action: 'none', reason: 'synchronous replication is not configured' };
}
