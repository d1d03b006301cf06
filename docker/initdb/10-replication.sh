#!/bin/bash
# Run once by the postgres image when it creates the primary: a replication user for the
# standby's base backup and streaming, and the application user of docker/userlist.txt.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '${REPLICATION_PASSWORD}';
CREATE ROLE app WITH LOGIN PASSWORD 'change-me';
CREATE DATABASE app OWNER app;
SQL
# "all" in pg_hba.conf does not match replication connections: they need their own line.
echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
