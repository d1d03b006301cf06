// WAL positions (LSNs) as bigint, and PostgreSQL's text form of them. Pure: the candidate
// choice and the replication monitor both use it.

/** PostgreSQL's text form of an LSN: two hex halves, "16/B374D848". */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Parses "16/B374D848"; null for null/empty. Throws on anything else. */
export function parseLsn(text: string | null | undefined): bigint | null {
  if (text === null || text === undefined || text === '') return null;
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!m) throw new Error(`"${text}" is not an LSN`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}
