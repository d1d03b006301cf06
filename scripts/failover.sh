#!/bin/sh
# Sample failover_command for pgwatchdog with `failover.promote: command` (pgpool style).
# Adapt it to your site; it promotes over SQL, so it needs no ssh to the database hosts.
#
#   failover_command: "/path/to/failover.sh %d %h %p %D %m %H %M %P %r %R %N %S %T"
#
# pgwatchdog runs it once per failed node. %m/%H/%r name the promotion candidate: the
# standby with the most WAL within max_lag_bytes (-1 when none qualifies). The values
# arrive already shell-quoted, each as one argument.
# Credentials: the usual libpq environment (PGUSER, PGPASSWORD or PGPASSFILE, PGSSLMODE...)
# of the pgwatchdog process; the user must be allowed to run pg_promote().
set -u

FAILED_NODE_ID="$1"
FAILED_NODE_HOST="$2"
FAILED_NODE_PORT="$3"
FAILED_NODE_PGDATA="$4"
NEW_MAIN_NODE_ID="$5"
NEW_MAIN_NODE_HOST="$6"
OLD_MAIN_NODE_ID="$7"
OLD_PRIMARY_NODE_ID="$8"
NEW_MAIN_NODE_PORT="$9"
shift 9
NEW_MAIN_NODE_PGDATA="$1"
OLD_PRIMARY_NODE_HOST="$2"
OLD_PRIMARY_NODE_PORT="$3"
TERM_FENCE="$4"

echo "failover.sh: failed node $FAILED_NODE_ID ($FAILED_NODE_HOST:$FAILED_NODE_PORT, $FAILED_NODE_PGDATA);" \
  "old primary $OLD_PRIMARY_NODE_ID ($OLD_PRIMARY_NODE_HOST:$OLD_PRIMARY_NODE_PORT), old main $OLD_MAIN_NODE_ID;" \
  "new main $NEW_MAIN_NODE_ID ($NEW_MAIN_NODE_HOST:$NEW_MAIN_NODE_PORT, $NEW_MAIN_NODE_PGDATA); term $TERM_FENCE"

# A standby failed: nothing to promote. (With replication slots, drop the standby's slot on
# the primary here so the primary does not keep WAL for it forever.)
if [ "$FAILED_NODE_ID" != "$OLD_PRIMARY_NODE_ID" ]; then
  echo "failover.sh: standby $FAILED_NODE_ID went down; the primary is unchanged"
  exit 0
fi

if [ "$NEW_MAIN_NODE_ID" = "-1" ]; then
  echo "failover.sh: the primary failed and no standby qualifies for promotion" >&2
  exit 1
fi

# pg_promote(wait => true): returns once the server accepts writes.
psql "host=$NEW_MAIN_NODE_HOST port=$NEW_MAIN_NODE_PORT dbname=postgres connect_timeout=10" \
  -v ON_ERROR_STOP=1 -qAtc "SELECT pg_promote(true, 60)" || {
  echo "failover.sh: promotion of node $NEW_MAIN_NODE_ID failed" >&2
  exit 1
}
echo "failover.sh: node $NEW_MAIN_NODE_ID promoted"
