// The status file (pgpool_status semantics): backend states survive a restart. A node marked
// down stays down until attached; a file that says every node is down is ignored with a
// warning (restarting everything after a total outage must not leave nothing routable).
// Written atomically (temp file + rename) on every status change. Also holds the
// synchronous_standby_names value cleared by `synchronous: auto`, so a restart can restore it.
// pgpool's own format (one line per backend: up / down / unused) is read too.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { BackendStatus } from '../backends/registry.js';

export interface StatusFileEntry {
  id: number;
  host: string;
  port: number;
  status: BackendStatus;
  /** "admin" when an operator detached it: auto_failback leaves such a node alone. */
  detachedBy?: 'admin' | 'failover';
}

export interface StatusFileContent {
  version: 1;
  savedAt: string;
  backends: StatusFileEntry[];
  savedSyncStandbyNames: string | null;
}

export type LoadedStatus =
  | { kind: 'missing' }
  | { kind: 'ignored'; reason: string }
  | { kind: 'ok'; content: StatusFileContent };

export function readStatusFile(path: string, backends: readonly { host: string; port: number }[]): LoadedStatus {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    return { kind: 'ignored', reason: `cannot read ${path}: ${(err as Error).message}` };
  }
  let content: StatusFileContent;
  try {
    content = parseStatus(text, backends);
  } catch (err) {
    return { kind: 'ignored', reason: `${path}: ${(err as Error).message}` };
  }
  if (content.backends.length > 0 && content.backends.every((b) => b.status === 'down')) {
    return { kind: 'ignored', reason: `${path} says every backend is down; ignoring it so the backends can be attached again` };
  }
  return { kind: 'ok', content };
}

function parseStatus(text: string, backends: readonly { host: string; port: number }[]): StatusFileContent {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    const raw = JSON.parse(trimmed) as Partial<StatusFileContent>;
    if (raw.version !== 1 || !Array.isArray(raw.backends)) throw new Error('not a pgwatchdog status file (version 1)');
    // Match by host:port, not position, so reordering the config does not move a "down".
    const out: StatusFileEntry[] = [];
    for (const e of raw.backends) {
      const id = backends.findIndex((b) => b.host === e.host && b.port === e.port);
      if (id >= 0 && ['up', 'down', 'unused', 'quarantine', 'waiting'].includes(e.status)) out.push({ ...e, id });
    }
    return { version: 1, savedAt: raw.savedAt ?? '', backends: out, savedSyncStandbyNames: raw.savedSyncStandbyNames ?? null };
  }
  const lines = trimmed.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  const out: StatusFileEntry[] = [];
  lines.forEach((l, id) => {
    if (!['up', 'down', 'unused'].includes(l)) throw new Error(`line ${id + 1}: "${l}" is not up, down or unused`);
    const b = backends[id];
    if (b) out.push({ id, host: b.host, port: b.port, status: l as BackendStatus });
  });
  return { version: 1, savedAt: '', backends: out, savedSyncStandbyNames: null };
}

export function writeStatusFile(path: string, content: StatusFileContent): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(content, null, 2) + '\n');
  renameSync(tmp, path);
}
