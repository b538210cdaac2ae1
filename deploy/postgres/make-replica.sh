#!/usr/bin/env bash
# Make a streaming replica of the geo_service primary with pg_basebackup -R: a copy of the data
# directory that starts as a hot standby and follows the primary (standby.signal and
# primary_conninfo written by -R, a replication slot made by -C -S).
#
# Run as the postgres user on the replica machine, into an empty data directory:
#   pg_ctlcluster 15 main stop && rm -rf /var/lib/postgresql/15/main     # Debian's empty cluster
#   sudo -u postgres PGPASSFILE=~postgres/.pgpass \
#       deploy/postgres/make-replica.sh db-primary.internal 5432 /var/lib/postgresql/15/main replica1
#   pg_ctlcluster 15 main start
# The replicator's password comes from ~/.pgpass (or PGPASSWORD), never the command line;
# with a .pgpass file it is not written into the replica's configuration either. Re-making a
# replica: first drop its old slot on the primary, SELECT pg_drop_replication_slot('replica1').
# deploy/loopback.py runs this script for its replica.
set -euo pipefail
if [ $# -ne 4 ]; then
  echo "usage: $0 PRIMARY_HOST PRIMARY_PORT DATA_DIR SLOT" >&2
  exit 2
fi
host=$1 port=$2 data=$3 slot=$4
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
if [ -e "$data" ] && [ -n "$(ls -A "$data")" ]; then
  echo "$data is not empty: a replica starts from a fresh copy (stop the cluster, remove it)" >&2
  exit 1
fi
# -X stream: the WAL written during the copy comes along; -c fast: checkpoint at once.
"$bindir/pg_basebackup" -h "$host" -p "$port" -U replicator -w -D "$data" -R -X stream \
  -C -S "$slot" -c fast
echo "replica of $host:$port in $data (slot $slot); start it, then on the primary:"
echo "  SELECT application_name, state, replay_lag FROM pg_stat_replication;"
