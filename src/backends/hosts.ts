// Whether two host names from different sources (the config, pg_stat_wal_receiver's
// sender_host) name the same server. Pure, so the failover decisions can use it without
// loading the driver that pgops.ts needs.

/** Same host: equal names, or both loopback (a standby may report 127.0.0.1 for "localhost"). */
export function sameHost(a: string | null, b: string): boolean {
  if (a === null) return false;
  return a === b || (isLoopback(a) && isLoopback(b));
}

function isLoopback(h: string): boolean {
  return h === 'localhost' || h === '::1' || h.startsWith('127.');
}
