// One clock for ordering events across this machine's processes: CLOCK_MONOTONIC (what
// process.hrtime reads) is system-wide, never steps with the wall clock, and is the same in
// the peer's process and in its proxy workers. Causal reads compare a commit's time (seen by
// a session in a worker) with the time a WAL sample was requested (by the replication monitor
// in the peer's process), so both must come from here.

/** Milliseconds on the system's monotonic clock (fractional, sub-microsecond resolution). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
