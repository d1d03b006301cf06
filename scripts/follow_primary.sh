#!/bin/sh
# Sample follow_primary_command for pgwatchdog (pgpool style). Run once per remaining
# standby after a new primary is promoted; points that standby at the new primary over SQL
# (ALTER SYSTEM SET primary_conninfo + pg_reload_conf(), PostgreSQL >= 13), keeping every
# other key of its primary_conninfo (application_name, sslmode, passfile...).
#
#   follow_primary_command: "/path/to/follow_primary.sh %d %h %p %D %m %H %M %P %r %R"
#
# A standby that already received WAL past the new primary's promotion point cannot follow
# it without pg_rewind; this script does not rewind, it reports the failure.
# Credentials: the libpq environment of the pgwatchdog process (PGUSER, PGPASSWORD...).
set -u

NODE_ID="$1"
NODE_HOST="$2"
NODE_PORT="$3"
NEW_PRIMARY_ID="$5"
NEW_PRIMARY_HOST="$6"
NEW_PRIMARY_PORT="$9"

conn="host=$NODE_HOST port=$NODE_PORT dbname=postgres connect_timeout=10"

old=$(psql "$conn" -v ON_ERROR_STOP=1 -qAtc "SHOW primary_conninfo") || {
  echo "follow_primary.sh: cannot reach standby $NODE_ID" >&2
  exit 1
}
# Drop host/hostaddr/port, put the new primary first.
rest=$(printf '%s\n' "$old" | sed -E "s/(^| )(host|hostaddr|port)=('([^'\\\\]|\\\\.)*'|[^ ]*)//g")
new="host=$NEW_PRIMARY_HOST port=$NEW_PRIMARY_PORT $rest"

psql "$conn" -v ON_ERROR_STOP=1 -v ci="$new" -qAt <<'SQL' || { echo "follow_primary.sh: cannot repoint standby $NODE_ID" >&2; exit 1; }
ALTER SYSTEM SET primary_conninfo = :'ci';
SELECT pg_reload_conf();
SQL
echo "follow_primary.sh: standby $NODE_ID now follows node $NEW_PRIMARY_ID ($NEW_PRIMARY_HOST:$NEW_PRIMARY_PORT)"
